#!/usr/bin/env bash
# The installed npm package as its three kinds of callers see it: an ES module (the package
# README's example as written, on a copy of the seed), a CommonJS script and a strict
# TypeScript program checked and compiled by tsc with Node's own module resolution (nodenext),
# each in the project CLOUDLET_APP where `cloudlet` and its platform package are installed.
set -euo pipefail
app="${CLOUDLET_APP:?the project where cloudlet is installed}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
mkdir -p "$app/seed" "$app/seed-ts"
cp "$root"/examples/seed/*.yaml "$app/seed/"
cp "$root"/examples/seed/*.yaml "$app/seed-ts/"

# ES module: the package README's example, with the seed's copy.
awk '/^```js$/ {on=1; next} on && /^```$/ {exit} on {print}' "$here/../README.md" \
  | sed "s|'examples/seed'|'./seed'|" >"$app/readme.mjs"
grep -q "from 'cloudlet'" "$app/readme.mjs" || { echo "bindings/node/README.md has no ES module example" >&2; exit 1; }
types="$(cd "$app" && node readme.mjs | sort -u | tr '\n' ' ')"
[[ "$types" == *finished* ]] || { echo "the README's ES module example printed: $types" >&2; exit 1; }
echo "ESM (README example): event types $types"

# The ES module and CommonJS entries are the same objects.
cat >"$app/same.mjs" <<'EOF'
import { createRequire } from 'node:module';
import cloudlet, { Lab, CloudletError, validate, schema, version } from 'cloudlet';
const cjs = createRequire(import.meta.url)('cloudlet');
if (cloudlet !== cjs || Lab !== cjs.Lab || CloudletError !== cjs.CloudletError || validate !== cjs.validate
  || schema !== cjs.schema || version !== cjs.version) throw new Error('ESM and CommonJS entries differ');
const esm = await import('cloudlet');
const missing = Object.keys(cjs).filter((k) => !(k in esm));
if (missing.length) throw new Error(`ESM entry lacks ${missing}`);
console.log(`ESM and CommonJS: the same ${Object.keys(cjs).length} exports, version ${version}`);
EOF
(cd "$app" && node same.mjs)

# CommonJS: a lab error as a CloudletError with its position.
cat >"$app/cjs.cjs" <<'EOF'
const fs = require('node:fs');
const { Lab, CloudletError } = require('cloudlet');
fs.mkdirSync('broken', { recursive: true });
fs.writeFileSync('broken/lab.yaml', 'name: t\nsite: {domain: t.lan}\nmachines:\n  a: {cpus: 1, memroy: 1GiB}\n');
Lab.load('broken').then(
  () => { throw new Error('a broken lab loaded'); },
  (e) => {
    if (!(e instanceof CloudletError) || e.code !== 'LAB_INVALID' || e.line !== 4) throw e;
    console.log(`CommonJS: ${e.code} at ${e.file}:${e.line}:${e.column}`);
  },
);
EOF
(cd "$app" && node cjs.cjs)

# TypeScript, strict, as a project with "type": "module" compiles it.
(cd "$app" && npm install -q --no-audit --no-fund typescript@5.9.3 @types/node@22 >/dev/null)
cat >"$app/tsconfig.json" <<'EOF'
{ "compilerOptions": { "strict": true, "module": "nodenext", "moduleResolution": "nodenext",
    "target": "es2022", "outDir": "out", "types": ["node"] }, "files": ["main.mts"] }
EOF
cat >"$app/main.mts" <<'EOF'
import { Lab, CloudletError, type Diagnostic, type Plan } from 'cloudlet';
const lab: Lab = await Lab.load('./seed-ts');
const problems: Diagnostic[] = lab.validate().filter((d) => d.severity === 'error');
const plan: Plan = await lab.plan();
const creates: number = plan.steps.filter((s) => s.action === 'create').length;
try {
  await Lab.load('./no-such-lab');
} catch (e) {
  if (!(e instanceof CloudletError) || e.code !== 'LAB_IO') throw e;
}
if (problems.length !== 0 || creates === 0) throw new Error(`${problems.length} errors, ${creates} creates`);
console.log(`TypeScript: ${problems.length} errors, ${creates} creates planned`);
EOF
# A misuse must not type-check: the types are what tsc checks against, not `any`.
printf "import { Lab } from 'cloudlet';\nconst n: number = (await Lab.load('./seed')).validate();\n" >"$app/wrong.mts"
if (cd "$app" && node_modules/.bin/tsc --noEmit --strict --module nodenext --moduleResolution nodenext \
    --target es2022 --types node wrong.mts >/dev/null); then
  echo "tsc accepted a Diagnostic[] as a number: the package's types are not checked" >&2
  exit 1
fi
(cd "$app" && node_modules/.bin/tsc -p tsconfig.json && node out/main.mjs)
