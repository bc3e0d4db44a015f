/**
 * The I/O policies on real QEMU: the recovery VM's measured disk rate follows the share the policy
 * gives it, and the dump writer's rate likewise.
 *
 * One crash per policy (io-priority favouring the recovery VM, io-proportional dump 1 : recovery 3,
 * io-deadline "dump within 120 s"), each on a fresh 768 MiB guest with 480 MiB of anonymous memory
 * (dump level 17 keeps it: ~520 MiB, so that the dump still runs while the recovery VM reads, even
 * when the recovery VM boots slowly on a busy machine).
 * The device is `io.bandwidthMiBps` = 8 MiB/s. The recovery VM's boot re-reads the shared disk's
 * 256 MiB data set with O_DIRECT for WARM_SECS seconds before its service answers
 * (`vicover.warm_secs`: every read reaches the drive, so the throttle binds); the console markers
 * "warm start" / "warmed" bound the phase in which the recovery VM demands more than any share.
 *
 * Measured rates come from the report: `timeline.recoveryIo` (QMP query-blockstats, per tick) and
 * `timeline.dumpIo` (bytes the dump writer passed through its token bucket, per tick); the shares from
 * `timeline.shares`, as enforced (capped at the device). Tolerance: over windows of at least 1 s,
 * long enough to hold 12 of the side's I/O units at its share (dump: one write block; recovery: one
 * 1 MiB read plus QEMU's 0.1 s throttle burst) so that a unit straddling a window edge costs ≤ 8.5 %,
 * the measured rate is within ±25 % of the time-averaged share (where the share moved within the
 * window, at least its lowest value: see TOLERANCE) — only in windows where the side was
 * saturating its share (recovery: inside the warm phase; dump: while it was writing, away from its
 * chunk syncs and handovers; also over the whole warm phase at once). Every other window of the
 * recovery VM is checked for ≤ share + 25 %.
 *
 * Cross-checks against independent measurements, over the recovery VM's warm phase: the recovery
 * VM's drive counters read by the test over its own QMP socket (a second QMP monitor the recovery VM
 * gets through `recovery.extraArgs`), and the dump file's size growth (stat by the test), each within
 * ±15 % of the report's figure. The bytes the recovery VM's QEMU process read (/proc/PID/io rchar)
 * are logged next to them, not asserted: they agreed to within 1 % in about half the runs and came
 * out 4–30 % low in the others, unexplained. No timing is asserted.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type CrashReport, type Daemon, type PluginEntry } from '@vicover/core';
import { startDaemon, type InProcessDaemon } from '../tools/daemon.mjs';
import type { QemuBackend } from '@vicover/plugin-qemu';
// @ts-ignore — plain ESM harness without type declarations
import { QmpClient } from '../guest/guest.mjs';
import { MiB, missingTools, qemuOptions, startServiceGuest, until, type ServiceGuest } from './helpers.js';

const missing = missingTools();
const MEM_MIB = 768;
const MARGIN_MIB = 256;
const DEVICE_MIBPS = 8;
const D = DEVICE_MIBPS * MiB;
const WARM_SECS = 16;
const BLOCK_MIB = 1;
/**
 * ±25 % of the time-averaged share, in windows that hold ≥ 12 I/O units. Where the share itself moved
 * within the window, the lower bound is the lowest share in force if that is lower: a paced writer
 * cannot follow a share that flips from one 100 ms tick to the next (io-proportional's lending flips
 * the dump's between 1/4 and most of the device; a waiting writer sleeps up to 250 ms at the old rate),
 * but it must get at least what it was allowed all along.
 */
const TOLERANCE = 0.25;
const UNITS_PER_WINDOW = 12;
/** Independent measurements vs the report, over the warm phase. */
const CROSS_TOLERANCE = 0.15;

interface Sample {
  tMs: number;
  /** rd_bytes + wr_bytes of the recovery VM's drive, over the test's own QMP. */
  blk: number | null;
  /** rchar of the recovery VM's QEMU. */
  rchar: number | null;
  /** Size of the dump file. */
  dumpFile: number | null;
}

interface Run {
  policy: string;
  report: CrashReport;
  warmStartMs: number;
  warmEndMs: number;
  samples: Sample[];
}

