#!/usr/bin/env bash
# Fetches what the network-install tests boot, from Debian's packages, once per version, into a
# cache outside the clone: the Debian cloud kernel and the virtio-net modules it needs
# (linux-image-cloud-amd64's kernel package), a static busybox for the test's initrd
# (busybox-static), pxelinux with its ldlinux.c32 (pxelinux, syslinux-common), and for UEFI
# network boot QEMU's OVMF firmware (ovmf) and Debian's signed GRUB network image
# (grub-efi-amd64-signed); for ARM64 UEFI, QEMU's AArch64 firmware (qemu-efi-aarch64) and the
# same GRUB release's ARM64 network image (grub-efi-arm64-signed, read from the arm64 package
# lists kept in the cache, not the system's). The packages
# are downloaded and unpacked, not installed. Prints the directory.
set -euo pipefail

CACHE="${CLOUDLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudlet}"
export DEBIAN_FRONTEND=noninteractive

kpkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')"
if [[ -z "$kpkg" ]]; then
  apt-get update -qq
  kpkg="$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')"
fi
[[ -n "$kpkg" ]] || { echo "boot-peers: no linux-image-cloud-amd64 in the package lists" >&2; exit 1; }
# One query for the three versions (apt-cache takes a second per call).
versions="$(apt-cache policy "$kpkg" busybox-static pxelinux ovmf qemu-efi-aarch64 grub-efi-amd64-signed 2>/dev/null | awk '/^[^ ]/ {p=$1} /Candidate:/ {print p $2}' | tr -d '\n')"
# The ARM64 GRUB image is taken at the version of the amd64 one (one source package).
grubver="$(apt-cache policy grub-efi-amd64-signed 2>/dev/null | awk '/Candidate:/ {print $2}')"
OUT="$CACHE/boot-$kpkg-$(printf %s "$versions arm64" | sha256sum | cut -c1-12)"

if [[ -f "$OUT/.done" ]]; then
  echo "$OUT"
  exit 0
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.boot-peers.lock"
flock 9
if [[ -f "$OUT/.done" ]]; then
  echo "$OUT"
  exit 0
fi

WORK="$(mktemp -d "$CACHE/boot-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"
(
  cd "$WORK"
  pkgs=("$kpkg" busybox-static pxelinux syslinux-common ovmf qemu-efi-aarch64 grub-efi-amd64-signed)
  echo "boot-peers: downloading ${pkgs[*]}" >&2
  apt-get download -q "${pkgs[@]}" >/dev/null 2>&1 || apt-get download "${pkgs[@]}"
  # arm64 package lists of the same sources, in a directory of this work (the system's apt
  # state is not touched).
  mkdir -p a64/lists/partial a64/cache/archives/partial
  a64=(-o Dir::State::Lists="$PWD/a64/lists" -o Dir::Cache="$PWD/a64/cache"
    -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o APT::Sandbox::User=root)
  echo "boot-peers: downloading grub-efi-arm64-signed $grubver (arm64 lists)" >&2
  apt-get "${a64[@]}" update -qq
  apt-get "${a64[@]}" download -q "grub-efi-arm64-signed=$grubver" >/dev/null 2>&1 \
    || apt-get "${a64[@]}" download "grub-efi-arm64-signed=$grubver"
  for deb in ./*.deb; do dpkg-deb -x "$deb" x; done
)
rm -rf "$OUT" "$OUT.tmp"
mkdir -p "$OUT.tmp/modules"
x="$WORK/x"
cp "$(ls "$x"/boot/vmlinuz-* | head -1)" "$OUT.tmp/vmlinuz"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
  f="$(find "$x/lib/modules" -name "$m.ko" -o -name "$m.ko.xz" | head -1)"
  [[ -n "$f" ]] || { echo "boot-peers: module $m not in $kpkg" >&2; exit 1; }
  case "$f" in
    *.xz) xz -dc "$f" >"$OUT.tmp/modules/$m.ko" ;;
    *) cp "$f" "$OUT.tmp/modules/$m.ko" ;;
  esac
done
cp "$x/bin/busybox" "$OUT.tmp/busybox"
cp "$x/usr/lib/PXELINUX/pxelinux.0" "$OUT.tmp/pxelinux.0"
cp "$x/usr/lib/syslinux/modules/bios/ldlinux.c32" "$OUT.tmp/ldlinux.c32"
cp "$x/usr/share/qemu/OVMF.fd" "$OUT.tmp/OVMF.fd"
cp "$x/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed" "$OUT.tmp/grubnetx64.efi"
cp "$x/usr/share/qemu-efi-aarch64/QEMU_EFI.fd" "$OUT.tmp/QEMU_EFI-aarch64.fd"
cp "$x/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed" "$OUT.tmp/grubnetaa64.efi"
chmod -R a+rX "$OUT.tmp"
touch "$OUT.tmp/.done"
mv "$OUT.tmp" "$OUT"
echo "$OUT"
