#!/bin/bash
# Build the Vicover test guest: a Debian kernel, an initramfs (busybox + modules + memhog + /init)
# and an ext4 shared disk. Idempotent and cached; prints the output directory on the last line of
# stdout (all progress goes to stderr).
#
#   test/guest/build.sh [--abi NN] [--dataset-mib N] [--cache-mib N] [--force]
#
# Environment: VICOVER_CACHE (default $HOME/.cache/vicover), VICOVER_KERNEL_ABI (default 56),
# VICOVER_DATASET_MIB (default 256), VICOVER_CACHE_MIB (default 1024).
#
# Layout of the cache:
#   $VICOVER_CACHE/kernel/<kver>/{*.deb, root/}            the extracted .deb (never installed)
#   $VICOVER_CACHE/guest/<kver>-<key>/{vmlinuz, initrd.gz, disk.img, manifest.json}
# <key> hashes this script, init.sh, memhog.c and the sizes, so edits rebuild automatically.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VICOVER_CACHE:-$HOME/.cache/vicover}
ABI=${VICOVER_KERNEL_ABI:-56}
DATASET_MIB=${VICOVER_DATASET_MIB:-256}
CACHE_MIB=${VICOVER_CACHE_MIB:-1024}
FORCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --abi) ABI=$2; shift 2 ;;
    --dataset-mib) DATASET_MIB=$2; shift 2 ;;
    --cache-mib) CACHE_MIB=$2; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

# Modules the guest needs; dependencies come from modules.dep, aliases (crc32c) from modules.alias.
MODULES="qemu_fw_cfg pvpanic pvpanic-mmio virtio_pci virtio_blk crc32c ext4 virtio_net virtio_mem virtio_balloon"

KVER=6.1.0-$ABI-amd64
PKG=linux-image-$KVER
say() { echo "build.sh: $*" >&2; }
need() { command -v "$1" >/dev/null || { say "missing tool: $1"; exit 1; }; }
for t in apt-get dpkg-deb depmod gcc cpio gzip mke2fs flock sha256sum busybox readelf; do need "$t"; done
BUSYBOX=$(command -v busybox)
readelf -l "$BUSYBOX" 2>/dev/null | grep -q INTERP && { say "$BUSYBOX is dynamic; install busybox-static"; exit 1; }

mkdir -p "$CACHE/kernel" "$CACHE/guest"
exec 9>"$CACHE/.build.lock"
flock 9   # one builder at a time (vitest runs files in parallel)

KEY=$( { echo "abi=$ABI dataset=$DATASET_MIB cache=$CACHE_MIB mods=$MODULES";
         cat "$HERE/build.sh" "$HERE/init.sh" "$HERE/memhog.c"; } | sha256sum | cut -c1-12)
OUT=$CACHE/guest/$KVER-$KEY
if [ $FORCE = 0 ] && [ -f "$OUT/manifest.json" ]; then
  say "cached: $OUT"
  echo "$OUT"
  exit 0
fi

T0=$(date +%s.%N)
# --- kernel ---------------------------------------------------------------------------------
KDIR=$CACHE/kernel/$KVER
if [ ! -f "$KDIR/.extracted" ]; then
  rm -rf "$KDIR" && mkdir -p "$KDIR"
  say "downloading $PKG"
  # apt-get download writes to the cwd; as root it warns about the _apt sandbox (harmless).
  (cd "$KDIR" && apt-get download "$PKG" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) || true
  DEB=$(ls "$KDIR"/"$PKG"_*.deb 2>/dev/null | head -n 1)
  [ -n "$DEB" ] || { say "apt-get download $PKG failed (is ABI $ABI still in the mirror?)"; exit 1; }
  dpkg-deb -x "$DEB" "$KDIR/root"
  depmod -b "$KDIR/root" "$KVER"
  touch "$KDIR/.extracted"
fi
DEB=$(ls "$KDIR"/"$PKG"_*.deb | head -n 1)
DEBVER=$(dpkg-deb -f "$DEB" Version)
KROOT=$KDIR/root
MODDIR=$KROOT/lib/modules/$KVER
[ -f "$KROOT/boot/vmlinuz-$KVER" ] || { say "no vmlinuz in $DEB"; exit 1; }

# --- module closure from modules.dep / modules.alias ----------------------------------------
norm() { echo "$1" | tr '-' '_'; }
mod_path() { # module name -> path relative to MODDIR (from modules.dep), empty if not a module
  local n; n=$(norm "$1")
  awk -F: -v n="$n" '{ p = $1; b = p; sub(/.*\//, "", b); sub(/\.ko(\.[a-z]+)?$/, "", b); gsub(/-/, "_", b);
                       if (b == n) { print p; exit } }' "$MODDIR/modules.dep"
}
mod_deps() { # path -> its direct deps (paths)
  awk -F: -v p="$1" '$1 == p { print $2; exit }' "$MODDIR/modules.dep" | tr ' ' '\n' | sed '/^$/d'
}
is_builtin() { grep -q "/$(norm "$1")\.ko\$\|/$1\.ko\$" "$MODDIR/modules.builtin"; }
ORDER=()
declare -A SEEN=()
visit() { # post-order: deps first
  local p=$1 d
  [ -n "${SEEN[$p]:-}" ] && return
  SEEN[$p]=1
  for d in $(mod_deps "$p"); do visit "$d"; done
  ORDER+=("$p")
}
for m in $MODULES; do
  p=$(mod_path "$m")
  if [ -n "$p" ]; then visit "$p"; continue; fi
  if is_builtin "$m"; then say "$m is built in"; continue; fi
  targets=$(awk -v a="$m" '$1 == "alias" && $2 == a { print $3 }' "$MODDIR/modules.alias" | sort -u)
  [ -n "$targets" ] || { say "module $m not found in modules.dep, modules.builtin or modules.alias"; exit 1; }
  for t in $targets; do
    p=$(mod_path "$t"); [ -n "$p" ] && visit "$p"
  done
