#!/usr/bin/env node
// Service downtime and total time of one crash, on a real QEMU guest, in the three modes:
// vicover, coredump-restart and restart-only. See docs/performance.md "## Downtime (QEMU)".
//
//   npm run bench:downtime -- [--json] [--mem 2048] [--bandwidth 16] [--modes vicover,coredump-restart,restart-only]
//                             [--load SPEC] [--warm PATH] [--keep]
//
// Each mode boots the same guest afresh (same kernel, same load, a fresh overlay of the same disk),
// runs busybox httpd behind hostfwd and stamps a value on its disk; a host client polls it every
// 100 ms. The guest crashes (sysrq); the in-process daemon (qemu + linux + shared-fs + io-priority)
// handles it in the given mode. The disk is the same for all modes: `--bandwidth` MiB/s, shared by
// the dump writer (token bucket, capped at the device by bench/downtime-device.mjs) and the recovery
// VM's drive (block_set_io_throttle, a standing limit of the same bandwidth). The recovery VM warms
// its service up by reading `--warm` from the disk before it answers, so it needs the disk too.
//
// stdout: a table (or with --json, the last line is one JSON object); stderr: progress.
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { readdirSync } from 'node:fs';
import { loadConfig } from '@vicover/core';
import { startDaemon } from '../test/tools/daemon.mjs';
import { buildGuest, startGuest } from '../test/guest/guest.mjs';
import { allocatedBytes, ClientPoller, until } from '../test/tools/service.mjs';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const MiB = 1024 * 1024;
const MODES = ['vicover', 'coredump-restart', 'restart-only'];

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    mem: { type: 'string', default: '2048' },
    bandwidth: { type: 'string', default: '10' },
    modes: { type: 'string', default: MODES.join(',') },
    load: { type: 'string', default: 'cache:300,meta:1000,write:16,tmpfs:150,anon:700' },
    warm: { type: 'string', default: 'cache/c000.bin' },
    margin: { type: 'string', default: '256' },
    chunk: { type: 'string', default: '64' },
    keep: { type: 'boolean', default: false },
  },
});
const memMiB = Number(args.mem);
const bandwidthMiBps = Number(args.bandwidth);
const marginMiB = Number(args.margin);
const modes = args.modes.split(',').filter(Boolean);
for (const m of modes) if (!MODES.includes(m)) throw new Error(`unknown mode ${m}`);

const say = (s) => process.stderr.write(`bench:downtime: ${s}\n`);

