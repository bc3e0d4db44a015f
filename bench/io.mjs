#!/usr/bin/env node
// Service downtime, dump completion and total time of one crash under each I/O policy, on a real
// QEMU guest whose recovery VM must read a data set from the shared disk before its service answers.
// See docs/performance.md "## I/O policies".
//
//   npm run bench:io -- [--json] [--policies LIST] [--reps 1] [--mem 1024] [--bandwidth 12]
//                       [--load SPEC] [--warm data/dataset.bin] [--level 17] [--deadline 90]
//                       [--svg docs/img/io-policies.svg | --svg none] [--keep]
//
// Each run boots the same guest afresh (same kernel, same load, a fresh overlay of the same disk),
// runs busybox httpd behind hostfwd and stamps a value on its disk; a host client polls it every
// 100 ms. The guest crashes (sysrq); the in-process daemon (qemu + linux + shared-fs + the policy
// under test, mode vicover) starts the recovery VM on the same disk while it dumps. The recovery VM's
// boot reads `--warm` (the disk's 256 MiB data set, one pass, cold page cache: "a database warming
// up") before httpd starts, so its service needs the disk.
//
// The disk: ONE device of `--bandwidth` MiB/s for both sides — bench/io-device.mjs (stage ADJUST,
// after the policy) keeps dump limit + recovery limit ≤ the device at every tick, splitting fairly
// where the policy leaves both unlimited; the dump writer's token bucket and the recovery VM's
// block_set_io_throttle enforce the limits (plus a standing throttle of the device bandwidth on the
// recovery VM). The same for every policy. The dump keeps user data (`--level 17`: zero and free
// pages out) so that it is long enough for the policies to differ.
//
// stdout: a table (with --json the last line is one JSON object {"policies": {NAME: {...}}, ...});
// stderr: progress. Writes the plot (--svg).
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '@vicover/core';
import { startDaemon } from '../test/tools/daemon.mjs';
import { buildGuest, startGuest } from '../test/guest/guest.mjs';
import { ClientPoller, until } from '../test/tools/service.mjs';
import { ioPlotSvg } from './io-plot.mjs';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const MiB = 1024 * 1024;

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    policies: { type: 'string', default: 'priority-recovery,priority-dump,proportional,deadline-dump,deadline-recovery,none' },
    reps: { type: 'string', default: '1' },
    mem: { type: 'string', default: '1024' },
    bandwidth: { type: 'string', default: '12' },
    load: { type: 'string', default: 'cache:64,meta:500,anon:560' },
    warm: { type: 'string', default: 'data/dataset.bin' },
    level: { type: 'string', default: '17' },
    deadline: { type: 'string', default: '90' },
    margin: { type: 'string', default: '256' },
    chunk: { type: 'string', default: '64' },
    svg: { type: 'string', default: 'docs/img/io-policies.svg' },
    keep: { type: 'boolean', default: false },
  },
});
const memMiB = Number(args.mem);
const bandwidthMiBps = Number(args.bandwidth);
const marginMiB = Number(args.margin);
const reps = Number(args.reps);
const deadlineS = Number(args.deadline);

/** The policies, by short key: the JSON name says the plugin and its options. */
const POLICIES = {
  'priority-recovery': { name: 'io-priority favor=recovery', plugin: ['io-priority', { favor: 'recovery' }] },
  'priority-dump': { name: 'io-priority favor=dump', plugin: ['io-priority', { favor: 'dump' }] },
  proportional: { name: 'io-proportional dump=1 recovery=1', plugin: ['io-proportional', { dumpWeight: 1, recoveryWeight: 1 }] },
  'deadline-dump': { name: `io-deadline target=dump seconds=${deadlineS}`, plugin: ['io-deadline', { target: 'dump', seconds: deadlineS }] },
  'deadline-recovery': { name: `io-deadline target=recovery seconds=${deadlineS}`, plugin: ['io-deadline', { target: 'recovery', seconds: deadlineS }] },
  none: { name: 'none (fair shared disk)', plugin: null },
};
const keys = args.policies.split(',').filter(Boolean);
for (const k of keys) if (!POLICIES[k]) throw new Error(`unknown policy ${k} (known: ${Object.keys(POLICIES).join(', ')})`);