// ── analysis (pure) ──────────────────────────────────────────────────────────────────────────────

type Step = { tMs: number; v: number };

/** Cumulative bytes from per-tick rates: the rate recorded at t_i covers (t_{i-1}, t_i]. */
function cumulative(points: { tMs: number; bps: number }[]): Step[] {
  const out: Step[] = [];
  let cum = 0;
  for (let i = 0; i < points.length; i++) {
    if (i > 0) cum += (points[i]!.bps * (points[i]!.tMs - points[i - 1]!.tMs)) / 1000;
    out.push({ tMs: points[i]!.tMs, v: cum });
  }
  return out;
}

/** Linear interpolation of a cumulative series at t (null outside it). */
function at(s: Step[], t: number): number | null {
  if (s.length === 0 || t < s[0]!.tMs || t > s[s.length - 1]!.tMs) return null;
  let lo = 0;
  let hi = s.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (s[mid]!.tMs <= t) lo = mid;
    else hi = mid;
  }
  const a = s[lo]!;
  const b = s[hi]!;
  return b.tMs === a.tMs ? a.v : a.v + ((b.v - a.v) * (t - a.tMs)) / (b.tMs - a.tMs);
}

/** Bytes a piecewise-constant share (value from each tMs on) allows over [a, b]. */
function shareBytes(shares: Step[], a: number, b: number): number {
  let total = 0;
  for (let i = 0; i < shares.length; i++) {
    const s0 = Math.max(a, shares[i]!.tMs);
    const s1 = Math.min(b, i + 1 < shares.length ? shares[i + 1]!.tMs : Infinity);
    if (s1 > s0) total += (shares[i]!.v * (s1 - s0)) / 1000;
  }
  return total;
}

interface Window {
  a: number;
  b: number;
  measuredBps: number;
  /** Time-averaged share over the window. */
  shareBps: number;
  /** The lowest share in force during the window. */
  minShareBps: number;
}

function minShare(shares: Step[], a: number, b: number): number {
  let m = Infinity;
  for (let i = 0; i < shares.length; i++) {
    const s1 = i + 1 < shares.length ? shares[i + 1]!.tMs : Infinity;
    if (s1 > a && shares[i]!.tMs < b) m = Math.min(m, shares[i]!.v);
  }
  return m;
}

/** Consecutive windows over [a, b], each ≥ 1 s and long enough for `units` I/O units at the mean share. */
function windows(cum: Step[], shares: Step[], a: number, b: number, unitBytes: (shareBps: number) => number): Window[] {
  if (b - a < 1000) return [];
  const mean = (shareBytes(shares, a, b) * 1000) / (b - a);
  const len = Math.max(1000, (UNITS_PER_WINDOW * unitBytes(mean) * 1000) / Math.max(mean, 1));
  const out: Window[] = [];
  for (let w = a; w + len <= b + 1e-6; w += len) {
    const m0 = at(cum, w);
    const m1 = at(cum, w + len);
    if (m0 === null || m1 === null) continue;
    out.push({ a: w, b: w + len, measuredBps: ((m1 - m0) * 1000) / len, shareBps: (shareBytes(shares, w, w + len) * 1000) / len, minShareBps: minShare(shares, w, w + len) });
  }
  return out;
}

const recoveryUnit = (shareBps: number) => MiB + 0.1 * shareBps;
const dumpUnit = () => BLOCK_MIB * MiB;

function enforcedShares(r: CrashReport, side: 'dumpBps' | 'recoveryBps'): Step[] {
  return r.timeline.shares.map((s) => ({ tMs: s.tMs, v: Math.min(s[side] ?? Infinity, D) }));
}

function recoverySeries(r: CrashReport): Step[] {
  return cumulative(r.timeline.recoveryIo.map((p) => ({ tMs: p.tMs, bps: p.readBps + p.writeBps })));
}

function dumpSeries(r: CrashReport): Step[] {
  return cumulative(r.timeline.dumpIo.map((p) => ({ tMs: p.tMs, bps: p.writeBps })));
}

