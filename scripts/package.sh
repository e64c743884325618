#!/usr/bin/env bash
# Builds cloudlet's distributable artifacts the way each registry expects them, into dist/
# (or --out DIR), and checks each one:
#
#   python/  abi3 wheels (CPython 3.11+): manylinux2014 and musllinux_1_2, x86-64 and aarch64,
#            cross-built with maturin and zig; auditwheel must agree with each wheel's tag
#   npm/     the `cloudlet` package (index.js, index.mjs, types) and one package per platform
#            holding its native addon (napi-rs naming: cloudlet-linux-x64-gnu, ...), npm-packed
#   cli/     the CLI as a static musl binary per architecture (no dynamic section), packed
#            with its LICENSE; each validates the seed (another architecture's under QEMU's
#            user-mode emulator, qemu-user-static)
#   jvm/     the jar with the native library of each platform where JNA finds it
#   crates/  every publishable crate, `cargo package`d
#
# usage: scripts/package.sh [--dev] [--out DIR] [ITEM...]
#   ITEM: wheel:PLATFORM, npm:PLATFORM, cli:PLATFORM, jar:PLATFORM[,PLATFORM...], crates
#   PLATFORM: linux-x64-gnu, linux-arm64-gnu, linux-x64-musl, linux-arm64-musl
#   With no ITEM, everything. --dev builds with the dev profile (what bindings/test.sh uses;
#   the release build is the same code, optimised and stripped of its debug info).
# The tools come from the registries (maturin, ziglang, auditwheel and cargo-zigbuild from
# PyPI, @napi-rs/cli from npm, the targets from rustup), once per version into
# ~/.cache/cloudlet/. macOS and Windows are listed in the npm package's targets but not built
# here: their SDKs are not redistributable and not on these machines. Publishing needs the
# registries' credentials: see CONTRIBUTING.md, "Packages".
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

profile=release
out="$root/dist"
items=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) profile=dev ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "package.sh: unknown option $1" >&2; exit 2 ;;
    *) items+=("$1") ;;
  esac
  shift
done
if [ ${#items[@]} -eq 0 ]; then
  items=(crates)
  for p in linux-x64-gnu linux-arm64-gnu linux-x64-musl linux-arm64-musl; do
    items+=("wheel:$p" "npm:$p" "cli:$p")
  done
  items+=(jar:linux-x64-gnu,linux-arm64-gnu)
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"

die() { echo "package.sh: $*" >&2; exit 1; }
# A tool's chatter only when it fails.
quiet() {
  local log
  log="$(mktemp)"
  "$@" >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; die "failed: $*"; }
  rm -f "$log"
}
# napi-rs's platform names, the Rust target of each, and what each registry calls it.
triple() {
  case "$1" in
    linux-x64-gnu) echo x86_64-unknown-linux-gnu ;;
    linux-arm64-gnu) echo aarch64-unknown-linux-gnu ;;
    linux-x64-musl) echo x86_64-unknown-linux-musl ;;
    linux-arm64-musl) echo aarch64-unknown-linux-musl ;;
    *) die "unknown platform $1 (linux-x64-gnu, linux-arm64-gnu, linux-x64-musl, linux-arm64-musl)" ;;
  esac
}
machine() { case "$1" in *-x64-*) echo x86_64 ;; *-arm64-*) echo aarch64 ;; esac; }
wheel_tag() {
  case "$1" in
    *-gnu) echo "manylinux_2_17_$(machine "$1")" ;;
    *-musl) echo "musllinux_1_2_$(machine "$1")" ;;
  esac
}
jna_platform() { case "$1" in linux-x64-gnu) echo linux-x86-64 ;; linux-arm64-gnu) echo linux-aarch64 ;; *) die "no JNA platform for $1" ;; esac; }
# How a binary of platform $1 runs here: as it is, or under QEMU's user-mode emulator.
emulator() {
  local m q
  m="$(machine "$1")"
  [ "$m" = "$(uname -m)" ] && return 0
  for q in "qemu-$m-static" "qemu-$m"; do
    command -v "$q" >/dev/null 2>&1 && { echo "$q"; return 0; }
  done
  die "checking the $m CLI runs needs QEMU's user-mode emulator (Debian: apt-get install qemu-user-static)"
}
profile_dir() { [ "$profile" = dev ] && echo debug || echo release; }
# glibc targets are linked against glibc 2.17's symbols (zig's versioned target): manylinux2014.
zig_target() { [[ "$1" == *-gnu ]] && echo "$(triple "$1").2.17" || triple "$1"; }
# Release artifacts leave their debug info behind (the dev ones are for tests).
strip_cargo=()
strip_maturin=()
if [ "$profile" = release ]; then
  strip_cargo=(--config 'profile.release.strip="debuginfo"')
  strip_maturin=(--strip)
fi

# The tools, pinned, once per version.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/cloudlet"
tools="$cache/package-tools-maturin1.16.0-zig0.17.1-auditwheel6.8.2-zigbuild0.24.0"
if [ ! -x "$tools/bin/cargo-zigbuild" ]; then
  rm -rf "$tools"
  python3 -m venv "$tools"
  quiet "$tools/bin/pip" install -q --disable-pip-version-check \
    maturin==1.16.0 ziglang==0.17.1 auditwheel==6.8.2 cargo-zigbuild==0.24.0
