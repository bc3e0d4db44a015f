#!/bin/bash
# Build the nested Xen test environment (docs/xen.md): Debian's Xen 4.17 hypervisor, a dom0 (Debian
# kernel, busybox initramfs, debootstrap'ed bookworm root with xen-utils-4.17, qemu-system-xen and
# Node.js), and the domU pieces (busybox initramfs with xen-blkfront, ext4 shared disk). Idempotent
# and cached; prints the output directory on the last line of stdout (progress goes to stderr).
#
#   test/xen/build.sh [--force]
#
# Environment: VICOVER_CACHE (default $HOME/.cache/vicover), VICOVER_KERNEL_ABI (default 56),
# VICOVER_DEBIAN_MIRROR (default: the first deb.debian.org-style URI of the host's apt sources).
#
# Cache layout (two layers, so that editing the domU pieces does not redo the debootstrap):
#   $VICOVER_CACHE/xen/root-<rootkey>/{xen, vmlinuz, dom0-initrd.gz, dom0.img}
#   $VICOVER_CACHE/xen/domu-<domukey>/{domu-initrd.gz, domu-disk.img}
#   $VICOVER_CACHE/xen/env-<rootkey>-<domukey>/manifest.json      (names both)
#   $VICOVER_CACHE/xen/debs/                  downloaded .debs (hypervisor)
# <rootkey> hashes ROOT_RECIPE (bump it when the dom0 recipe below changes), the Node.js version and
# the kernel ABI; <domukey> hashes domu-init.sh, memhog.c and the domU module list. Neither the
# project nor dom0-init.sh is baked into the image: dom0's /sbin/vicover-dom0-init mounts the work
# tree over 9p and runs test/xen/dom0-init.sh from it; the domU pieces reach dom0 through /share.
# Needs root (debootstrap chroots), debootstrap, busybox-static, cpio, e2fsprogs, kmod, gcc.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${VICOVER_CACHE:-$HOME/.cache/vicover}
XC=$CACHE/xen
ABI=${VICOVER_KERNEL_ABI:-56}
FORCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

say() { echo "xen/build.sh: $*" >&2; }
need() { command -v "$1" >/dev/null || { say "missing tool: $1 (apt-get install $2)"; exit 1; }; }
need debootstrap debootstrap
need busybox busybox-static
need cpio cpio
need mke2fs e2fsprogs
need modprobe kmod
need gcc gcc
need node nodejs
[ "$(id -u)" = 0 ] || { say "must run as root (debootstrap)"; exit 1; }
BUSYBOX=$(command -v busybox)
readelf -l "$BUSYBOX" 2>/dev/null | grep -q INTERP && { say "$BUSYBOX is dynamic; install busybox-static"; exit 1; }

