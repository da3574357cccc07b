#!/usr/bin/env bash
# Java for the Spark tests (`make test-spark`): pyspark 4 runs on Java 17 or later. Installs
# Debian's headless JRE when no java is found (root); elsewhere names the command to run.
set -euo pipefail
command -v java >/dev/null && exit 0
if ((EUID != 0)) || ! command -v apt-get >/dev/null; then
    echo "the Spark tests need Java 17+: sudo apt-get install openjdk-17-jre-headless" >&2
    exit 1
fi
echo "installing Debian package: openjdk-17-jre-headless"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null