async function runMode(mode, build) {
  const dir = mkdtempSync(path.join(tmpdir(), `vcv-bench-${mode}-`));
  const shm = mkdtempSync(`/dev/shm/vcv-bench-${mode}-`);
  const vmQmp = path.join(dir, 'vicover.qmp');
  const name = `b${mode === 'vicover' ? 'v' : mode === 'restart-only' ? 'r' : 'c'}`;
  say(`${mode}: booting a ${memMiB} MiB guest (load ${args.load}, warm ${args.warm})`);
  const guest = await startGuest({
    build,
    name,
    memMiB,
    dir,
    load: args.load,
    warm: args.warm,
    httpd: true,
    stamp: true,
    readyTimeoutMs: 600_000,
    extraArgs: ['-qmp', `unix:${vmQmp},server=on,wait=off`],
  });
  const logFd = openSync(path.join(dir, 'daemon.log'), 'w');
  let daemon = null;
  let h = null;
  let backend = null;
  let poller = null;
  let sampler = null;
  try {
    const { config, plugins } = await loadConfig({
      inline: {
        mode,
        dump: { dir: path.join(dir, 'dumps'), chunkMiB: Number(args.chunk) },
        io: { bandwidthMiBps },
        memory: { marginMiB },
        sessions: { recoveryTimeoutSec: 1800 },
        plugins: [
          [
            'qemu',
            {
              stateDir: path.join(dir, 'state'),
              reconnectMs: 100,
              recoveryDiesWithDaemon: true,
              timeouts: { startMs: 120000 },
              vms: [
                {
                  name,
                  qmp: vmQmp,
                  ramFile: guest.ramPath,
                  memoryMiB: memMiB,
                  recovery: { ramDir: shm, bootMiB: 256, ioLimitMiBps: bandwidthMiBps, append: { remove: ['vicover.stamp', 'vicover.load'] } },
                },
              ],
            },
          ],
          'linux',
          ['shared-fs', { health: { type: 'http', url: 'http://{tcp/80}/cgi-bin/value', bodyRegex: 'bench-value', intervalMs: 100 } }],
          ['io-priority', { favor: 'recovery', minOtherFraction: 0 }],
          path.join(ROOT, 'bench/downtime-device.mjs'),
        ],
      },
    });
    h = await startDaemon({ config, plugins, logFd, vm: name, attachMs: 60_000 });
    daemon = h.daemon;
    backend = h.backend;
    const finished = h.finished;
    const ready = await guest.waitReady();
    say(`${mode}: guest ready after ${ready.bootSeconds.toFixed(1)} s; meminfo ${JSON.stringify(guest.meminfo)}`);
    await guest.command('stamp bench-value');
    const url = `http://127.0.0.1:${guest.hostfwdPort}/cgi-bin/value`;
    // The outside client.
    poller = new ClientPoller(url, /bench-value/);
    poller.start();
    await until('service answers', () => poller.answered(), 30_000);
    // Host memory held for the crash: the crashed RAM file + every recovery RAM file.
    let peak = 0;
    let nSamples = 0;
    const sample = () => {
      let rec = 0;
      for (const f of readdirSync(shm)) rec += allocatedBytes(path.join(shm, f));
      const t = allocatedBytes(guest.ramPath) + rec;
      nSamples++;
      if (t > peak) peak = t;
    };
    sampler = setInterval(sample, 100);
    const allocatedAtCrash = allocatedBytes(guest.ramPath);
    await guest.crash();
    const crashAt = Date.now();
    say(`${mode}: crashed (RAM file holds ${(allocatedAtCrash / MiB).toFixed(0)} MiB)`);
    const report = await finished;
    const back = await until('client sees the service again', () => poller.firstOkAfter(crashAt), 600_000, 100);
    sample();
    clearInterval(sampler);
    poller.stop();
    const budget = (memMiB + marginMiB) * MiB;
    const res = {
      mode,
      state: report.state,
      error: report.error ?? null,
      serviceDowntimeSeconds: report.serviceDowntimeSeconds,
      clientDowntimeSeconds: (back - crashAt) / 1000,
      totalSeconds: report.totalSeconds,
      dumpSeconds: report.dump.seconds ?? null,
      dumpBytes: report.dump.bytesWritten,
      pagesDumped: report.pages.dumped,
      pagesTotal: report.pages.total,
      recoveryStartedAtSeconds: report.recovery.startedAtMs / 1000,
      recoveryInitialMiB: Math.round((report.recovery.initialBytes ?? 0) / MiB),
      recoveryBootSeconds: (report.recovery.recoveredAtMs - report.recovery.startedAtMs) / 1000,
      guestBootSeconds: ready.bootSeconds,
      crashedAllocatedMiB: Math.round(allocatedAtCrash / MiB),
      peakHostMiB: Math.round(peak / MiB),
      reportPeakHostMiB: Math.round(report.memory.peakBytes / MiB),
      budgetMiB: budget / MiB,
      budgetHeld: peak <= budget && report.memory.peakBytes <= budget,
      memorySamples: nSamples,
      warnings: report.warnings.map((w) => `${w.code}: ${w.message}`),
    };
    say(`${mode}: ${JSON.stringify(res)}`);
    return res;
  } finally {
    poller?.stop();
    if (sampler) clearInterval(sampler);
    await daemon?.stop('bench done').catch(() => undefined);
    if (h?.session?.recovery) await backend.stopVm(h.session.recovery).catch(() => undefined);
    await guest.dispose();
    closeSync(logFd);
    rmSync(shm, { recursive: true, force: true });
    if (args.keep) say(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

const build = await buildGuest();
const results = {};
for (const m of modes) results[m] = await runMode(m, build);

const f = (x, d = 1) => (x === null || x === undefined ? '–' : Number(x).toFixed(d));
const lines = [
  `guest ${memMiB} MiB (load ${args.load}), disk ${bandwidthMiBps} MiB/s, margin ${marginMiB} MiB, chunks ${args.chunk} MiB`,
  '| mode | service downtime (s) | client-seen (s) | total (s) | dump (s) | dumped | recovery boot (s) | host peak / budget (MiB) |',
  '|---|---|---|---|---|---|---|---|',
  ...Object.values(results).map(
    (r) =>
      `| ${r.mode} | ${f(r.serviceDowntimeSeconds)} | ${f(r.clientDowntimeSeconds)} | ${f(r.totalSeconds)} | ${f(r.dumpSeconds)} | ${r.dumpBytes ? `${(r.dumpBytes / MiB).toFixed(0)} MiB` : '–'} | ${f(r.recoveryBootSeconds)} | ${r.peakHostMiB} / ${r.budgetMiB}${r.budgetHeld ? '' : ' EXCEEDED'} |`,
  ),
];
const v = results.vicover;
const c = results['coredump-restart'];
const o = results['restart-only'];
const summary = {};
if (v && c) summary.coredumpOverVicover = c.serviceDowntimeSeconds / v.serviceDowntimeSeconds;
if (v && o) summary.vicoverOverRestartOnly = v.serviceDowntimeSeconds / o.serviceDowntimeSeconds;
if (c && o) summary.fullDumpOverBoot = c.dumpSeconds / o.serviceDowntimeSeconds;
if (Object.keys(summary).length) {
  lines.push(
    '',
    `coredump-restart / vicover downtime: ${f(summary.coredumpOverVicover, 2)} (target ≥ 5)` +
      `; vicover / restart-only: ${f(summary.vicoverOverRestartOnly, 2)} (target ≤ 1.2)` +
      `; full dump / restart-only downtime: ${f(summary.fullDumpOverBoot, 2)} (setup needs ≥ 4)`,
  );
}
process.stdout.write(lines.join('\n') + '\n');
if (args.json) {
  const modesOut = {};
  for (const [k, r] of Object.entries(results)) modesOut[k] = { serviceDowntimeSeconds: r.serviceDowntimeSeconds, totalSeconds: r.totalSeconds, ...r };
  process.stdout.write(JSON.stringify({ modes: modesOut, summary, setup: { memMiB, bandwidthMiBps, marginMiB, load: args.load, warm: args.warm, chunkMiB: Number(args.chunk) } }) + '\n');
}