const say = (s) => process.stderr.write(`bench:io: ${s}\n`);

/** Bytes per tick from a per-tick rate series (the rate at t_i covers (t_{i-1}, t_i]). */
function perTick(points, rate) {
  const out = [];
  for (let i = 1; i < points.length; i++) out.push({ t0: points[i - 1].tMs, t1: points[i].tMs, bytes: (rate(points[i]) * (points[i].tMs - points[i - 1].tMs)) / 1000 });
  return out;
}

/** Bytes of a per-tick series inside [a, b] (ticks split proportionally). */
function bytesIn(ticks, a, b) {
  let s = 0;
  for (const k of ticks) {
    const o0 = Math.max(a, k.t0);
    const o1 = Math.min(b, k.t1);
    if (o1 > o0 && k.t1 > k.t0) s += (k.bytes * (o1 - o0)) / (k.t1 - k.t0);
  }
  return s;
}

async function runPolicy(key, rep, build) {
  const pol = POLICIES[key];
  const dir = mkdtempSync(path.join(tmpdir(), `vcv-bench-io-${key}-`));
  const shm = mkdtempSync(`/dev/shm/vcv-bench-io-${key}-`);
  const vmQmp = path.join(dir, 'vicover.qmp');
  const name = `bio${rep}`;
  say(`${pol.name} (run ${rep + 1}/${reps}): booting a ${memMiB} MiB guest (load ${args.load})`);
  const guest = await startGuest({
    build,
    name,
    memMiB,
    dir,
    load: args.load,
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
  try {
    const { config, plugins } = await loadConfig({
      inline: {
        mode: 'vicover',
        // 1 MiB write blocks: the writer interleaves with the recovery VM's reads at a fine grain.
        dump: { dir: path.join(dir, 'dumps'), chunkMiB: Number(args.chunk), blockMiB: 1, level: Number(args.level) },
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
                  recovery: {
                    ramDir: shm,
                    bootMiB: 256,
                    ioLimitMiBps: bandwidthMiBps,
                    // Only the recovery VM warms up: its service answers after reading the data set.
                    append: { remove: ['vicover.stamp', 'vicover.load'], add: [`vicover.warm=${args.warm}`] },
                  },
                },
              ],
            },
          ],
          'linux',
          ['shared-fs', { health: { type: 'http', url: 'http://{tcp/80}/cgi-bin/value', bodyRegex: 'bench-value', intervalMs: 100 } }],
          ...(pol.plugin ? [pol.plugin] : []),
          path.join(ROOT, 'bench/io-device.mjs'),
        ],
      },
    });
    h = await startDaemon({ config, plugins, logFd, vm: name, attachMs: 60_000 });
    daemon = h.daemon;
    backend = h.backend;
    const finished = h.finished;
    const ready = await guest.waitReady();
    say(`${pol.name}: guest ready after ${ready.bootSeconds.toFixed(1)} s`);
    await guest.command('stamp bench-value');
    const url = `http://127.0.0.1:${guest.hostfwdPort}/cgi-bin/value`;
    poller = new ClientPoller(url, /bench-value/);
    poller.start();
    await until('service answers', () => poller.answered(), 30_000);
    await guest.crash();
    const crashAt = Date.now();
    say(`${pol.name}: crashed`);
    const report = await finished;
    const back = await until('client sees the service again', () => poller.firstOkAfter(crashAt), 900_000, 100);
    poller.stop();
    poller = null;
    // The shared disk, as measured: dump + recovery VM bytes per 2-s window (report timelines:
    // token-bucket bytes and query-blockstats; 2 s so that one 1 MiB block or read at a window's
    // edge weighs ≤ 0.5 MiB/s).
    const dumpTicks = perTick(report.timeline.dumpIo, (p) => p.writeBps);
    const recTicks = perTick(report.timeline.recoveryIo, (p) => p.readBps + p.writeBps);
    const endMs = Math.max(report.timeline.dumpIo.at(-1)?.tMs ?? 0, report.timeline.recoveryIo.at(-1)?.tMs ?? 0);
    let maxSum = 0;
    for (let a = 0; a + 2000 <= endMs; a += 500) maxSum = Math.max(maxSum, (bytesIn(dumpTicks, a, a + 2000) + bytesIn(recTicks, a, a + 2000)) / 2);
    const recovered = report.recovery.recoveredAtMs ?? endMs;
    const recStart = report.recovery.startedAtMs ?? 0;
    const recBytes = bytesIn(recTicks, recStart, recovered);
    const dumpWhileBooting = bytesIn(dumpTicks, recStart, recovered);
    const res = {
      policy: pol.name,
      state: report.state,
      error: report.error ?? null,
      serviceDowntimeSeconds: report.serviceDowntimeSeconds,
      clientDowntimeSeconds: (back - crashAt) / 1000,
      totalSeconds: report.totalSeconds,
      dumpSeconds: report.dump.finishedAtMs != null ? report.dump.finishedAtMs / 1000 : null,
      dumpWriteSeconds: report.dump.seconds ?? null,
      dumpMiB: Math.round(report.dump.bytesWritten / MiB),
      recoveryStartedAtSeconds: recStart / 1000,
      recoveryBootSeconds: (recovered - recStart) / 1000,
      recoveryReadMiBUntilHealthy: Math.round(recBytes / MiB),
      recoveryMeanMiBpsUntilHealthy: +(recBytes / MiB / Math.max(0.001, (recovered - recStart) / 1000)).toFixed(2),
      dumpMeanMiBpsWhileRecoveryBoots: +(dumpWhileBooting / MiB / Math.max(0.001, (recovered - recStart) / 1000)).toFixed(2),
      maxSharedMiBpsOver2s: +(maxSum / MiB).toFixed(2),
      sharedMiBpsWhileRecoveryBoots: +((dumpWhileBooting + recBytes) / MiB / Math.max(0.001, (recovered - recStart) / 1000)).toFixed(2),
      guestBootSeconds: ready.bootSeconds,
      warnings: report.warnings.map((w) => `${w.code}: ${w.message}`),
    };
    say(`${pol.name}: ${JSON.stringify(res)}`);
    return res;
  } finally {
    poller?.stop();
    await daemon?.stop('bench done').catch(() => undefined);
    if (h?.session?.recovery) await backend.stopVm(h.session.recovery).catch(() => undefined);
    await guest.dispose();
    closeSync(logFd);
    rmSync(shm, { recursive: true, force: true });
    if (args.keep) say(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

function median(xs) {
  const v = xs.filter((x) => typeof x === 'number').sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

const build = await buildGuest();
const warmMiB = args.warm === 'data/dataset.bin' ? build.datasetMiB : null;
const runs = Object.fromEntries(keys.map((k) => [k, []]));
// Round-robin over the policies, so that a slow stretch of the machine does not hit one policy only.
for (let rep = 0; rep < reps; rep++) for (const k of keys) runs[k].push(await runPolicy(k, rep, build));

const NUMERIC = ['serviceDowntimeSeconds', 'clientDowntimeSeconds', 'totalSeconds', 'dumpSeconds', 'dumpWriteSeconds', 'dumpMiB', 'recoveryStartedAtSeconds', 'recoveryBootSeconds', 'recoveryReadMiBUntilHealthy', 'recoveryMeanMiBpsUntilHealthy', 'dumpMeanMiBpsWhileRecoveryBoots', 'sharedMiBpsWhileRecoveryBoots', 'maxSharedMiBpsOver2s', 'guestBootSeconds'];
const policiesOut = {};
for (const k of keys) {
  const rs = runs[k];
  const o = {};
  for (const f of NUMERIC) o[f] = median(rs.map((r) => r[f]));
  o.maxSharedMiBpsOver2s = Math.max(...rs.map((r) => r.maxSharedMiBpsOver2s));
  o.runs = rs;
  o.allDone = rs.every((r) => r.state === 'done');
  policiesOut[POLICIES[k].name] = o;
}
const ref = policiesOut[POLICIES['priority-recovery'].name];
const summary = {};
if (ref) {
  for (const [n, o] of Object.entries(policiesOut)) {
    if (o === ref) continue;
    summary[n] = {
      downtimeOverPriorityRecovery: o.serviceDowntimeSeconds / ref.serviceDowntimeSeconds,
      dumpOverPriorityRecovery: o.dumpSeconds / ref.dumpSeconds,
      totalOverPriorityRecovery: o.totalSeconds / ref.totalSeconds,
    };
  }
}
const shortest = Object.entries(policiesOut).sort((a, b) => a[1].serviceDowntimeSeconds - b[1].serviceDowntimeSeconds)[0]?.[0] ?? null;

const f = (x, d = 1) => (x === null || x === undefined || Number.isNaN(x) ? '–' : Number(x).toFixed(d));
const lines = [
  `guest ${memMiB} MiB (load ${args.load}), one disk of ${bandwidthMiBps} MiB/s shared by the dump and the recovery VM, recovery boot reads ${args.warm}${warmMiB ? ` (${warmMiB} MiB)` : ''}, dump level ${args.level}, ${reps === 1 ? 'one run' : `medians of ${reps} runs`} per policy`,
  '| policy | service downtime (s) | client-seen (s) | dump complete (s) | total (s) | dumped (MiB) | recovery boot (s) | recovery MiB/s while booting | dump MiB/s meanwhile | max dump+recovery MiB/s (2 s) |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...Object.entries(policiesOut).map(
    ([n, r]) =>
      `| ${n} | ${f(r.serviceDowntimeSeconds)} | ${f(r.clientDowntimeSeconds)} | ${f(r.dumpSeconds)} | ${f(r.totalSeconds)} | ${f(r.dumpMiB, 0)} | ${f(r.recoveryBootSeconds)} | ${f(r.recoveryMeanMiBpsUntilHealthy)} | ${f(r.dumpMeanMiBpsWhileRecoveryBoots)} | ${f(r.maxSharedMiBpsOver2s)} |`,
  ),
];
if (ref && Object.keys(summary).length) {
  lines.push('', `relative to ${POLICIES['priority-recovery'].name} (downtime / dump complete / total):`);
  for (const [n, s] of Object.entries(summary)) lines.push(`  ${n}: ${f(s.downtimeOverPriorityRecovery, 2)}× / ${f(s.dumpOverPriorityRecovery, 2)}× / ${f(s.totalOverPriorityRecovery, 2)}×`);
}
lines.push('', `shortest service downtime: ${shortest}`);
process.stdout.write(lines.join('\n') + '\n');

const setup = { memMiB, bandwidthMiBps, load: args.load, warm: args.warm, warmMiB, level: Number(args.level), deadlineSeconds: deadlineS, marginMiB, chunkMiB: Number(args.chunk), reps, device: 'bench/io-device.mjs (one shared disk, emulated at STAGE.ADJUST)' };
const result = { policies: policiesOut, summary, shortestDowntime: shortest, setup };
if (args.svg !== 'none') {
  const out = path.resolve(ROOT, args.svg);
  writeFileSync(out, ioPlotSvg(result));
  say(`plot written to ${path.relative(ROOT, out)}`);
}
if (args.json) process.stdout.write(JSON.stringify(result) + '\n');
