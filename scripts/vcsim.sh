#!/usr/bin/env bash
# Builds vcsim, govmomi's vCenter simulator, for the hypervisor tests: our small main
# (scripts/vcsim/main.go) over govmomi's simulator package from its Go module, once per
# version, into a cache outside the clone. Prints the binary's path.
set -euo pipefail

GOVMOMI_VERSION="${GOVMOMI_VERSION:-v0.53.0}"
CACHE="${CLOUDLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudlet}"
here="$(cd "$(dirname "$0")" && pwd)"
sum="$(sha256sum "$here/vcsim/main.go" | cut -c1-12)"
OUT="$CACHE/vcsim-govmomi-$GOVMOMI_VERSION-$sum"

if [[ -x "$OUT/vcsim" ]]; then
  echo "$OUT/vcsim"
  exit 0
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.vcsim.lock"
flock 9
if [[ -x "$OUT/vcsim" ]]; then
  echo "$OUT/vcsim"
  exit 0
fi

command -v go >/dev/null || { echo "vcsim: the Go toolchain is needed to build govmomi's simulator" >&2; exit 1; }
WORK="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export GOFLAGS="${GOFLAGS:-} -mod=mod -modcacherw" CGO_ENABLED=0
export GOMODCACHE="$WORK/gomod" GOCACHE="$WORK/gocache"
mkdir -p "$WORK/src" "$OUT.tmp"
cp "$here/vcsim/main.go" "$WORK/src/"
(
  cd "$WORK/src"
  go mod init cloudlet.test/vcsim >/dev/null 2>&1
  go get "github.com/vmware/govmomi@$GOVMOMI_VERSION" >/dev/null 2>&1
  go mod tidy >/dev/null
  echo "vcsim: building govmomi $GOVMOMI_VERSION's simulator" >&2
  go build -trimpath -ldflags='-s -w' -o "$OUT.tmp/vcsim" .
)
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "$OUT/vcsim"
