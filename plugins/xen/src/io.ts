/**
 * Disk I/O of a Xen domain, measured and limited from dom0. xl has no disk throttle (no rate options
 * in xl-disk-configuration), so:
 *
 * - qdisk disks are served by a QEMU process in dom0 (`qemu-system-i386 -xen-domid N …`, started by
 *   libxl): that process is moved into a cgroup v2 group of its own, whose `io.max` limits its reads
 *   and writes on the block device holding the image, and whose `io.stat` measures them.
 * - phy disks are served by blkback, a kernel thread: no cgroup can hold it, so nothing limits it;
 *   its counters come from sysfs (`/sys/bus/xen-backend/devices/vbd-N-DEV/statistics`).
 *
 * Vicover's own dump writer is limited by the core's token bucket in both cases.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { IoLimits, IoStats } from '@vicover/core';
import { VcvError, wrapError } from '@vicover/errors';

/** The dom0 QEMU serving a domain's qdisk backends, by its `-xen-domid N` argument. */
export async function qdiskPid(domid: number): Promise<number | null> {
  let entries: string[];
  try {
    entries = await fsp.readdir('/proc');
  } catch {
    return null;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const argv = await fsp.readFile(`/proc/${e}/cmdline`, 'utf8').then((s) => s.split('\0')).catch(() => null);
    if (!argv) continue;
    const i = argv.indexOf('-xen-domid');
    if (i >= 0 && argv[i + 1] === String(domid) && /qemu/.test(path.basename(argv[0] ?? ''))) return Number(e);
  }
  return null;
}

/** major:minor of the whole block device a file lives on (io.max takes disks, not partitions). */
export async function blockDeviceOf(file: string): Promise<string> {
  const st = await fsp.stat(file).catch((e) => {
    throw wrapError(e, 'VCV_ERR_BACKEND', `xen: cannot stat the disk image ${file}`);
  });
  const dev = st.dev;
  // glibc's dev_t encoding (gnu_dev_major/minor) for devices below 2^32.
  const major = (dev >>> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >>> 12) & 0xfff00);
  let id = `${major}:${minor}`;
  // A partition's sysfs node has `partition`; its parent directory is the disk.
  const sys = await fsp.realpath(`/sys/dev/block/${id}`).catch(() => null);
  if (sys && (await fsp.stat(path.join(sys, 'partition')).then(() => true).catch(() => false))) {
    id = (await fsp.readFile(path.join(path.dirname(sys), 'dev'), 'utf8')).trim();
  }
  if (!sys) throw new VcvError('VCV_ERR_BACKEND', `xen: ${file} is not on a block device (${id}); io.max cannot limit it`, { file, dev: id });
  return id;
}

/** `io.max` line for limits (null: no limit). Zero is not a valid limit: the floor is 4 KiB/s, 1 IOPS. */
export function ioMaxLine(dev: string, l: IoLimits | null): string {
  const bps = l?.bps !== undefined && Number.isFinite(l.bps) ? String(Math.max(4096, Math.round(l.bps))) : 'max';
  const iops = l?.iops !== undefined && Number.isFinite(l.iops) ? String(Math.max(1, Math.round(l.iops))) : 'max';
  return `${dev} rbps=${bps} wbps=${bps} riops=${iops} wiops=${iops}`;
}

/** Parse the line for `dev` from a cgroup's io.stat. */
export function parseIoStat(text: string, dev: string): IoStats {
  const line = text.split('\n').find((l) => l.startsWith(`${dev} `));
  const get = (k: string) => Number(new RegExp(`\\b${k}=(\\d+)`).exec(line ?? '')?.[1] ?? 0);
  return { readBytes: get('rbytes'), writeBytes: get('wbytes'), readOps: get('rios'), writeOps: get('wios') };
}

export class CgroupIo {
  constructor(readonly root: string) {}

  groupOf(name: string): string {
    return path.join(this.root, name.replace(/[^A-Za-z0-9._-]/g, '_'));
  }

  /** Create the group (with the io controller enabled above it) and move the process into it. */
  async adopt(name: string, pid: number): Promise<string> {
    const dir = this.groupOf(name);
    try {
      await fsp.mkdir(dir, { recursive: true });
      // The io controller must be enabled in every ancestor's subtree_control up to the root.
      const chain: string[] = [];
      for (let d = path.dirname(dir); d.startsWith('/sys/fs/cgroup') && d !== '/sys/fs/cgroup'; d = path.dirname(d)) chain.unshift(d);
      for (const d of ['/sys/fs/cgroup', ...chain]) {
        await fsp.writeFile(path.join(d, 'cgroup.subtree_control'), '+io').catch(() => undefined);
      }
      await fsp.writeFile(path.join(dir, 'cgroup.procs'), String(pid));
    } catch (e) {
      throw wrapError(e, 'VCV_ERR_BACKEND', `xen: cannot put pid ${pid} into the cgroup ${dir} (cgroup v2 with the io controller mounted at /sys/fs/cgroup?)`);
    }
    return dir;
  }

  async limit(dir: string, dev: string, l: IoLimits | null): Promise<void> {
    await fsp.writeFile(path.join(dir, 'io.max'), ioMaxLine(dev, l)).catch((e) => {
      throw wrapError(e, 'VCV_ERR_BACKEND', `xen: writing io.max of ${dir} failed`);
    });
  }

  /** False when the group is known to hold no process any more (cgroup.events: populated 0); true otherwise. */
  async populated(dir: string): Promise<boolean> {
    const events = await fsp.readFile(path.join(dir, 'cgroup.events'), 'utf8').catch(() => '');
    return !/^populated 0$/m.test(events);
  }

  async stats(dir: string, dev: string): Promise<IoStats> {
    return parseIoStat(await fsp.readFile(path.join(dir, 'io.stat'), 'utf8').catch(() => ''), dev);
  }

  async remove(dir: string): Promise<void> {
    await fsp.rmdir(dir).catch(() => undefined);
  }
}

/** blkback's counters for one vbd (sectors of 512 bytes). */
export async function blkbackStats(domid: number, devid: number): Promise<IoStats | null> {
  const dir = `/sys/bus/xen-backend/devices/vbd-${domid}-${devid}/statistics`;
  const read = (f: string) => fsp.readFile(path.join(dir, f), 'utf8').then((s) => Number(s.trim())).catch(() => NaN);
  const [rs, ws, rr, wr] = await Promise.all([read('rd_sect'), read('wr_sect'), read('rd_req'), read('wr_req')]);
  if (Number.isNaN(rs)) return null;
  return { readBytes: rs * 512, writeBytes: ws * 512, readOps: rr, writeOps: wr };
}

/** xenstore device id of a vdev name: xvda → 51712 (202 << 8 | 0), xvdb → 51728, … (xvd[a-p] only). */
export function vdevId(vdev: string): number | null {
  const m = /^xvd([a-p])$/.exec(vdev);
  return m ? (202 << 8) | ((m[1]!.charCodeAt(0) - 97) << 4) : null;
}
