#!/usr/bin/env bash
# Builds the S3-compatible peer for the backup tests: our small main (scripts/s3peer/main.go)
# over gofakes3's S3 implementation and the AWS SDK's Signature V4 signer from their Go
# modules, once per version, into a cache outside the clone. Prints the binary's path.
set -euo pipefail
exec bash "$(dirname "$0")/go-main-peer.sh" s3peer github.com/johannesboyne/gofakes3 \
  "${GOFAKES3_VERSION:-v1.2.0}" s3peer-gofakes3 "gofakes3 behind a Signature V4 check"
