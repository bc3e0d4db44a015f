#!/usr/bin/env node
// Calibration of the simulated host's recovery-VM model from a real QEMU guest (docs/simhost.md).
//
//   node bench/scale-calibrate.mjs [--runs 2] [--mem 2048] [--warm cache/c000.bin] [--load SPEC] [--json]
//
// Boots the real test guest (test/guest, Debian 6.1 under QEMU/TCG) the way a recovery VM boots: on a
// disk that holds the service's data, warming the service up (--warm: read a file from the disk)
// before it prints its ready line. At the ready line it records what the simulated recovery VM models:
// boot time (QEMU spawn → ready), disk bytes read and written (QMP query-blockstats), memory touched
// (guest MemTotal − MemFree, and the host's allocated blocks of the RAM file). Needs QEMU and the
// guest build (test/guest/build.sh); takes ~30 s per run under TCG.
import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startGuest } from '../test/guest/guest.mjs';

const { values: a } = parseArgs({
  options: {
    runs: { type: 'string', default: '2' },
    mem: { type: 'string', default: '2048' },
    warm: { type: 'string', default: 'cache/c000.bin' },
    load: { type: 'string', default: '' },
    json: { type: 'boolean', default: false },
  },
});
const MiB = 1024 * 1024;
const say = (s) => process.stderr.write(`bench:scale-calibrate: ${s}\n`);
const runs = [];
for (let i = 0; i < Number(a.runs); i++) {
  const t0 = performance.now();
  const g = await startGuest({ name: `calib${i}`, memMiB: Number(a.mem), load: a.load || undefined, warm: a.warm || undefined, stamp: true });
  try {
    const ready = await g.waitReady();
    const bootSeconds = ready.bootSeconds ?? (performance.now() - t0) / 1000;
    const stats = await g.qmp.execute('query-blockstats');
    const disk = stats.reduce(
      (s, b) => ({ rd: s.rd + (b.stats.rd_bytes ?? 0), wr: s.wr + (b.stats.wr_bytes ?? 0), rdOps: s.rdOps + (b.stats.rd_operations ?? 0), wrOps: s.wrOps + (b.stats.wr_operations ?? 0) }),
      { rd: 0, wr: 0, rdOps: 0, wrOps: 0 },
    );
    const mi = g.meminfo ?? {};
    const touchedGuestMiB = mi.MemTotal && mi.MemFree ? (Number(mi.MemTotal) - Number(mi.MemFree)) / 1024 : null;
    const ramAllocatedMiB = (statSync(g.ramPath).blocks * 512) / MiB;
    const r = {
      bootSeconds: Math.round(bootSeconds * 100) / 100,
      guestUptimeAtReady: ready.uptime ?? null,
      readMiB: Math.round((disk.rd / MiB) * 10) / 10,
      writeMiB: Math.round((disk.wr / MiB) * 10) / 10,
      readOps: disk.rdOps,
      writeOps: disk.wrOps,
      touchedGuestMiB: touchedGuestMiB && Math.round(touchedGuestMiB),
      ramAllocatedMiB: Math.round(ramAllocatedMiB),
    };
    say(JSON.stringify(r));
    runs.push(r);
  } finally {
    await g.dispose();
  }
}
const out = { guest: { memMiB: Number(a.mem), load: a.load, warm: a.warm }, runs, at: new Date().toISOString() };
if (a.json) process.stdout.write(JSON.stringify(out) + '\n');
else console.table(runs);
