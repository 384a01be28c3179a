#!/usr/bin/env bash
# Prints the absolute path of a real istioctl, building it once into .cache/istioctl/VERSION/
# (git-ignored) from the Go module in tools/istioctl, which pins istio.io/istio. No registry
# ships an istioctl binary these machines can reach; the Go module proxy serves istio's source.
# The first build downloads a few GB of modules and takes many minutes on 2 cores; later runs
# print the cached path at once. Needs Go (go.mod says which); the tests use it to check
# planned objects with `istioctl validate -f` and `istioctl analyze --use-kube=false`.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
module="$root/tools/istioctl"
version="$(awk '$1 == "istio.io/istio" { print $2; exit }' "$module/go.mod")"
if [ -z "$version" ]; then
    version="$(awk '$1 == "require" && $2 == "istio.io/istio" { print $3; exit }' "$module/go.mod")"
fi
if [ -z "$version" ]; then
    echo "istioctl.sh: no istio.io/istio version in $module/go.mod" >&2
    exit 1
fi
cache="$root/.cache/istioctl/$version"
istioctl="$cache/istioctl"

if [ -x "$istioctl" ]; then
    echo "$istioctl"
    exit 0
fi

go="$("$root/scripts/go.sh")"  # a Go new enough, fetched once if this machine has none

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # one build at a time; a run that waited finds the binary made
if [ -x "$istioctl" ]; then
    echo "$istioctl"
    exit 0
fi

work="$(mktemp -d "$cache/.build.XXXXXX")"  # same filesystem as $istioctl: the mv is atomic
trap 'rm -rf "$work"' EXIT

echo "building istioctl $version from tools/istioctl (once; many minutes on 2 cores)" >&2
start=$SECONDS
(cd "$module" && GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
    "$go" build -trimpath -ldflags="-s -w -X istio.io/istio/pkg/version.buildVersion=$version" \
        -o "$work/istioctl" .)
"$work/istioctl" version --remote=false >/dev/null  # refuse a binary that does not run here
mv "$work/istioctl" "$istioctl"
echo "built istioctl $version in $((SECONDS - start)) s" >&2
echo "$istioctl"