/** The spans in which the dump writer was writing: dump active, away (±700 ms) from chunk syncs and handovers. */
function dumpBusySpans(r: CrashReport, from: number, to: number): [number, number][] {
  const end = Math.min(to, r.dump.finishedAtMs ?? Infinity);
  const cuts = [...r.timeline.dump.map((p) => p.tMs), ...r.timeline.handover.map((p) => p.tMs)].sort((x, y) => x - y);
  const spans: [number, number][] = [];
  let s = Math.max(from, (r.dump.startedAtMs ?? 0) + 1000);
  for (const c of cuts) {
    if (c - 700 >= end) break;
    if (c - 700 > s) spans.push([s, c - 700]);
    s = Math.max(s, c + 700);
  }
  if (end > s) spans.push([s, end]);
  return spans;
}

const f1 = (bps: number) => (bps / MiB).toFixed(2);

function describeWindows(label: string, ws: Window[]): string {
  return `${label}: ${ws.map((w) => `[${(w.a / 1000).toFixed(1)}–${(w.b / 1000).toFixed(1)} s] ${f1(w.measuredBps)}/${f1(w.shareBps)}${w.minShareBps < w.shareBps * 0.95 ? ` (≥ ${f1(w.minShareBps)})` : ''}`).join(', ')} MiB/s (measured/share)`;
}

// ── the scenario ─────────────────────────────────────────────────────────────────────────────────

