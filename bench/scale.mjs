#!/usr/bin/env node
// Scale on the simulated host (docs/performance.md "## Scale (simulated host)").
//
//   npm run bench:scale -- [--json] [--sizes 4,64,256,1024] [--free 50,90] [--bandwidth-mibps 790]
//                          [--modes vicover,coredump-restart,restart-only] [--keep-images]
//
// For each guest size and free percentage: generate the simulated guest image once (a separate
// process, so generating never counts in the daemon's memory), then run `vicover demo` once per mode,
// each in a fresh process (the daemon with linux + shared-fs + io-priority + simhost), and collect:
//   classifySeconds  measured here (wall): the linux plugin classifying every RAM page (vicover mode)
//   dumpSeconds      modelled: the vicover-mode dump through the modelled disk (CPU time included)
//   peakRssMiB       measured here: the largest peak RSS of the three daemon processes
//   serviceDowntimeSeconds per mode: modelled (crash → the recovery VM's ready line)
// The disk and the recovery VM boot are modelled; everything the daemon computes runs for real on
// this machine and counts as long as it takes (the time warp skips only the waits; see docs/simhost.md).
// Chunks scale with the guest (guest/512, at least 128 MiB) and the dump directory is a tmpfs, so the
// core's per-chunk journal fsyncs measure the daemon, not this machine's disk.
//
// stdout: a table, then (last line) one JSON object {"guests":[…]}; stderr: progress; details of every
// run go to --out (default bench/results/tmp/scale-<time>.json).
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CLI = path.join(ROOT, 'packages/cli/bin/vicover.js');
const MODES = ['vicover', 'coredump-restart', 'restart-only'];

const { values: a } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    sizes: { type: 'string', default: '4,64,256,1024' },
    free: { type: 'string', default: '50,90' },
    'bandwidth-mibps': { type: 'string', default: '790' },
    modes: { type: 'string', default: MODES.join(',') },
    'keep-images': { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const sizes = a.sizes.split(',').map(Number);
const frees = a.free.split(',').map(Number);
const modes = a.modes.split(',').filter(Boolean);
for (const m of modes) if (!MODES.includes(m)) throw new Error(`unknown mode ${m}`);
const say = (s) => process.stderr.write(`bench:scale: ${s}\n`);

function cli(args) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, 'demo', '--json', ...args], { maxBuffer: 256 * 1024 * 1024 }, (e, stdout, stderr) => {
      const last = stdout.trim().split('\n').at(-1) ?? '';
      try {
        resolve(JSON.parse(last));
      } catch {
        reject(new Error(`vicover demo ${args.join(' ')} failed (${e?.message ?? 'no JSON'}): ${stderr.slice(-2000)}`));
      }
    });
  });
}

const shm = mkdtempSync('/dev/shm/vicover-scale-');
const guests = [];
const details = [];
try {
  for (const gib of sizes) {
    for (const free of frees) {
      const common = ['--guest-gib', String(gib), '--free-percent', String(free)];
      say(`${gib} GiB, ${free} % free: preparing the image …`);
      const prep = await cli([...common, '--prepare']);
      say(`  image ${prep.image.dir} (generated in ${prep.image.generateSeconds.toFixed(1)} s, content ${prep.image.content})`);
      const chunkMiB = Math.max(128, (gib * 1024) / 512);
      const runs = {};
      for (const mode of modes) {
        const t0 = performance.now();
        const r = await cli([...common, '--modes', mode, '--bandwidth-mibps', a['bandwidth-mibps'], '--chunk-mib', String(chunkMiB), '--dir', path.join(shm, `${gib}-${free}-${mode}`)]);
        rmSync(path.join(shm, `${gib}-${free}-${mode}`), { recursive: true, force: true });
        const s = r.summary[mode];
        runs[mode] = { ...s, wallSeconds: r.measured.wallSeconds, peakRssMiB: r.measured.peakRssMiB };
        say(`  ${mode}: downtime ${s.serviceDowntimeSeconds?.toFixed(1)} s, total ${s.totalSeconds?.toFixed(1)} s, ${(s.bytesWritten / 2 ** 30).toFixed(2)} GiB written, peak RSS ${r.measured.peakRssMiB} MiB, wall ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      }
      const v = runs.vicover;
      const round = (x, d = 3) => (x === null || x === undefined ? null : Math.round(x * 10 ** d) / 10 ** d);
      const guest = {
        guestGiB: gib,
        freePercent: free,
        classifySeconds: round(v?.classifySeconds),
        dumpSeconds: round(v?.dumpSeconds),
        peakRssMiB: Math.max(...Object.values(runs).map((x) => x.peakRssMiB)),
        serviceDowntimeSeconds: Object.fromEntries(modes.map((m) => [m, round(runs[m].serviceDowntimeSeconds)])),
      };
      guests.push(guest);
      details.push({ ...guest, chunkMiB, bandwidthMiBps: Number(a['bandwidth-mibps']), image: prep.image, runs });
      if (!a['keep-images']) rmSync(prep.image.dir, { recursive: true, force: true });
    }
  }
} finally {
  rmSync(shm, { recursive: true, force: true });
}

const out = a.out ?? path.join(ROOT, 'bench/results/tmp', `scale-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ simulated: true, at: new Date().toISOString(), guests: details }, null, 2) + '\n');
say(`details: ${out}`);

const f = (x, d = 1) => (x === null || x === undefined ? 'n/a' : x.toFixed(d));
const lines = [
  `guest GiB | free % | classify s (measured) | dump s (modelled) | peak RSS MiB (measured) | downtime s vicover / coredump-restart / restart-only (modelled) | ratio`,
  ...guests.map((g) => {
    const d = g.serviceDowntimeSeconds;
    const ratio = d.vicover && d['coredump-restart'] ? (d['coredump-restart'] / d.vicover).toFixed(1) + '×' : '';
    return `${g.guestGiB} | ${g.freePercent} | ${f(g.classifySeconds, 2)} | ${f(g.dumpSeconds)} | ${g.peakRssMiB} | ${f(d.vicover)} / ${f(d['coredump-restart'])} / ${f(d['restart-only'])} | ${ratio}`;
  }),
];
if (!a.json) process.stdout.write(lines.join('\n') + '\n');
else say(`\n${lines.join('\n')}`);
process.stdout.write(JSON.stringify({ guests }) + '\n');
