#!/usr/bin/env bash
# Builds the Python wheels, the npm packages and the static CLI from this checkout with the
# release step's script (scripts/package.sh: maturin and zig from PyPI, @napi-rs/cli from npm),
# installs them the way a user would (a fresh virtualenv; an npm install of the packed
# tarballs into an empty project) and runs their tests against what was installed; then the
# JVM binding with Maven. Everything builds with
# the dev profile (a release build is the same code, minutes longer).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
work="$(mktemp -d)"
# The tests run in a network namespace of their own whose loopback also holds the seed's
# k8s-node1 address (10.0.20.11): the boot service answers a machine only from the address
# the lab gives it, so the tests serve and fetch there. Installs (pip, npm, Maven) run outside.
ns="cloudlet-bindings-$$"
trap 'ip netns del "$ns" 2>/dev/null; rm -rf "$work"' EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" addr add 10.0.20.11/32 dev lo
inns() { ip netns exec "$ns" "$@"; }

# The Rust facade's own answers, for the bindings to match byte for byte.
cargo build --quiet --locked -p cloudlet-cli
export CLOUDLET_BIN="$root/target/debug/cloudlet"

# The artifacts, built by the release step's own script with the dev profile: the abi3
# manylinux2014 wheels for x86-64 and aarch64 (auditwheel must agree with their tags), the npm
# package with its linux-x64-gnu platform package, the static musl CLIs for x86-64 and aarch64
# (each validates the seed, the aarch64 one under qemu-user-static).
# The musllinux wheels, other platforms' npm packages and the multi-platform jar are built by
# `scripts/package.sh` alone (the same functions; about three minutes per platform, which
# CI's time budget does not hold).
bash "$root/scripts/package.sh" --dev --out "$work/dist" \
  wheel:linux-x64-gnu wheel:linux-arm64-gnu npm:linux-x64-gnu cli:linux-x64-musl cli:linux-arm64-musl

# Python: the manylinux2014 wheel into a fresh virtualenv, as pip chooses it for this machine.
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "pytest>=8"
"$work/venv/bin/pip" install -q --disable-pip-version-check --no-index --find-links "$work/dist/python" cloudlet
(cd "$work" && CLOUDLET_WHEEL_PLATFORM="manylinux2014_$(uname -m)" \
  inns "$work/venv/bin/python" -m pytest -q "$here/python/tests")

# Node (package.sh fails when the committed native.d.ts is not what the napi build generates).
# The packed main package and this platform's into an empty project, as npm installs them;
# the addon comes from cloudlet-linux-x64-gnu through the package's own loader.
mkdir -p "$work/app"
(cd "$work/app" && npm init -y >/dev/null && npm install -q --no-audit --no-fund \
  "$work/dist/npm/cloudlet-linux-x64-gnu-"*.tgz "$work/dist/npm/cloudlet-0"*.tgz >/dev/null)
[ -f "$work/app/node_modules/cloudlet-linux-x64-gnu/cloudlet.linux-x64-gnu.node" ] \
  || { echo "npm did not install cloudlet-linux-x64-gnu's addon" >&2; exit 1; }
CLOUDLET_PACKAGE="$work/app/node_modules/cloudlet" inns node --test "$here/node/test/"
# ES module, CommonJS and TypeScript callers of the installed package.
CLOUDLET_APP="$work/app" bash "$here/node/test/consumers.sh"

# JVM: the pom builds the library (here with the dev profile), generates its Kotlin with the
# workspace's uniffi-bindgen, packs the library into the jar and tests Kotlin and Java callers
# with JNA loading it from the class path.
# The README's Kotlin example, as written, in a test (on a copy of the seed).
mkdir -p "$work/readme" "$work/readme-seed"
cp "$root"/examples/seed/*.yaml "$work/readme-seed/"
{
  echo 'import kotlinx.coroutines.runBlocking'
  echo 'import org.junit.jupiter.api.Test'
  echo 'import dev.cloudlet.Cancel'
  echo 'import dev.cloudlet.Lab'
  echo 'class ReadmeExampleTest {'
  echo '    @Test'
  echo '    fun theReadmeExampleRuns() = runBlocking {'
  awk '/^```kotlin$/ {on=1; next} on && /^```$/ {exit} on {print "        " $0}' "$root/README.md" \
    | sed "s|\"examples/seed\"|\"$work/readme-seed\"|"
  echo '        check(report.success) { report }'
  echo '    }'
  echo '}'
} >"$work/readme/ReadmeExampleTest.kt"
grep -q 'Lab.load' "$work/readme/ReadmeExampleTest.kt" || { echo "README.md has no Kotlin example" >&2; exit 1; }
# Maven runs outside the namespace (it fetches what it needs); the JVM it forks for the tests
# runs inside (surefire's `jvm`: a java that enters the namespace first).
mkdir -p "$work/in-ns/bin"
printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$ns" "$(command -v java)" >"$work/in-ns/bin/java"
chmod +x "$work/in-ns/bin/java"
mvn -B --no-transfer-progress -f "$here/jvm/pom.xml" -Dkotlin.readme="$work/readme" \
  -Dcargo.profile=dev -Dcloudlet.lib.dir="$root/target/debug" -Djvm="$work/in-ns/bin/java" package \
  | grep -E 'Tests run:|BUILD|ERROR|FAIL'
jar="$(ls "$here"/jvm/target/cloudlet-*.jar)"
jar tf "$jar" | grep >/dev/null -x 'linux-x86-64/libcloudlet_jvm.so' \
  || { echo "$jar has no linux-x86-64/libcloudlet_jvm.so for JNA" >&2; exit 1; }
echo "jar: $(basename "$jar"), $(jar tf "$jar" | grep -c 'libcloudlet_jvm') native library in it"
# The README's Java example, as written, against the packaged jar alone (JNA loads the library
# from inside it) and its runtime dependencies.
mvn -q -B -f "$here/jvm/pom.xml" dependency:build-classpath -Dmdep.includeScope=runtime \
  -Dmdep.outputFile="$work/jvm-classpath"
cp="$(cat "$work/jvm-classpath")"
{
  echo 'import dev.cloudlet.*;'
  echo 'public class ReadmeJava { public static void main(String[] args) throws Exception {'
  awk '/^```java$/ {on=1; next} on && /^```$/ {exit} on {print "    " $0}' "$root/README.md" \
    | sed "s|\"examples/seed\"|\"$work/readme-java-seed\"|"
  echo '}}'
} >"$work/ReadmeJava.java"
grep -q 'JavaLab.load' "$work/ReadmeJava.java" || { echo "README.md has no Java example" >&2; exit 1; }
mkdir -p "$work/readme-java-seed" && cp "$root"/examples/seed/*.yaml "$work/readme-java-seed/"
out="$(java -cp "$jar:$cp" "$work/ReadmeJava.java")"
echo "README Java example: $out"
[[ "$out" =~ ^[1-9][0-9]*\ created$ ]] || { echo "the README's Java example printed: $out" >&2; exit 1; }