done
say "modules (${#ORDER[@]}): ${ORDER[*]}"

# --- memhog ---------------------------------------------------------------------------------
WORK=$CACHE/guest/.work.$$
rm -rf "$WORK" "$OUT"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
gcc -static -O2 -Wall -o "$WORK/memhog" "$HERE/memhog.c"
strip "$WORK/memhog" 2>/dev/null || true

# --- initramfs ------------------------------------------------------------------------------
R=$WORK/initramfs
mkdir -p "$R"/{bin,dev,proc,sys,tmp,mnt,run,etc,root,srv,lib/modules/"$KVER"}
ln -s bin "$R/sbin"
cp "$BUSYBOX" "$R/bin/busybox"
for a in $("$BUSYBOX" --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
cp "$WORK/memhog" "$R/bin/memhog"
install -m 0755 "$HERE/init.sh" "$R/init"
for p in "${ORDER[@]}"; do
  mkdir -p "$R/lib/modules/$KVER/$(dirname "$p")"
  cp "$MODDIR/$p" "$R/lib/modules/$KVER/$p"
done
cp "$MODDIR"/modules.{order,builtin,builtin.modinfo} "$R/lib/modules/$KVER/" 2>/dev/null || true
depmod -b "$R" "$KVER"
printf '%s\n' "${ORDER[@]}" > "$R/etc/vicover-modules"
cat > "$R/etc/udhcpc.script" <<'EOF'
#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via ${router%% *} dev "$interface" ;;
esac
EOF
chmod 755 "$R/etc/udhcpc.script"
echo "root:x:0:0:root:/root:/bin/sh" > "$R/etc/passwd"
echo "root:x:0:" > "$R/etc/group"

# A newc entry for /dev/console (char 5,1) written by hand, so no root/mknod is needed.
newc() { # newc NAME MODE(octal) RDEVMAJ RDEVMIN
  local name=$1 mode=$((8#$2)) namesize=$((${#1} + 1)) hdr
  hdr=$(printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        $((RANDOM + 300000)) $mode 0 0 1 0 0 0 0 "$3" "$4" $namesize 0)
  printf '%s%s\0' "$hdr" "$name"
  local pad=$(( (4 - (110 + namesize) % 4) % 4 ))
  [ $pad -gt 0 ] && head -c $pad /dev/zero || true
}
{
  (cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet)
  { newc dev/console 020600 5 1; newc TRAILER!!! 0 0 0; } 
} | gzip -6 > "$WORK/initrd.gz"

# --- shared ext4 disk -----------------------------------------------------------------------
D=$WORK/disk
mkdir -p "$D"/{data,cache,small,state,www,scratch}
"$WORK/memhog" -s 1 -f "$D/data/dataset.bin" "$DATASET_MIB"
i=0; left=$CACHE_MIB
while [ $left -gt 0 ]; do
  n=64; [ $left -lt 64 ] && n=$left
  "$WORK/memhog" -s $((1000 + i)) -f "$D/cache/c$(printf %03d $i).bin" $n
  left=$((left - n)); i=$((i + 1))
done
for d in $(seq -w 0 19); do   # 2000 small files (metadata / private cache)
  mkdir -p "$D/small/d$d"
  for f in $(seq -w 0 99); do echo "small file $d/$f $(printf '%0480d' 0)" > "$D/small/d$d/f$f"; done
done
echo 0 > "$D/state/boot-count"
echo "boot=0 token=initial" > "$D/state/stamp"
echo "vicover shared disk, dataset=${DATASET_MIB}MiB cache=${CACHE_MIB}MiB" > "$D/www/README"
SIZE_MIB=$(( (DATASET_MIB + CACHE_MIB) * 13 / 10 + 256 ))
mke2fs -q -t ext4 -L vicover -E root_owner=0:0 -d "$D" "$WORK/disk.img" "${SIZE_MIB}M" >&2

# --- publish --------------------------------------------------------------------------------
STAGE=$WORK/out
mkdir -p "$STAGE"
cp "$KROOT/boot/vmlinuz-$KVER" "$STAGE/vmlinuz"
mv "$WORK/initrd.gz" "$WORK/disk.img" "$STAGE/"
T1=$(date +%s.%N)
MODS_JSON=$(printf '"%s",' "${ORDER[@]}"); MODS_JSON=[${MODS_JSON%,}]
cat > "$STAGE/manifest.json" <<EOF
{
  "kernelVersion": "$KVER",
  "kernelPackage": "$PKG",
  "kernelPackageVersion": "$DEBVER",
  "key": "$KEY",
  "vmlinuz": "$OUT/vmlinuz",
  "initrd": "$OUT/initrd.gz",
  "disk": "$OUT/disk.img",
  "diskMiB": $SIZE_MIB,
  "datasetMiB": $DATASET_MIB,
  "datasetPath": "/mnt/data/dataset.bin",
  "cacheMiB": $CACHE_MIB,
  "modules": $MODS_JSON,
  "buildSeconds": $(awk "BEGIN{printf \"%.1f\", $T1 - $T0}")
}
EOF
mv "$STAGE" "$OUT"
say "built $OUT in $(awk "BEGIN{printf \"%.1f\", $T1 - $T0}") s"
echo "$OUT"
