#!/usr/bin/env bash
# Builds a real kube-apiserver and etcd from the Go module in tools/kube, once, into
# .cache/kube/<kubernetes version>-<hash of tools/kube>/ (git-ignored), and prints their paths:
#
#   kube-apiserver=/abs/path/kube-apiserver
#   etcd=/abs/path/etcd
#
# A second run finds them there and only prints. The first build takes many minutes on 2 cores
# (BENCHMARKS.md, "Real control plane"); Go's own build cache makes a rebuild quicker.
# Needs Go >= the `go` line of tools/kube/go.mod and the Go module proxy (or a filled module cache).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
module="$root/tools/kube"

version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$module/go.mod")"
if [[ -z "$version" ]]; then
    echo "kube-binaries: no k8s.io/kubernetes requirement in $module/go.mod" >&2
    exit 1
fi
# The key: the Kubernetes version and everything in this repository the build reads or obeys.
key="$(cat "$module/go.mod" "$module/go.sum" "$module"/cmd/*/main.go \
    "$root/scripts/kube-binaries.sh" | sha256sum | cut -c1-12)"
out="$root/.cache/kube/$version-$key"
apiserver="$out/kube-apiserver"
etcd="$out/etcd"

if [[ ! -x "$apiserver" || ! -x "$etcd" ]]; then
    mkdir -p "$root/.cache/kube"
    # One build at a time: a second caller waits for the first and then finds the binaries.
    exec 9>"$root/.cache/kube/.lock"
    flock 9
    if [[ ! -x "$apiserver" || ! -x "$etcd" ]]; then
        go="$("$root/scripts/go.sh")"  # a Go new enough, fetched once if this machine has none
        echo "kube-binaries: building kube-apiserver $version and etcd into $out (minutes on first use)" >&2
        tmp="$(mktemp -d "$root/.cache/kube/.build.XXXXXX")"
        chmod 755 "$tmp"
        trap 'rm -rf "$tmp"' EXIT
        minor="${version#v1.}"
        minor="${minor%%.*}"
        pkg=k8s.io/component-base/version
        ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean"
        (
            cd "$module"
            # No VCS stamp: the binaries are the same from a clean or an edited work tree.
            build=("$go" build -trimpath -buildvcs=false)
            "${build[@]}" -ldflags="$ldflags" -o "$tmp/kube-apiserver" ./cmd/kube-apiserver
            "${build[@]}" -ldflags="-s -w" -o "$tmp/etcd" ./cmd/etcd
        )
        rm -rf "$out"
        mv "$tmp" "$out"
        trap - EXIT
        # Binaries of other versions or builds are 140 MB each: keep only these.
        find "$root/.cache/kube" -mindepth 1 -maxdepth 1 -name 'v*' ! -path "$out" \
            -exec rm -rf {} +
    fi
    flock -u 9
fi

echo "kube-apiserver=$apiserver"
echo "etcd=$etcd"
