#!/usr/bin/env bash
# The bindings' overhead: load + plan of the seed lab and of a 1,000-app lab from Rust (the
# facade, release build), from Python (the wheel, release build) and from Node (the addon,
# release build), medians of 25 runs each, printed as a table with the ratios to Rust.
# Target: within 1.2x of Rust.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
runs=25

# The labs: the seed, and the seed with 1,000 more apps.
cp -r "$root/examples/seed" "$work/seed"
rm -rf "$work/seed/.cloudlet"
cp -r "$work/seed" "$work/big"
python3 - "$work/big/apps.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("cluster:\n  apps:\n")
    for i in range(1000):
        f.write(f"    app{i}:\n      image: docker.io/library/nginx:1.27\n      ports: [{{name: http, port: 80}}]\n"
                f"      ingress: [{{host: app{i}.example.com}}]\n      env: {{INDEX: \"{i}\"}}\n"
                f"      resources: {{cpu: 100m, memory: 64Mi}}\n")
PY

cargo build --quiet --release --locked --example plan_timing
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "maturin>=1.9,<2"
(cd "$here/python" && "$work/venv/bin/maturin" build --quiet --release --locked --out "$work/wheels")
"$work/venv/bin/pip" install -q --disable-pip-version-check "$work"/wheels/cloudlet-*.whl
cargo build --quiet --release --locked -p cloudlet-node
cp "$root/target/release/libcloudlet_node.so" "$work/cloudlet.node"

rust() { "$root/target/release/examples/plan_timing" "$1" "$runs"; }
py() {
  "$work/venv/bin/python" - "$1" "$runs" <<'PY'
import asyncio, statistics, sys, time
import cloudlet
path, runs = sys.argv[1], int(sys.argv[2])

async def main():
    # One event loop, as a program has (like Node's and tokio's in the other columns).
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        plan = await cloudlet.Lab.load(path).plan()
        times.append((time.perf_counter() - t) * 1000)
    return times

print(f"{statistics.median(asyncio.run(main())):.2f}")
PY
}
node_() {
  CLOUDLET_NODE_ADDON="$work/cloudlet.node" node -e '
    const { Lab } = require(process.argv[1]);
    (async () => {
      const times = [];
      for (let i = 0; i < Number(process.argv[3]); i++) {
        const t = process.hrtime.bigint();
        await (await Lab.load(process.argv[2])).plan();
        times.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
      times.sort((a, b) => a - b);
      console.log(times[Math.floor(times.length / 2)].toFixed(2));
    })();' "$here/node/index.js" "$1" "$runs"
}

printf '%-22s %10s %10s %10s %8s %8s\n' "load + plan (median)" "Rust ms" "Python ms" "Node ms" "Py/Rust" "Node/Rust"
for lab in seed big; do
  r=$(rust "$work/$lab"); p=$(py "$work/$lab"); n=$(node_ "$work/$lab")
  name=$([ "$lab" = seed ] && echo "seed lab" || echo "seed + 1,000 apps")
  printf '%-22s %10s %10s %10s %7.2fx %7.2fx\n' "$name" "$r" "$p" "$n" \
    "$(python3 -c "print($p/$r)")" "$(python3 -c "print($n/$r)")"
done
