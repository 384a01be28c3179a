#!/usr/bin/env bash
# Debian packages the project needs: a Python with venv, Redis and Prometheus for the tests
# and the demo, and npm to fetch the helm binary. Installs only what is missing,
# and only where it can (root with apt-get); elsewhere it says what to install.
set -euo pipefail

missing=()
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v prometheus >/dev/null || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
command -v npm >/dev/null || missing+=(npm)  # scripts/helm.sh takes helm from an npm package
command -v openssl >/dev/null || missing+=(openssl)  # the real API server's test certificates
command -v curl >/dev/null || missing+=(curl ca-certificates)  # scripts/go.sh, if Go is missing

[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "please install: ${missing[*]}" >&2
    exit 1
fi
