#!/bin/sh
# /init of the Xen test domU (busybox ash; PV or PVH). Driven by kernel parameters:
#   vicover.name=STR     label in the ready line
#   vicover.load=SPEC    comma list of KIND:MIB: anon:N (memhog, user pages), tmpfs:N (shmem),
#                        cache:N (read N MiB of /mnt/cache: page cache)
#   vicover.stamp=1      bump /mnt/state/boot-count, write "boot=N token=UUID name=…" to
#                        /mnt/state/stamp and sync; the ready line shows what the previous boot wrote
# The shared disk is /dev/xvda (ext4). Crash it from dom0 with `xl sysrq DOMID c`.
# Ready line on the console (hvc0):
#   VICOVER-READY name=… boot=N token=… prev=<previous stamp> uptime=S
export PATH=/bin:/sbin
umask 022
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp /mnt
mount -t tmpfs -o mode=1777 tmpfs /tmp
log() { echo "vicover: $*"; }
param() {
  v=$(tr ' ' '\n' < /proc/cmdline | sed -n "s/^vicover\.$1=//p" | tail -n 1)
  [ -n "$v" ] && echo "$v" || echo "$2"
}
NAME=$(param name domu)
LOAD=$(param load "")
STAMP=$(param stamp 0)

# `xl sysrq DOMID c` arrives through xenbus and obeys the sysrq mask (Debian's default 438 lacks it).
echo 1 > /proc/sys/kernel/sysrq
while read -r ko; do insmod "$ko" 2>/dev/null; done < /etc/modules-order

i=0
while [ ! -b /dev/xvda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
DISK=0
if [ -b /dev/xvda ] && mount -t ext4 -o rw /dev/xvda /mnt; then DISK=1; else log "no shared disk"; fi

BOOT=0
PREV=none
TOKEN=$(cat /proc/sys/kernel/random/uuid)
if [ $DISK = 1 ]; then PREV=$(cat /mnt/state/stamp 2>/dev/null | tr ' ' '_' || echo none); fi
if [ "$STAMP" != 0 ] && [ $DISK = 1 ]; then
  BOOT=$(cat /mnt/state/boot-count 2>/dev/null || echo 0)
  BOOT=$((BOOT + 1))
  echo "$BOOT" > /mnt/state/boot-count
  echo "boot=$BOOT token=$TOKEN name=$NAME" > /mnt/state/stamp
  sync
fi

for item in $(echo "$LOAD" | tr ',' ' '); do
  kind=${item%%:*}; n=${item#*:}
  case "$kind" in
    anon) memhog "$n" > /dev/null ;;
    tmpfs)
      mkdir -p /tmpfs && mount -t tmpfs -o size=$((n + 16))m tmpfs /tmpfs && memhog -f /tmpfs/blob "$n" ;;
    cache) [ $DISK = 1 ] && cat /mnt/cache/* 2>/dev/null | head -c $((n * 1048576)) > /dev/null ;;
    *) log "unknown load kind '$kind'" ;;
  esac
done

echo "VICOVER-MEMINFO $(awk '/^(MemTotal|MemFree|Cached|Shmem|AnonPages):/ { printf "%s=%s ", substr($1, 1, length($1) - 1), $2 }' /proc/meminfo)"
echo "VICOVER-READY name=$NAME boot=$BOOT token=$TOKEN prev=$PREV uptime=$(cut -d' ' -f1 /proc/uptime)"
while true; do sleep 3600; done
