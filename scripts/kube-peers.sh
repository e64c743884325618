#!/usr/bin/env bash
# Builds the Kubernetes test peers (kube-apiserver, etcd, kube-controller-manager for the
# controllers tests need, such as the PersistentVolume binder, kube-scheduler and kubeadm for
# the bootstrap tests, kubemark's hollow nodes that join through the real TLS bootstrap, and
# kubectl as the speed and interoperability baseline) from their Go modules,
# once per version, into a cache outside the clone, and prints the directory that
# holds them. Later runs find them there and build nothing.
#
#   scripts/kube-peers.sh            # build if missing, print the directory
#
# Versions: k8s.io/kubernetes KUBE_VERSION, and the etcd server (and its etcdutl) that release pins.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"
CACHE="${CLOUDLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudlet}"
OUT="$CACHE/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"

BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubeadm kubectl kubemark)
have() {
  [[ -x "$OUT/etcd" && -x "$OUT/etcdutl" ]] || return 1
  for b in "${BINARIES[@]}"; do [[ -x "$OUT/$b" ]] || return 1; done
}
if have; then
  echo "$OUT"
  exit 0
fi

mkdir -p "$CACHE"
# One build at a time (tests may ask for the peers concurrently).
exec 9>"$CACHE/.kube-peers.lock"
flock 9
if have; then
  echo "$OUT"
  exit 0
fi

command -v go >/dev/null || { echo "kube-peers: the Go toolchain is needed to build kube-apiserver and etcd" >&2; exit 1; }
WORK="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export GOFLAGS="${GOFLAGS:-} -mod=mod -modcacherw" CGO_ENABLED=0
# Modules and the build cache live in the build directory and go with it: the binaries are
# all later runs need, and Kubernetes leaves gigabytes in Go's caches otherwise.
export GOMODCACHE="$WORK/gomod" GOCACHE="$WORK/gocache"

# kube-apiserver: k8s.io/kubernetes points its staging modules at local directories,
# so a module of ours requires it and replaces each staging module with its tagged release.
mkdir -p "$WORK/kube" "$WORK/etcd" "$OUT.tmp"
# Keep what an earlier run built.
for b in etcd etcdutl "${BINARIES[@]}"; do
  [[ -x "$OUT/$b" ]] && cp "$OUT/$b" "$OUT.tmp/$b"
done
(
  cd "$WORK/kube"
  go mod init cloudlet.test/kube-peers >/dev/null 2>&1
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
  staging="v0${KUBE_VERSION#v1}"
  {
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
  } >>go.mod
  cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  go mod tidy >/dev/null
  for cmd in "${BINARIES[@]}"; do
    [[ -x "$OUT.tmp/$cmd" ]] && continue
    echo "kube-peers: building $cmd $KUBE_VERSION (minutes the first time)" >&2
    go build -trimpath -ldflags='-s -w' -o "$OUT.tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
)

# etcd: a two-line main of ours over etcdmain at the version Kubernetes pins.
[[ -x "$OUT.tmp/etcd" ]] || (
  cd "$WORK/etcd"
  go mod init cloudlet.test/etcd >/dev/null 2>&1
  cat >main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1
  go mod tidy >/dev/null
  echo "kube-peers: building etcd $ETCD_VERSION" >&2
  go build -trimpath -ldflags='-s -w' -o "$OUT.tmp/etcd" .
)

# etcdutl: restores an etcd snapshot into a data directory (the backup tests' restore).
[[ -x "$OUT.tmp/etcdutl" ]] || (
  mkdir -p "$WORK/etcdutl" && cd "$WORK/etcdutl"
  go mod init cloudlet.test/etcdutl >/dev/null 2>&1
  cat >tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/etcdutl/v3"
GO
  go get "go.etcd.io/etcd/etcdutl/v3@$ETCD_VERSION" >/dev/null 2>&1
  go mod tidy >/dev/null
  echo "kube-peers: building etcdutl $ETCD_VERSION" >&2
  go build -trimpath -ldflags='-s -w' -o "$OUT.tmp/etcdutl" go.etcd.io/etcd/etcdutl/v3
)

rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "$OUT"
