#!/usr/bin/env bash
# Builds vcsim, govmomi's vCenter simulator, for the hypervisor tests: our small main
# (scripts/vcsim/main.go) over govmomi's simulator package from its Go module, once per
# version, into a cache outside the clone. Prints the binary's path.
set -euo pipefail
exec bash "$(dirname "$0")/go-main-peer.sh" vcsim github.com/vmware/govmomi \
  "${GOVMOMI_VERSION:-v0.53.0}" vcsim-govmomi "govmomi's simulator"