fi
napi_dir="$cache/napi-cli-3.10.12"
if [ ! -x "$napi_dir/node_modules/.bin/napi" ]; then
  quiet npm install --prefix "$napi_dir" --no-audit --no-fund "@napi-rs/cli@3.10.12"
fi
napi="$napi_dir/node_modules/.bin/napi"
# maturin, cargo-zigbuild and napi find zig (ziglang's python -m ziglang) through the venv.
export PATH="$tools/bin:$PATH"
need_target() {
  rustup target list --installed | grep >/dev/null -x "$1" || rustup target add "$1" >/dev/null
}
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT

build_wheel() {
  local p="$1" t tag dir
  t="$(triple "$p")"; tag="$(wheel_tag "$p")"; need_target "$t"
  dir="$staging/wheel-$p"
  local compat=manylinux2014
  [[ "$p" == *-musl ]] && compat=musllinux_1_2
  quiet maturin build --locked --profile "$profile" "${strip_maturin[@]}" --zig --compatibility "$compat" \
    --target "$t" --manifest-path bindings/python/Cargo.toml --out "$dir"
  local wheel
  wheel="$(ls "$dir"/*.whl)"
  [[ "$(basename "$wheel")" == cloudlet-"$version"-cp311-abi3-*"${tag}"*.whl ]] \
    || die "$(basename "$wheel") is not the abi3 $tag wheel"
  local so="$dir/_native.abi3.so"
  unzip -p "$wheel" cloudlet/_native.abi3.so >"$so"
  check_elf "$so" "$p" shared
  if [[ "$p" == *-gnu ]]; then
    # auditwheel reads the wheel's ELF: the glibc symbols it needs must allow the tag it carries.
    auditwheel show "$wheel" | tr -s '\n ' ' ' | grep >/dev/null "consistent with the following platform tag: \"$tag\"" \
      || { auditwheel show "$wheel" >&2; die "auditwheel does not give $(basename "$wheel") the tag $tag"; }
  fi
  # (auditwheel cannot read a musllinux wheel on a glibc host: zig links musl's libc as
  # `libc.so`, which musl's loader maps to itself, and auditwheel looks that name up among the
  # host's glibc files. check_elf holds it to musl: no glibc library, no glibc symbol version.)
  mkdir -p "$out/python"
  mv "$wheel" "$out/python/"
  local by="auditwheel"
  [[ "$p" == *-musl ]] && by="readelf: musl only"
  echo "wheel  $(basename "$wheel")  ($tag per $by)"
}

