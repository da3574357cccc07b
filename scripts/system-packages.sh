#!/usr/bin/env bash
# Debian packages the tests need beyond Python: a PostgreSQL server (the PostgreSQL publish
# target is tested against a real one) and Chromium (the lägesbild report is opened in it).
# Installs only what is missing; needs root (CI runs as root; elsewhere: sudo make system-packages).
set -euo pipefail
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
if ((${#missing[@]})); then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
