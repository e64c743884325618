#!/usr/bin/env bash
# The release step for the platform's pins (see CONTRIBUTING): downloads every release file
# this build knows from its upstream address and compares its SHA-256 with the pinned one.
# Needs the internet, so it is not part of the tests. Prints one line per file and exits 1 if
# any checksum differs or a file cannot be fetched; a file pinned without a checksum (`-`, a
# release asset built at release time) gets its checksum printed, to be pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
while IFS=$'\t' read -r component version url sha; do
    if ! curl -fsSL --proto '=https' --max-time 120 -o "$tmp/f" "$url"; then
        echo "FAIL  $component $version $url: cannot fetch"
        bad=1
        continue
    fi
    got=$(sha256sum "$tmp/f" | cut -c1-64)
    if [ "$sha" = "-" ]; then
        echo "PIN   $component $version $url sha256 $got"
    elif [ "$got" = "$sha" ]; then
        echo "ok    $component $version $url"
    else
        echo "FAIL  $component $version $url: sha256 $got, pinned $sha"
        bad=1
    fi
done < <(cargo run -q --locked --bin cloudlet -- platform releases)
exit $bad
