#!/usr/bin/env bash
# Fetches what the network-install tests boot, from Debian's packages, once per version, into a
# cache outside the clone: the Debian cloud kernel and the virtio-net modules it needs
# (linux-image-cloud-amd64's kernel package), a static busybox for the test's initrd
# (busybox-static), pxelinux with its ldlinux.c32 (pxelinux, syslinux-common), and for UEFI
# network boot QEMU's OVMF firmware (ovmf) and Debian's signed GRUB network image
# (grub-efi-amd64-signed). The packages
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
versions="$(apt-cache policy "$kpkg" busybox-static pxelinux ovmf grub-efi-amd64-signed 2>/dev/null | awk '/^[^ ]/ {p=$1} /Candidate:/ {print p $2}' | tr -d '\n')"
OUT="$CACHE/boot-$kpkg-$(printf %s "$versions" | sha256sum | cut -c1-12)"

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
  pkgs=("$kpkg" busybox-static pxelinux syslinux-common ovmf grub-efi-amd64-signed)
  echo "boot-peers: downloading ${pkgs[*]}" >&2
  apt-get download -q "${pkgs[@]}" >/dev/null 2>&1 || apt-get download "${pkgs[@]}"
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
chmod -R a+rX "$OUT.tmp"
touch "$OUT.tmp/.done"
mv "$OUT.tmp" "$OUT"
echo "$OUT"
