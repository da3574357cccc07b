#!/usr/bin/env bash
# Debian packages the tests need beyond Python: a PostgreSQL server (the PostgreSQL publish
# target is tested against a real one) and Chromium (the lägesbild report is opened in it).
# Installs only what is missing, so `make test` runs it first at no cost once all is there.
# Installing needs root (CI runs as root); elsewhere it names the one command to run.
set -euo pipefail
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
((${#missing[@]})) || exit 0
if ((EUID != 0)); then
    echo "the tests need the Debian packages: ${missing[*]}" >&2
    echo "install them once with:  sudo make system-packages" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "the tests need PostgreSQL (initdb under /usr/lib/postgresql) and chromium;" \
        "this script installs them with apt-get, which this machine lacks: ${missing[*]}" >&2
    exit 1
fi
echo "installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