async function runPolicy(policy: string, plugin: PluginEntry): Promise<Run> {
  const tag = policy.split(' ')[0]!;
  const dir = mkdtempSync(path.join(tmpdir(), `vcv-io-${tag}-`));
  const shm = mkdtempSync(`/dev/shm/vcv-io-${tag}-`);
  const testQmp = path.join(dir, 'rec-test.qmp');
  let sg: ServiceGuest | null = null;
  let daemon: Daemon | null = null;
  let backend: QemuBackend | null = null;
  let h: InProcessDaemon<QemuBackend> | null = null;
  let qmp: { execute(c: string): Promise<unknown>; close(): void } | null = null;
  let sampler: NodeJS.Timeout | null = null;
  let unwatch: (() => void) | null = null;
  const logFd = openSync(path.join(dir, 'daemon.log'), 'w');
  try {
    const name = `io${tag.slice(0, 4)}`;
    sg = await startServiceGuest({ name, dir, memMiB: MEM_MIB, load: 'anon:480' });
    const q = qemuOptions(sg, { name, stateDir: path.join(dir, 'state'), ramDir: shm });
    const vm = q.vms[0]!;
    // Only the recovery VM reads the data set (a fixed-duration O_DIRECT load), and the test has its
    // own QMP socket on it for an independent look at the drive's counters.
    const recovery = {
      ...vm.recovery,
      append: { remove: ['vicover.stamp', 'vicover.load'], add: ['vicover.warm=data/dataset.bin', `vicover.warm_secs=${WARM_SECS}`] },
      extraArgs: ['-qmp', `unix:${testQmp},server=on,wait=off`],
    };
    const { config, plugins } = await loadConfig({
      inline: {
        mode: 'vicover',
        // Level 17 (zero and free pages out) keeps the anonymous memory: a dump long enough to overlap the warm-up.
        // 128 MiB chunks: few chunk syncs and handovers to cut the dump writer's windows.
        dump: { dir: path.join(dir, 'dumps'), chunkMiB: 128, blockMiB: BLOCK_MIB, level: 17 },
        memory: { marginMiB: MARGIN_MIB },
        io: { bandwidthMiBps: DEVICE_MIBPS },
        sessions: { recoveryTimeoutSec: 600 },
        plugins: [
          ['qemu', { ...q, timeouts: { startMs: 120_000 }, vms: [{ ...vm, recovery }] }],
          'linux',
          ['shared-fs', { health: { type: 'http', url: 'http://{tcp/80}/cgi-bin/value', bodyRegex: 'io-value', intervalMs: 100 } }],
          plugin,
        ],
      },
    });
    h = await startDaemon<QemuBackend>({ config, plugins, logFd, vm: name });
    daemon = h.daemon;
    backend = h.backend;
    const finished = h.finished;
    await sg.guest.waitReady();
    await sg.guest.command('stamp io-value');
    await sg.guest.crash();

    const s = await until('the crash session starts', () => h?.session, 60_000, 50);
    const rec = await until('the recovery VM starts', () => s.recovery, 120_000, 50);
    let warmStartMs = -1;
    let warmEndMs = -1;
    unwatch = backend.watchConsole(rec, (line) => {
      if (line.includes('vicover: warm start') && warmStartMs < 0) warmStartMs = s.elapsedMs();
      if (line.includes('vicover: warmed') && warmEndMs < 0) warmEndMs = s.elapsedMs();
    });
    const pid = backend.pidOf(rec);
    qmp = await QmpClient.connect(testQmp, { timeoutMs: 30_000 });
    const samples: Sample[] = [];
    let busy = false;
    const take = async () => {
      if (busy) return;
      busy = true;
      try {
        const tMs = s.elapsedMs();
        let rchar: number | null = null;
        try {
          rchar = Number(/^rchar:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1]);
        } catch {
          /* gone */
        }
        let dumpFile: number | null = null;
        try {
          if (s.report.dump.file) dumpFile = statSync(s.report.dump.file).size;
        } catch {
          /* not there yet */
        }
        const all = (await qmp!.execute('query-blockstats').catch(() => null)) as { stats: { rd_bytes: number; wr_bytes: number } }[] | null;
        const blk = all ? all.reduce((x, b) => x + b.stats.rd_bytes + b.stats.wr_bytes, 0) : null;
        samples.push({ tMs: (tMs + s.elapsedMs()) / 2, blk, rchar, dumpFile });
      } finally {
        busy = false;
      }
    };
    sampler = setInterval(() => void take(), 250);
    // Until the warm phase is over (the service answers right after it) and a second more.
    await until('the recovery VM finishes its warm-up', () => warmEndMs >= 0 || s.report.state !== 'running', 600_000, 100);
    await new Promise((r) => setTimeout(r, 1500));
    clearInterval(sampler);
    sampler = null;
    const report = structuredClone(s.report) as CrashReport;
    void finished;
    const run = { policy, report, warmStartMs, warmEndMs, samples };
    if (process.env.VICOVER_KEEP_E2E) writeFileSync(path.join(dir, 'run.json'), JSON.stringify(run));
    return run;
  } finally {
    if (sampler) clearInterval(sampler);
    unwatch?.();
    qmp?.close();
    await daemon?.stop('test done').catch(() => undefined);
    if (h?.session?.recovery) await backend?.stopVm(h.session.recovery).catch(() => undefined);
    await sg?.guest.dispose();
    closeSync(logFd);
    rmSync(shm, { recursive: true, force: true });
    if (process.env.VICOVER_KEEP_E2E) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

// ── checks ───────────────────────────────────────────────────────────────────────────────────────

/** The share is followed: ±TOLERANCE in saturating windows (see TOLERANCE for a moving share), ≤ share + TOLERANCE elsewhere. */
function expectFollows(label: string, saturating: Window[], other: Window[]): void {
  const tolerance = TOLERANCE;
  console.log(describeWindows(`${label} saturating`, saturating));
  for (const w of saturating) {
    expect(w.measuredBps, `${label} window ${(w.a / 1000).toFixed(1)}–${(w.b / 1000).toFixed(1)} s`).toBeGreaterThanOrEqual(Math.min(w.shareBps * (1 - tolerance), w.minShareBps));
    expect(w.measuredBps, `${label} window ${(w.a / 1000).toFixed(1)}–${(w.b / 1000).toFixed(1)} s`).toBeLessThanOrEqual(w.shareBps * (1 + tolerance));
  }
  for (const w of other) {
    expect(w.measuredBps, `${label} (not saturating) window ${(w.a / 1000).toFixed(1)}–${(w.b / 1000).toFixed(1)} s`).toBeLessThanOrEqual(w.shareBps * (1 + tolerance));
  }
}

function checkRun(run: Run, expectShares: (recMean: number, dumpMean: number) => void): void {
  const r = run.report;
  expect(r.error).toBeUndefined();
  expect(run.warmStartMs).toBeGreaterThan(0);
  expect(run.warmEndMs).toBeGreaterThan(run.warmStartMs);
  // Recovery VM: saturating inside the warm phase (after a second for the shares to settle).
  const recShares = enforcedShares(r, 'recoveryBps');
  const recCum = recoverySeries(r);
  const w0 = run.warmStartMs + 1000;
  const w1 = run.warmEndMs - 500;
  // The dump was still running for at least 6 s of the warm phase: the two sides competed.
  const contendedEnd = Math.min(w1, r.dump.complete ? r.dump.finishedAtMs! : Infinity);
  expect(contendedEnd - w0).toBeGreaterThanOrEqual(6000);
  const recSat = windows(recCum, recShares, w0, w1, recoveryUnit);
  const recFirst = r.timeline.recoveryIo[0]?.tMs ?? w0;
  const recOther = windows(recCum, recShares, recFirst, run.warmStartMs, recoveryUnit);
  expect(recSat.length).toBeGreaterThanOrEqual(2);
  expect(recSat.reduce((x, w) => x + w.b - w.a, 0)).toBeGreaterThanOrEqual(6000);
  expectFollows(`${run.policy}: recovery VM`, recSat, recOther);

  // Dump writer: saturating while it writes (away from chunk syncs); windows in the warm phase
  // and before it, separately (the share differs).
  const dumpShares = enforcedShares(r, 'dumpBps');
  const dumpCum = dumpSeries(r);
  const dumpSat: Window[] = [];
  for (const [a, b] of [...dumpBusySpans(r, 0, run.warmStartMs), ...dumpBusySpans(r, w0, w1)]) dumpSat.push(...windows(dumpCum, dumpShares, a, b, dumpUnit));
  // And over the whole warm phase at once (its busy spans together), which always holds enough
  // blocks even when a chunk sync cuts the phase into spans shorter than a window.
  const warmSpans = dumpBusySpans(r, w0, w1);
  let mBytes = 0;
  let sBytes = 0;
  let minS = Infinity;
  let dur = 0;
  for (const [a, b] of warmSpans) {
    const m0 = at(dumpCum, a);
    const m1 = at(dumpCum, b);
    if (m0 === null || m1 === null) continue;
    mBytes += m1 - m0;
    sBytes += shareBytes(dumpShares, a, b);
    minS = Math.min(minS, minShare(dumpShares, a, b));
    dur += b - a;
  }
  console.log(`${run.policy}: dump busy in the warm phase ${JSON.stringify(warmSpans.map(([a, b]) => [Math.round(a), Math.round(b)]))}; chunk syncs ${JSON.stringify(r.timeline.dump.map((p) => p.tMs))}, handovers ${JSON.stringify(r.timeline.handover.map((p) => p.tMs))}`);
  expect(warmSpans.length).toBeGreaterThan(0);
  expect(sBytes).toBeGreaterThanOrEqual(UNITS_PER_WINDOW * dumpUnit());
  const whole: Window = { a: warmSpans[0]![0], b: warmSpans[warmSpans.length - 1]![1], measuredBps: (mBytes * 1000) / dur, shareBps: (sBytes * 1000) / dur, minShareBps: minS };
  expectFollows(`${run.policy}: dump writer, warm phase as a whole`, [whole], []);
  expectFollows(`${run.policy}: dump writer`, dumpSat, []);

  // What the policy gave while both competed (time-averaged, enforced).
  const recMean = (shareBytes(recShares, w0, contendedEnd) * 1000) / (contendedEnd - w0);
  const dumpMean = (shareBytes(dumpShares, w0, contendedEnd) * 1000) / (contendedEnd - w0);
  console.log(`${run.policy}: warm phase ${(w0 / 1000).toFixed(1)}–${(w1 / 1000).toFixed(1)} s (dump running until ${(contendedEnd / 1000).toFixed(1)} s), mean shares recovery ${f1(recMean)} / dump ${f1(dumpMean)} MiB/s of ${DEVICE_MIBPS}`);
  expectShares(recMean, dumpMean);

  // Cross-checks over the warm phase: the report's figures against the test's own measurements.
  const span = (get: (x: Sample) => number | null, end = w1) => {
    const pts = run.samples.filter((x) => get(x) !== null && x.tMs >= w0 && x.tMs <= end);
    if (pts.length < 2) return null;
    const a = pts[0]!;
    const b = pts[pts.length - 1]!;
    return { a: a.tMs, b: b.tMs, bytes: get(b)! - get(a)! };
  };
  const blk = span((x) => x.blk);
  const rchar = span((x) => x.rchar);
  const file = span((x) => x.dumpFile, contendedEnd - 700);
  expect(blk && file).toBeTruthy();
  const repRec = at(recCum, blk!.b)! - at(recCum, blk!.a)!;
  const repRecR = rchar ? at(recCum, rchar.b)! - at(recCum, rchar.a)! : null;
  const repDump = at(dumpCum, file!.b)! - at(dumpCum, file!.a)!;
  console.log(
    `${run.policy}: cross-check over the warm phase: recovery VM report ${f1(repRec)} MiB vs own QMP ${f1(blk!.bytes)} MiB; ` +
      `report ${repRecR === null ? '–' : f1(repRecR)} MiB vs /proc rchar ${rchar ? f1(rchar.bytes) : '–'} MiB (logged only); dump report ${f1(repDump)} MiB vs file growth ${f1(file!.bytes)} MiB`,
  );
  expect(Math.abs(repRec - blk!.bytes)).toBeLessThanOrEqual(CROSS_TOLERANCE * blk!.bytes);
  // The dump's bucket counts a block when it is handed over, the file grows when it is written: one block of slack.
  expect(Math.abs(repDump - file!.bytes)).toBeLessThanOrEqual(CROSS_TOLERANCE * file!.bytes + BLOCK_MIB * MiB);
}

const POLICIES: { policy: string; plugin: PluginEntry; expectShares: (rec: number, dump: number) => void }[] = [
  {
    policy: 'io-priority favor recovery',
    // A floor of 1/4 of the device for the dump (default 5 %): at 0.4 MiB/s a warm phase would not
    // hold the 8 write blocks a window needs.
    plugin: ['io-priority', { favor: 'recovery', minOtherFraction: 0.25 }],
    // The recovery VM is not throttled below the device; the dump gets what is left (≥ its floor) —
    // less than the recovery VM, although last tick's rate, read per 100 ms, makes it more than the
    // floor on average (docs/io-policies.md).
    expectShares: (rec, dump) => {
      expect(rec).toBeGreaterThanOrEqual(0.99 * D);
      expect(dump).toBeGreaterThanOrEqual(0.25 * D * 0.99);
      expect(dump).toBeLessThan(0.75 * D);
    },
  },
  {
    policy: 'io-proportional dump 1 : recovery 3',
    plugin: ['io-proportional', { dumpWeight: 1, recoveryWeight: 3 }],
    // The recovery VM's share is its weight's (3/4 of the device); the dump gets at least 1/4 — more
    // when the recovery VM's last-tick rate looked below its share (work-conserving lending).
    expectShares: (rec, dump) => {
      expect(rec).toBeGreaterThanOrEqual(0.7 * D);
      expect(rec).toBeLessThanOrEqual(0.8 * D);
      expect(dump).toBeGreaterThanOrEqual(0.2 * D);
    },
  },
  {
    policy: 'io-deadline dump within 120 s',
    plugin: ['io-deadline', { target: 'dump', seconds: 120 }],
    // The dump gets the rate it needs, the recovery VM the rest of the device.
    expectShares: (rec, dump) => {
      expect(dump).toBeGreaterThan(0.05 * D);
      expect(rec).toBeGreaterThan(0.05 * D);
      expect(Math.abs(rec + dump - D)).toBeLessThanOrEqual(0.05 * D);
    },
  },
];

describe.skipIf(missing.length > 0)('I/O policies on QEMU: measured rates follow the shares', () => {
  for (const p of POLICIES) {
    describe(p.policy, () => {
      let run: Run;
      beforeAll(async () => {
        run = await runPolicy(p.policy, p.plugin);
      }, 900_000);
      it('the recovery VM and the dump writer follow their shares (±25 % in saturating windows), cross-checked', () => {
        checkRun(run, p.expectShares);
      });
    });
  }
  afterAll(() => undefined);
});
