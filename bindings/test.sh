#!/usr/bin/env bash
# Builds the Python wheel and the Node addon from this checkout and runs their tests the way a
# user would load them: the wheel installed into a fresh virtualenv, the addon required by path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "maturin>=1.9,<2" "pytest>=8"
(cd "$here/python" && "$work/venv/bin/maturin" build --quiet --locked --out "$work/wheels")
"$work/venv/bin/pip" install -q --disable-pip-version-check "$work"/wheels/cloudlet-*.whl
(cd "$work" && "$work/venv/bin/python" -m pytest -q "$here/python/tests")

cargo build --quiet --locked -p cloudlet-node
cp "$root/target/debug/libcloudlet_node.so" "$work/cloudlet.node"
CLOUDLET_NODE_ADDON="$work/cloudlet.node" node --test "$here/node/test/"
