#!/usr/bin/env bash
# Prints the path of a `go` command new enough for tools/kube and tools/istioctl (Go >= 1.26).
# One on PATH or in /usr/local/go is used when it is new enough. Otherwise (a fresh Debian has
# none, or Go 1.19) the Go distribution is taken from the Go module proxy, exactly as the go
# command fetches a toolchain for GOTOOLCHAIN=go1.27.3 (module golang.org/toolchain, 76 MB,
# about 10 s), into .cache/go/ (git-ignored), once.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want_minor=26
toolchain=go1.27.3
cache="$root/.cache/go"
fetched="$cache/golang.org/toolchain@v0.0.1-$toolchain.linux-amd64/bin/go"

new_enough() {
    local version
    version="$("$1" env GOVERSION 2>/dev/null)" || return 1  # go1.26.8
    version="${version#go1.}"
    [[ "${version%%.*}" =~ ^[0-9]+$ ]] && (( ${version%%.*} >= want_minor ))
}

for candidate in "$(command -v go || true)" /usr/local/go/bin/go "$fetched"; do
    if [[ -n "$candidate" && -x "$candidate" ]] && new_enough "$candidate"; then
        echo "$candidate"
        exit 0
    fi
done

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [[ ! -x "$fetched" ]]; then
    proxy="${GOPROXY:-https://proxy.golang.org}"
    proxy="${proxy%%,*}"
    echo "go.sh: fetching $toolchain from $proxy (about 76 MB)" >&2
    zip="$cache/$toolchain.zip"
    curl -fsSL --retry 3 -o "$zip" "$proxy/golang.org/toolchain/@v/v0.0.1-$toolchain.linux-amd64.zip"
    (cd "$cache" && python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall()' "$zip")
    chmod -R u+x "$cache/golang.org/toolchain@v0.0.1-$toolchain.linux-amd64/bin" \
        "$cache/golang.org/toolchain@v0.0.1-$toolchain.linux-amd64/pkg/tool"
    rm -f "$zip"
fi
echo "$fetched"