# The main package's files, staged once; napi's own generator writes the platform packages'
# package.json (name, os, cpu, libc, main) from its targets.
stage_npm() {
  local pkg="$staging/npm"
  [ -d "$pkg" ] && return
  mkdir -p "$pkg"
  cp bindings/node/{package.json,index.js,index.mjs,index.d.ts,native.d.ts} LICENSE "$pkg/"
  cp bindings/node/README.md "$pkg/"
  (cd "$pkg" && quiet "$napi" create-npm-dirs)
  for d in "$pkg"/npm/*/; do cp LICENSE "$d"; done
  mkdir -p "$out/npm"
  (cd "$pkg" && npm pack --silent --pack-destination "$out/npm" >/dev/null)
  echo "npm    cloudlet-$version.tgz"
}

build_npm() {
  local p="$1" t
  t="$(triple "$p")"; need_target "$t"
  stage_npm
  local flags=()
  [ "$profile" = release ] && flags=(--release --strip)
  # Through cargo-zigbuild for every platform, this one too: glibc 2.17's symbols, as the
  # wheels have, whatever the building machine's glibc.
  quiet "$napi" build --manifest-path bindings/node/Cargo.toml --package-json-path bindings/node/package.json \
    --platform --target "$(zig_target "$p")" --cross-compile "${flags[@]}" --no-js \
    --dts native.d.ts --output-dir "$staging/node-$p"
  local addon="$staging/node-$p/cloudlet.$p.node" dir="$staging/npm/npm/$p"
  [ -f "$addon" ] || die "napi build made no $(basename "$addon")"
  # The main package ships the committed native.d.ts: it must be what this build generates.
  diff -u bindings/node/native.d.ts "$staging/node-$p/native.d.ts" >&2 \
    || die "bindings/node/native.d.ts differs from what the napi build generates: commit the generated file"
  check_elf "$addon" "$p" shared
  cp "$addon" "$dir/"
  (cd "$dir" && npm pack --silent --pack-destination "$out/npm" >/dev/null)
  echo "npm    cloudlet-$p-$version.tgz  ($(du -h "$addon" | cut -f1) addon)"
}

# An ELF for the platform's machine; a static binary has no program interpreter and needs no
# library; a shared object for musl needs no glibc.
check_elf() {
  local file="$1" p="$2" kind="$3" want
  want="$(machine "$p")"
  [ "$want" = x86_64 ] && want="X86-64" || want="AArch64"
  readelf -h "$file" | grep >/dev/null "Machine:.*$want" || die "$file is not an $want ELF"
  case "$kind" in
    static)
      ! readelf -l "$file" | grep >/dev/null 'INTERP' || die "$file asks for a program interpreter: not static"
      ! readelf -d "$file" | grep >/dev/null 'NEEDED' || die "$file needs shared libraries: not static" ;;
    shared)
      local newest
      newest="$({ readelf -V "$file" | grep -o 'GLIBC_2\.[0-9]*' || true; } | sort -uV | tail -1)"
      if [[ "$p" == *-gnu ]] && [ "$(printf '%s\n' "$newest" GLIBC_2.17 | sort -V | tail -1)" != GLIBC_2.17 ]; then
        die "$file needs $newest: newer than manylinux2014's glibc 2.17"
      fi
      if [[ "$p" == *-musl ]] && { [ -n "$newest" ] || readelf -d "$file" | grep >/dev/null 'NEEDED.*libc\.so\.6'; }; then
        die "$file is for musl but needs glibc"
      fi ;;
  esac
}

build_cli() {
  local p="$1" t
  t="$(triple "$p")"; need_target "$t"
  [[ "$p" == *-musl ]] || die "the CLI is packaged static, for musl platforms only (not $p)"
  quiet cargo zigbuild --locked --profile "$profile" "${strip_cargo[@]}" --target "$t" -p cloudlet-cli
  local bin="target/$t/$(profile_dir)/cloudlet" dir="$staging/cli-$p/cloudlet-$version-$p"
  check_elf "$bin" "$p" static
  # It must run: it validates the seed here, under QEMU for another architecture.
  local emu
  emu="$(emulator "$p")"
  $emu "$bin" validate examples/seed >/dev/null || die "the static $p CLI does not validate the seed${emu:+ (under $emu)}"
  mkdir -p "$dir" "$out/cli"
  cp "$bin" LICENSE README.md "$dir/"
  tar -C "$(dirname "$dir")" -czf "$out/cli/cloudlet-$version-$p.tar.gz" "$(basename "$dir")"
  echo "cli    cloudlet-$version-$p.tar.gz  (static, $(du -h "$bin" | cut -f1), validated the seed${emu:+ under $emu})"
}

build_jar() {
  local natives="$staging/jvm-natives" p t
  for p in ${1//,/ }; do
    t="$(triple "$p")"; need_target "$t"
    quiet cargo zigbuild --locked --profile "$profile" "${strip_cargo[@]}" --target "$(zig_target "$p")" -p cloudlet-jvm
    mkdir -p "$natives/$(jna_platform "$p")"
    cp "target/$t/$(profile_dir)/libcloudlet_jvm.so" "$natives/$(jna_platform "$p")/"
    check_elf "$natives/$(jna_platform "$p")/libcloudlet_jvm.so" "$p" shared
  done
  # Maven builds this machine's library too, for the workspace's uniffi-bindgen to read the
  # exports from; the jar takes only the zig-linked ones.
  quiet mvn -B --no-transfer-progress -f bindings/jvm/pom.xml -Dcargo.profile="$profile" \
    -Dcloudlet.lib.dir="$root/target/$(profile_dir)" -Dcloudlet.natives="$natives" \
    -Dcloudlet.host.library.skip=true -DskipTests package
  local jar
  jar="$(ls bindings/jvm/target/cloudlet-"$version".jar)"
  for p in ${1//,/ }; do
    jar tf "$jar" | grep >/dev/null -x "$(jna_platform "$p")/libcloudlet_jvm.so" \
      || die "$jar has no $(jna_platform "$p")/libcloudlet_jvm.so"
  done
  mkdir -p "$out/jvm"
  cp "$jar" "$out/jvm/"
  echo "jar    $(basename "$jar")  ($(jar tf "$jar" | grep libcloudlet_jvm | tr '\n' ' '))"
}

build_crates() {
  # Every crate whose manifest does not say `publish = false`, against the others as the
  # registry will see them.
  local names publish=() excluded=() c pub
  names="$(cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    print(p["name"], "no" if p["publish"] == [] else "yes")')"
  while read -r c pub; do
    if [ "$pub" = yes ]; then publish+=("$c"); else excluded+=(--exclude "$c"); fi
  done <<<"$names"
  quiet cargo package --locked --workspace "${excluded[@]}" --no-verify --allow-dirty
  mkdir -p "$out/crates"
  for c in "${publish[@]}"; do cp "target/package/$c-$version.crate" "$out/crates/"; done
  echo "crates $(cd "$out/crates" && ls | tr '\n' ' ')"
}

for item in "${items[@]}"; do
  case "$item" in
    wheel:*) build_wheel "${item#wheel:}" ;;
    npm:*) build_npm "${item#npm:}" ;;
    cli:*) build_cli "${item#cli:}" ;;
    jar:*) build_jar "${item#jar:}" ;;
    crates) build_crates ;;
    *) die "unknown item $item (wheel:P, npm:P, cli:P, jar:P[,P...], crates)" ;;
  esac
done