KVER=6.1.0-$ABI-amd64
NODE_BIN=$(readlink -f "$(command -v node)")
NODE_VER=$("$NODE_BIN" --version)
MIRROR=${VICOVER_DEBIAN_MIRROR:-$( { grep -rhoE 'https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true; } | head -n 1 | tr -d ' ')}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

mkdir -p "$XC/debs"
exec 9>"$XC/.build.lock"
flock 9

# The dom0 recipe: bump when the debootstrap/package/image steps below change.
ROOT_RECIPE=2
DOMU_MODULES="xen-blkfront ext4 crc32c"
ROOTKEY=$(echo "recipe=$ROOT_RECIPE abi=$ABI node=$NODE_VER" | sha256sum | cut -c1-12)
DOMUKEY=$( { echo "abi=$ABI mods=$DOMU_MODULES"; cat "$HERE/domu-init.sh" "$ROOT/test/guest/memhog.c"; } | sha256sum | cut -c1-12)
ROOTDIR=$XC/root-$ROOTKEY
DOMUDIR=$XC/domu-$DOMUKEY
OUT=$XC/env-$ROOTKEY-$DOMUKEY
if [ $FORCE = 0 ] && [ -f "$OUT/manifest.json" ] && [ -f "$ROOTDIR/.done" ] && [ -f "$DOMUDIR/.done" ]; then
  say "cached: $OUT"
  echo "$OUT"
  exit 0
fi
[ $FORCE = 1 ] && rm -rf "$ROOTDIR" "$DOMUDIR"
T0=$(date +%s)

# --- the Debian kernel (shared with test/guest: downloaded and extracted once) ------------------
"$ROOT/test/guest/build.sh" --abi "$ABI" >/dev/null
KROOT=$CACHE/kernel/$KVER/root
[ -f "$KROOT/boot/vmlinuz-$KVER" ] || { say "no kernel at $KROOT"; exit 1; }

WORK=$XC/.work.$$
rm -rf "$WORK"
mkdir -p "$WORK"
cleanup() {
  # debootstrap may leave /proc or /sys mounted inside the chroot when it fails.
  for m in proc sys dev/pts dev; do umount -l "$WORK/root/$m" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

mods() { # mods DEST MODULE... → copies the closure, deps first, and writes DEST/etc/modules-order
  local dest=$1; shift
  mkdir -p "$dest/lib/mods" "$dest/etc"
  : > "$dest/etc/modules-order"
  local m p n=0
  for m in "$@"; do
    modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
  done | awk '!seen[$0]++' | while read -r p; do
    n=$((n + 1))
    cp "$p" "$dest/lib/mods/$(printf %02d $n)-$(basename "$p")"
    echo "/lib/mods/$(printf %02d $n)-$(basename "$p")" >> "$dest/etc/modules-order"
  done
}
busybox_tree() { # busybox_tree DEST
  mkdir -p "$1"/{bin,dev,proc,sys,tmp,mnt,run,etc,newroot}
  ln -sf bin "$1/sbin"
  cp "$BUSYBOX" "$1/bin/busybox"
  for a in $("$BUSYBOX" --list); do [ "$a" = busybox ] || ln -sf busybox "$1/bin/$a"; done
  echo "root:x:0:0:root:/root:/bin/sh" > "$1/etc/passwd"
  echo "root:x:0:" > "$1/etc/group"
}
newc() { # a newc entry for a character device, written by hand (no mknod needed)
  local name=$1 mode=$((8#$2)) namesize=$((${#1} + 1)) hdr
  hdr=$(printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        $((RANDOM + 300000)) $mode 0 0 1 0 0 0 0 "$3" "$4" $namesize 0)
  printf '%s%s\0' "$hdr" "$name"
  local pad=$(( (4 - (110 + namesize) % 4) % 4 ))
  [ $pad -gt 0 ] && head -c $pad /dev/zero || true
}
pack() { # pack DIR OUT.gz
  { (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet)
    { newc dev/console 020600 5 1; newc TRAILER!!! 0 0 0; }
  } | gzip -6 > "$2"
}

# ================================ layer 1: Xen + dom0 ===========================================
if [ ! -f "$ROOTDIR/.done" ]; then
  # --- Xen hypervisor -------------------------------------------------------------------------
  HV=$(ls "$XC"/debs/xen-hypervisor-4.17-amd64_*.deb 2>/dev/null | head -n 1 || true)
  if [ -z "$HV" ]; then
    say "downloading xen-hypervisor-4.17-amd64"
    (cd "$XC/debs" && apt-get download xen-hypervisor-4.17-amd64 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) || true
    HV=$(ls "$XC"/debs/xen-hypervisor-4.17-amd64_*.deb 2>/dev/null | head -n 1 || true)
    [ -n "$HV" ] || { say "apt-get download xen-hypervisor-4.17-amd64 failed"; exit 1; }
  fi
  dpkg-deb -x "$HV" "$WORK/hv"
  # QEMU's multiboot loader takes the ELF, not the gzip Debian ships.
  gunzip -c "$WORK"/hv/boot/xen-4.17-amd64.gz > "$WORK/xen"

  # --- dom0 initramfs: load virtio + ext4, mount /dev/vda, switch_root into the real dom0 ------
  I0=$WORK/dom0-initramfs
  busybox_tree "$I0"
  mods "$I0" virtio_pci virtio_blk ext4 crc32c
  cat > "$I0/init" <<'EOS'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r ko; do insmod "$ko" 2>/dev/null; done < /etc/modules-order
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if ! mount -t ext4 -o rw /dev/vda /newroot; then
  echo "vicover-dom0-initramfs: cannot mount /dev/vda"; exec sh
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/vicover-dom0-init
EOS
  chmod 755 "$I0/init"
  pack "$I0" "$WORK/dom0-initrd.gz"

  # --- dom0 root: debootstrap bookworm + Xen tools + qemu-system-xen (qdisk) + Node.js ---------
  R=$WORK/root
  say "debootstrap bookworm from $MIRROR (a few minutes)"
  debootstrap --variant=minbase \
    --include=xen-utils-4.17,xenstore-utils,qemu-system-xen,kmod,iproute2,procps,util-linux,e2fsprogs,psmisc \
    bookworm "$R" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; say "debootstrap failed"; exit 1; }
  # The hypervisor .deb comes from bookworm-security; bring the tools to the same point release.
  SECURITY=${MIRROR%/debian}/debian-security
  cat > "$R/etc/apt/sources.list" <<EOS
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY bookworm-security main
EOS
  cp /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || true
  chroot "$R" /bin/sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get -y -qq --no-install-recommends upgrade' \
    >> "$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; say "apt-get upgrade in the dom0 root failed"; exit 1; }
  for m in proc sys dev/pts dev; do umount -l "$R/$m" 2>/dev/null || true; done
  rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
  # Kernel modules (the whole tree: dom0 loads xen-*, loop, 9p, … with modprobe).
  mkdir -p "$R/lib/modules"
  cp -a "$KROOT/lib/modules/$KVER" "$R/lib/modules/"
  depmod -b "$R" "$KVER"
  install -m 0755 "$NODE_BIN" "$R/usr/local/bin/node"
  # PID 1 is a stub: mount the work tree over 9p and run test/xen/dom0-init.sh from it, so that
  # script can change without rebuilding this image.
  cat > "$R/sbin/vicover-dom0-init" <<'EOS'
#!/bin/bash
mount -t proc proc /proc
mount -t sysfs sysfs /sys
modprobe 9pnet_virtio; modprobe 9p
mkdir -p /project /share
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro project /project && [ -x /project/test/xen/dom0-init.sh ]; then
  exec /project/test/xen/dom0-init.sh
fi
echo "vicover-dom0: cannot mount the work tree (9p tag 'project'); a shell on the console" > /dev/hvc0
exec /bin/bash < /dev/hvc0 > /dev/hvc0 2>&1
EOS
  chmod 755 "$R/sbin/vicover-dom0-init"
  mkdir -p "$R"/{share,project,var/lib/vicover-test,var/lib/xen/dump,var/log/xen/console}
  echo vicover-dom0 > "$R/etc/hostname"
  echo "127.0.0.1 localhost vicover-dom0" > "$R/etc/hosts"
  # xl's defaults: dom0's memory is fixed (dom0_mem), no autoballooning.
  if [ -f "$R/etc/xen/xl.conf" ]; then
    sed -i 's/^#\?autoballoon=.*/autoballoon="off"/' "$R/etc/xen/xl.conf"
    grep -q '^autoballoon=' "$R/etc/xen/xl.conf" || echo 'autoballoon="off"' >> "$R/etc/xen/xl.conf"
  fi
  chroot "$R" dpkg-query -W -f '${Version}' xen-utils-4.17 > "$WORK/xen-utils.version"
  chroot "$R" dpkg-query -W -f '${Version}' qemu-system-xen > "$WORK/qemu-system-xen.version"
  ROOT_MIB=$(( $(du -sm "$R" | cut -f1) + 1536 ))
  say "dom0 root: $(du -sh "$R" | cut -f1); image ${ROOT_MIB} MiB"
  mke2fs -q -t ext4 -L vicover-dom0 -d "$R" "$WORK/dom0.img" "${ROOT_MIB}M" >&2
  S=$WORK/root-out
  mkdir -p "$S"
  mv "$WORK/xen" "$WORK/dom0-initrd.gz" "$WORK/dom0.img" "$WORK/xen-utils.version" "$WORK/qemu-system-xen.version" "$S/"
  dpkg-deb -f "$HV" Version > "$S/xen-hypervisor.version"
  cp "$KROOT/boot/vmlinuz-$KVER" "$S/vmlinuz"
  touch "$S/.done"
  rm -rf "$ROOTDIR"
  mv "$S" "$ROOTDIR"
  rm -rf "$R"
fi

# ================================ layer 2: the domU pieces ======================================
if [ ! -f "$DOMUDIR/.done" ]; then
  IU=$WORK/domu-initramfs
  busybox_tree "$IU"
  # shellcheck disable=SC2086
  mods "$IU" $DOMU_MODULES
  gcc -static -O2 -Wall -o "$IU/bin/memhog" "$ROOT/test/guest/memhog.c"
  strip "$IU/bin/memhog" 2>/dev/null || true
  install -m 0755 "$HERE/domu-init.sh" "$IU/init"
  S=$WORK/domu-out
  mkdir -p "$S"
  pack "$IU" "$S/domu-initrd.gz"
  # The shared disk: small; state files the recovery domain must see, some files to cache.
  D=$WORK/domu-disk
  mkdir -p "$D"/{state,cache,scratch}
  echo 0 > "$D/state/boot-count"
  echo "boot=0 token=initial" > "$D/state/stamp"
  for i in 0 1 2 3; do "$IU/bin/memhog" -s $((1000 + i)) -f "$D/cache/c$i.bin" 16; done
  mke2fs -q -t ext4 -L vicover-domu -E root_owner=0:0 -d "$D" "$S/domu-disk.img" 160M >&2
  touch "$S/.done"
  rm -rf "$DOMUDIR"
  mv "$S" "$DOMUDIR"
fi

# ================================ the manifest ==================================================
T1=$(date +%s)
mkdir -p "$OUT"
cat > "$OUT/manifest.json.tmp" <<EOF2
{
  "rootKey": "$ROOTKEY",
  "domuKey": "$DOMUKEY",
  "xen": "$ROOTDIR/xen",
  "vmlinuz": "$ROOTDIR/vmlinuz",
  "dom0Initrd": "$ROOTDIR/dom0-initrd.gz",
  "dom0Image": "$ROOTDIR/dom0.img",
  "domuDir": "$DOMUDIR",
  "xenHypervisorPackage": "xen-hypervisor-4.17-amd64 $(cat "$ROOTDIR/xen-hypervisor.version")",
  "xenUtilsPackage": "xen-utils-4.17 $(cat "$ROOTDIR/xen-utils.version")",
  "qemuSystemXenPackage": "qemu-system-xen $(cat "$ROOTDIR/qemu-system-xen.version")",
  "kernelVersion": "$KVER",
  "node": "$NODE_VER",
  "mirror": "$MIRROR",
  "buildSeconds": $((T1 - T0))
}
EOF2
mv "$OUT/manifest.json.tmp" "$OUT/manifest.json"
say "ready: $OUT ($((T1 - T0)) s)"
echo "$OUT"
