#!/usr/bin/env bash
# Builds a test peer that is a small main of ours (scripts/NAME/main.go) over a Go module,
# once per module version and main, into a cache outside the clone; prints the binary's path.
# Usage: go-main-peer.sh NAME MODULE VERSION CACHE-PREFIX WHAT
set -euo pipefail

name="$1" module="$2" version="$3" prefix="$4" what="$5"
CACHE="${CLOUDLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudlet}"
here="$(cd "$(dirname "$0")" && pwd)"
sum="$(sha256sum "$here/$name/main.go" | cut -c1-12)"
OUT="$CACHE/$prefix-$version-$sum"

if [[ -x "$OUT/$name" ]]; then
  echo "$OUT/$name"
  exit 0
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.$name.lock"
flock 9
if [[ -x "$OUT/$name" ]]; then
  echo "$OUT/$name"
  exit 0
fi

command -v go >/dev/null || { echo "$name: the Go toolchain is needed to build $what" >&2; exit 1; }
WORK="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export GOFLAGS="${GOFLAGS:-} -mod=mod -modcacherw" CGO_ENABLED=0
export GOMODCACHE="$WORK/gomod" GOCACHE="$WORK/gocache"
mkdir -p "$WORK/src" "$OUT.tmp"
cp "$here/$name/main.go" "$WORK/src/"
(
  cd "$WORK/src"
  go mod init "cloudlet.test/$name" >/dev/null 2>&1
  go get "$module@$version" >/dev/null 2>&1
  go mod tidy >/dev/null 2>&1
  echo "$name: building $what ($module $version)" >&2
  go build -trimpath -ldflags='-s -w' -o "$OUT.tmp/$name" .
)
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "$OUT/$name"
