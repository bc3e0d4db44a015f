#!/bin/bash
# PID 1 of the nested test dom0: the image's /sbin/vicover-dom0-init (test/xen/build.sh) mounts the
# work tree read-only at /project over 9p and execs this script from it. Starts what a Xen dom0 needs without systemd (xenfs, xenstored, xen-init-dom0, xenconsoled with
# per-guest console logs), mounts the host's 9p shares (/share read-write, /project read-only: the
# work tree), then runs jobs the host drops into /share/jobs:
#   ID.sh   a bash script (written by the host, renamed into place)
#   ID.out  its stdout+stderr, ID.rc its exit status (written when it ends)
# Jobs run concurrently, each in the background. /share/jobs/STOP powers dom0 (and so QEMU) off.
# The domU pieces (kernel, initramfs, disk image) are in /share/domu (env.mjs puts them there).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
XB=/usr/lib/xen-4.17/bin
say() { echo "vicover-dom0: $*" > /dev/hvc0 2>/dev/null || echo "vicover-dom0: $*"; }

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -o remount,rw /
mkdir -p /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "+io +memory +cpu +pids" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null

for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-blkback xen-netback loop; do
  modprobe "$m" 2>/dev/null || say "modprobe $m failed"
done
mount -t xenfs xenfs /proc/xen
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /share || say "no /share"
mountpoint -q /project || mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro project /project || say "no /project"
hostname vicover-dom0
# The daemon runs from a local copy of the built work tree (env.mjs bundles it): node resolving
# modules over 9p is far too slow under nested TCG.
if [ -f /share/project.tar ]; then
  rm -rf /opt/vicover && mkdir -p /opt/vicover && tar -C /opt/vicover -xf /share/project.tar || say "unpacking project.tar failed"
fi
ip link set lo up

mkdir -p /run/xen /run/xenstored /var/run/xen /var/log/xen/console /var/lib/xen/dump /var/lib/xenstored
XENSTORED=$XB/xenstored; [ -x "$XENSTORED" ] || XENSTORED=$(command -v xenstored)
"$XENSTORED" --pid-file=/run/xenstored.pid 2>>/var/log/xen/xenstored.log
for i in $(seq 1 100); do xenstore-read /local/domain/0/name >/dev/null 2>&1 && break; xenstore-ls / >/dev/null 2>&1 && break; sleep 0.1; done
"$XB/xen-init-dom0" >>/var/log/xen/xen-init-dom0.log 2>&1 || say "xen-init-dom0 failed"
XENCONSOLED=$XB/xenconsoled; [ -x "$XENCONSOLED" ] || XENCONSOLED=$(command -v xenconsoled)
"$XENCONSOLED" --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console --timestamp=none
# qdisk backends (qemu-system-xen) for dom0 itself are not needed; libxl starts one per domU.

UP=$(cut -d' ' -f1 /proc/uptime)
say "VICOVER-DOM0-READY uptime=$UP"
mkdir -p /share/jobs
echo "uptime=$UP" > /share/dom0-ready

cd /share/jobs || exit 1
while true; do
  if [ -e /share/jobs/STOP ]; then
    say "stopping"
    xl list 2>/dev/null | awk 'NR > 2 { print $2 }' | while read -r d; do xl destroy "$d" 2>/dev/null; done
    sync
    echo 1 > /proc/sys/kernel/sysrq
    echo o > /proc/sysrq-trigger
    sleep 30
  fi
  for f in /share/jobs/*.sh; do
    [ -e "$f" ] || continue
    id=${f%.sh}
    mv "$f" "$id.run" 2>/dev/null || continue
    ( bash "$id.run" > "$id.out" 2>&1 < /dev/null; echo $? > "$id.rc.tmp"; mv "$id.rc.tmp" "$id.rc" ) &
  done
  sleep 0.25
done
