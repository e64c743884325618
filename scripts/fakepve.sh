#!/usr/bin/env bash
# Installs fakepve (PyPI: a stateful simulator of the Proxmox VE API, written by others) for
# the hypervisor tests into a virtualenv in the cache outside the clone, once per version.
# Prints the virtualenv's python.
set -euo pipefail

FAKEPVE_VERSION="${FAKEPVE_VERSION:-0.5.0}"
CACHE="${CLOUDLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudlet}"
OUT="$CACHE/fakepve-$FAKEPVE_VERSION"

if [[ -x "$OUT/bin/python" && -f "$OUT/.done" ]]; then
  echo "$OUT/bin/python"
  exit 0
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.fakepve.lock"
flock 9
if [[ -x "$OUT/bin/python" && -f "$OUT/.done" ]]; then
  echo "$OUT/bin/python"
  exit 0
fi
rm -rf "$OUT"
python3 -m venv "$OUT"
"$OUT/bin/pip" install -q --disable-pip-version-check "fakepve[crypto]==$FAKEPVE_VERSION" >&2
touch "$OUT/.done"
echo "$OUT/bin/python"
