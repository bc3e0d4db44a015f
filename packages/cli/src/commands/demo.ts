/**
 * `vicover demo`: the main job on the simulated host, in one command. For each mode (vicover,
 * coredump-restart, restart-only) a daemon with the default plugins (linux, shared-fs, io-priority)
 * plus simhost watches one simulated guest; the guest crashes; the daemon handles it; the three
 * reports end up side by side. Everything shown is SIMULATED (the simulated host) and every duration
 * is modelled time: the time warp (simhost) skips the waits for the modelled disk and boots, while
 * this machine's CPU work and real I/O count as long as they take. `--realtime` waits for real.
 *
 * Modes run one after the other under the warp (so one mode's CPU work never lands in another's
 * timeline) and side by side in real time.
 */
import { closeSync, mkdirSync, openSync, readdirSync, rmSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Command } from 'commander';
import { Option } from 'commander';
import { createLogger, Daemon, loadConfig, MODES, Vicover, VcvError, type CrashReport, type CrashSession, type Mode } from '@vicover/core';
import { defaultCacheDir, ensureImage, installTimeWarp, normalizeSpec, type SimhostBackend, type TimeWarp } from '@vicover/plugin-simhost';
import type { Ctx } from '../main.js';
import { fmtBytes, printJson, printText, reportError } from '../output.js';

export interface DemoOptions {
  guestGib: string;
  freePercent: string;
  bandwidthMibps: string;
  modes: string;
  json?: boolean;
  realtime?: boolean;
  speed: string;
  dir?: string;
  keep?: boolean;
  chunkMib: string;
  prepare?: boolean;
  logLevel?: string;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const VM = 'demo';

export function registerDemoCommand(program: Command, ctx: Ctx): void {
  program
    .command('demo')
    .description('SIMULATED: crash a simulated guest and handle it in all three modes (vicover, coredump-restart, restart-only); show progress and the reports side by side')
    .addOption(new Option('--guest-gib <n>', 'guest memory, GiB (a multiple of 0.125)').default('16'))
    .addOption(new Option('--free-percent <p>', 'percent of guest memory that is free').default('50'))
    .addOption(new Option('--bandwidth-mibps <b>', 'the modelled disk shared by the dump and the recovery VM, MiB/s').default('256'))
    .addOption(new Option('--modes <list>', 'modes to run, comma separated').default(MODES.join(',')))
    .addOption(new Option('--chunk-mib <n>', 'handover chunk size, MiB').default('128'))
    .option('--json', 'run non-interactively; print one JSON object with the reports')
    .option('--realtime', 'run in wall-clock time instead of modelled time (slow: the modelled disk and boots take as long as they say)')
    .addOption(new Option('--speed <x>', 'modelled seconds per wall second while only waiting (Infinity: skip waits)').default('Infinity'))
    .option('--dir <dir>', 'where dumps, reports and the log go (default: a new directory in /dev/shm, else the system temp dir)')
    .option('--keep', 'keep the dump files (reports and the log are always kept)')
    .addOption(new Option('--prepare', 'only generate (or find cached) the guest image, then exit').hideHelp())
    .addOption(new Option('--log-level <level>', 'level of the log file').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'))
    .action(async (o: DemoOptions) => {
      try {
        const res = await runDemo(o);
        if (o.json) printJson(res);
        else if (!o.prepare) printText(renderTable(res));
        ctx.exitCode = Object.values(res.reports).every((r) => r && r.state === 'done') ? 0 : 1;
      } catch (e) {
        ctx.exitCode = reportError(e, o.json);
      }
    });
}

export interface DemoResult {
  simulated: true;
  settings: {
    guestGiB: number;
    freePercent: number;
    bandwidthMiBps: number;
    modes: Mode[];
    chunkMiB: number;
    /** Dump files kept after the demo (--keep). */
    keep: boolean;
    time: 'modelled (time warp)' | 'wall clock';
    warpSpeed: number | 'Infinity' | null;
  };
  image: { dir: string; intended: Record<string, number>; generateSeconds: number; content: string };
  reports: Partial<Record<Mode, CrashReport>>;
  summary: Partial<Record<Mode, ModeSummary>> & { downtimeRatio?: number };
  measured: { wallSeconds: number; peakRssMiB: number; dir: string; log: string };
}

interface ModeSummary {
  serviceDowntimeSeconds: number | null;
  totalSeconds: number | null;
  bytesWritten: number;
  dumpSeconds: number | null;
  classifySeconds: number | null;
  pages: { total: number; dumped: number; excluded: Record<string, number> };
  memoryHandedOverBytes: number;
  sink: string | undefined;
  state: string;
}

function num(v: string, name: string, min: number, max = Infinity): number {
  const n = v === 'Infinity' ? Infinity : Number(v);
  if (!(n >= min && n <= max)) throw new VcvError('VCV_ERR_USAGE', `--${name} must be a number in [${min}, ${max}], got ${v}`);
  return n;
}

/** Live state of one mode, for the progress display. */
interface Live {
  mode: Mode;
  phase: 'waiting' | 'running' | 'done';
  session: CrashSession | null;
  backend: SimhostBackend | null;
  pagesWritten: number;
  pagesTotal: number;
  report: CrashReport | null;
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const guestGiB = num(o.guestGib, 'guest-gib', 0.25, 16384);
  const memoryMiB = Math.round(guestGiB * 1024);
  if (memoryMiB % 128 !== 0) throw new VcvError('VCV_ERR_USAGE', `--guest-gib ${o.guestGib}: the guest must be a multiple of 128 MiB (0.125 GiB)`);
  const freePercent = num(o.freePercent, 'free-percent', 0, 95);
  const bandwidthMiBps = num(o.bandwidthMibps, 'bandwidth-mibps', 1, 1e7);
  const chunkMiB = num(o.chunkMib, 'chunk-mib', 1, 1048576);
  const speed = num(o.speed, 'speed', 1);
  const modes = o.modes.split(',').map((m) => m.trim()).filter(Boolean) as Mode[];
  for (const m of modes) if (!MODES.includes(m)) throw new VcvError('VCV_ERR_USAGE', `--modes: unknown mode "${m}" (${MODES.join(', ')})`);
  if (modes.length === 0) throw new VcvError('VCV_ERR_USAGE', '--modes: give at least one mode');
  const cacheDir = defaultCacheDir();
  const vmOpts = { name: VM, memoryMiB, freePercent };
  const t0 = performance.now();

  // The guest image first (cached across runs; generating a large one takes a while).
  const say = (s: string) => {
    if (!o.json) process.stderr.write(`${s}\n`);
  };
  say(`[SIMULATED] preparing a simulated ${guestGiB} GiB Linux guest (${freePercent} % free) in ${cacheDir} …`);
  const image = await ensureImage(normalizeSpec(vmOpts), cacheDir);
  if (o.prepare) {
    return {
      simulated: true,
      settings: { guestGiB, freePercent, bandwidthMiBps, modes, chunkMiB, keep: o.keep === true, time: o.realtime ? 'wall clock' : 'modelled (time warp)', warpSpeed: o.realtime ? null : speed === Infinity ? 'Infinity' : speed },
      image: { dir: image.dir, intended: { ...image.meta.intended }, generateSeconds: image.meta.generateSeconds, content: image.spec.content },
      reports: {},
      summary: {},
      measured: { wallSeconds: (performance.now() - t0) / 1000, peakRssMiB: process.resourceUsage().maxRSS / 1024, dir: '', log: '' },
    };
  }

  const dir = path.resolve(o.dir ?? path.join(await scratchRoot(), `vicover-demo-${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${process.pid}`));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const logFile = path.join(dir, 'demo.log');
  const logFd = openSync(logFile, 'a', 0o600);
  const logger = createLogger({ level: o.logLevel ?? 'info', format: 'json', fd: logFd, base: { simulated: true } });

  const warp: TimeWarp | null = o.realtime ? null : installTimeWarp({ speed });
  const lives: Live[] = modes.map((mode) => ({ mode, phase: 'waiting', session: null, backend: null, pagesWritten: 0, pagesTotal: 0, report: null }));
  const display = o.json || !process.stderr.isTTY ? null : new LiveDisplay(lives, { guestGiB, freePercent, bandwidthMiBps, warp }, warp?.real ?? null);
  const logLine = (l: Live, what: string) => {
    if (!display && !o.json) process.stderr.write(`[SIMULATED] ${l.mode}: ${what}\n`);
  };

  const runMode = async (l: Live): Promise<void> => {
    const { config, plugins } = await loadConfig({
      inline: {
        mode: l.mode,
        dump: { dir: path.join(dir, l.mode), chunkMiB },
        io: { bandwidthMiBps },
        sessions: { recoveryTimeoutSec: 7 * 86400 },
        plugins: [
          ['simhost', { vms: [vmOpts], cacheDir, disk: { bandwidthMiBps } }],
          'linux',
          ['shared-fs', { health: { type: 'serial', lineRegex: '^\\[[ 0-9.]+\\] VICOVER-READY' } }],
          'io-priority',
        ],
      },
    });
    const core = new Vicover({ config, logger: logger.child({ mode: l.mode }) });
    for (const p of plugins) await core.use(p);
    const backend = core.backend() as SimhostBackend;
    l.backend = backend;
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const daemon = new Daemon({
      core,
      sessionOptions: {
        onProgress: (p) => {
          l.pagesWritten = p.pagesWritten;
          l.pagesTotal = p.pagesTotal;
        },
      },
      onSessionStart: (s) => {
        l.session = s;
        logLine(l, `crash detected: ${s.event.reason}`);
      },
      onReport: (r) => {
        l.report = r;
        done();
      },
    });
    await daemon.start();
    // The daemon has been up for a while when a guest crashes: let start-up work (the linux plugin's
    // classifier warm-up) finish first, so it does not land in the crash's timeline.
    await new Promise((r) => setTimeout(r, 1000));
    l.phase = 'running';
    backend.crash(VM, 'demo');
    await finished;
    await daemon.stop('demo finished');
    await backend.stopAll();
    l.phase = 'done';
    const r = l.report!;
    logLine(l, `service back after ${fmtS(r.serviceDowntimeSeconds)}, dump ${r.dump.complete ? 'complete' : r.mode === 'restart-only' ? 'not taken' : 'INCOMPLETE'} (${fmtBytes(r.dump.bytesWritten)}), all memory handed over after ${fmtS(r.totalSeconds)}`);
  };

  display?.start();
  try {
    if (warp) for (const l of lives) await runMode(l);
    else await Promise.all(lives.map(runMode));
  } finally {
    display?.stop();
    warp?.uninstall();
    closeSync(logFd);
  }
  // The warp is gone: performance.now() is the wall clock again.
  const wallSeconds = (performance.now() - t0) / 1000;
  if (!o.keep) removeDumps(dir);

  const reports: Partial<Record<Mode, CrashReport>> = {};
  const summary: DemoResult['summary'] = {};
  for (const l of lives) {
    const r = l.report!;
    reports[l.mode] = r;
    const linux = (r.extra.selectPages as { linux?: { classifyMs?: number } } | undefined)?.linux;
    summary[l.mode] = {
      serviceDowntimeSeconds: r.serviceDowntimeSeconds,
      totalSeconds: r.totalSeconds,
      bytesWritten: r.dump.bytesWritten,
      dumpSeconds: r.dump.seconds ?? null,
      classifySeconds: linux?.classifyMs !== undefined ? linux.classifyMs / 1000 : null,
      pages: { total: r.pages.total, dumped: r.pages.dumped, excluded: { ...r.pages.excluded } },
      memoryHandedOverBytes: r.memory.handedOverBytes,
      sink: r.dump.sink,
      state: r.state,
    };
  }
  const v = summary.vicover?.serviceDowntimeSeconds;
  const c = summary['coredump-restart']?.serviceDowntimeSeconds;
  if (v && c) summary.downtimeRatio = Math.round((c / v) * 100) / 100;
  return {
    simulated: true,
    settings: { guestGiB, freePercent, bandwidthMiBps, modes, chunkMiB, keep: o.keep === true, time: warp ? 'modelled (time warp)' : 'wall clock', warpSpeed: warp ? (speed === Infinity ? 'Infinity' : speed) : null },
    image: { dir: image.dir, intended: { ...image.meta.intended }, generateSeconds: image.meta.generateSeconds, content: image.spec.content },
    reports,
    summary,
    measured: { wallSeconds: Math.round(wallSeconds * 100) / 100, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024), dir, log: logFile },
  };
}

/**
 * Where the demo's session directories go: a tmpfs when there is one with room, so the core's journal
 * fsyncs (real I/O, counted in modelled time) measure the daemon rather than this machine's disk —
 * the simulated host's disk is the modelled one. Else the system temp directory.
 */
async function scratchRoot(): Promise<string> {
  const st = await statfs('/dev/shm').catch(() => null);
  return st && st.bavail * st.bsize > 4 * GiB ? '/dev/shm' : os.tmpdir();
}

/** Dump files are big; reports, journals and the log stay. */
function removeDumps(dir: string): void {
  for (const mode of readdirSync(dir, { withFileTypes: true })) {
    if (!mode.isDirectory()) continue;
    for (const s of readdirSync(path.join(dir, mode.name), { withFileTypes: true })) {
      if (!s.isDirectory()) continue;
      for (const f of ['vmcore.kdump', 'vmcore.elf']) rmSync(path.join(dir, mode.name, s.name, f), { force: true });
    }
  }
}

function fmtS(s: number | null | undefined): string {
  return s === null || s === undefined ? 'n/a' : `${s.toFixed(1)} s`;
}

function pct(a: number, b: number): string {
  return b > 0 ? `${Math.floor((100 * a) / b)} %` : '';
}

/** The progress view: one line per mode, redrawn in place on a terminal. */
class LiveDisplay {
  private timer: NodeJS.Timeout | null = null;
  private drawn = 0;
  constructor(
    private readonly lives: Live[],
    private readonly s: { guestGiB: number; freePercent: number; bandwidthMiBps: number; warp: TimeWarp | null },
    private readonly real: TimeWarp['real'] | null,
  ) {}

  start(): void {
    const every = this.real ? this.real.setInterval : setInterval;
    this.timer = every(() => this.draw(), 100);
    this.timer.unref();
    this.draw();
  }

  stop(): void {
    if (this.timer) (this.real ? this.real.clearInterval : clearInterval)(this.timer);
    this.draw();
    process.stderr.write('\n');
  }

  private line(l: Live): string {
    const name = l.mode.padEnd(17);
    if (l.phase === 'waiting' || !l.session) return `${name}waiting`;
    const s = l.session;
    const r = l.report ?? s.report;
    const t = `${(r.totalSeconds !== null && l.report ? Math.max(r.totalSeconds, r.serviceDowntimeSeconds ?? 0) : s.elapsedMs() / 1000).toFixed(1).padStart(6)} s`;
    let dump: string;
    if (s.mode === 'restart-only') dump = 'no dump';
    else if (r.dump.complete) dump = `done ${fmtBytes(r.dump.bytesWritten)}`;
    else if (l.pagesTotal > 0) dump = `${pct(l.pagesWritten, l.pagesTotal)} ${fmtBytes(r.dump.bytesWritten)}`;
    else dump = r.pages.total ? 'starting' : 'classifying';
    const handed = `${(r.memory.handedOverBytes / GiB).toFixed(1)}/${(r.memory.totalBytes / GiB).toFixed(1)} GiB`;
    const st = l.backend?.status();
    const rv = st?.recovery.at(-1);
    let vm: string;
    if (r.recovery.recoveredAtMs !== undefined) vm = `ready at ${(r.recovery.recoveredAtMs / 1000).toFixed(1)} s`;
    else if (rv) vm = `booting ${Math.floor(rv.bootProgress * 100)} %${rv.stalledSeconds > 0 && rv.memoryBytes < rv.touchedBytes + 1 ? ' (memory)' : ''}, ${Math.round(rv.memoryBytes / MiB)} MiB`;
    else vm = 'not started';
    const rates = st?.diskRates ?? {};
    const dumpRate = (rates.dump ?? 0) / MiB;
    const vmRate = Object.entries(rates)
      .filter(([k]) => k.startsWith('vm:'))
      .reduce((a, [, b]) => a + b, 0) / MiB;
    const io = l.report ? '' : `${dumpRate.toFixed(0).padStart(4)} / ${vmRate.toFixed(0).padStart(4)}`;
    return `${name}${t}  ${dump.padEnd(18)}${handed.padEnd(17)}${vm.padEnd(28)}${io}`;
  }

  private draw(): void {
    const head = [
      `SIMULATED host · guest ${this.s.guestGiB} GiB (${this.s.freePercent} % free) · disk ${this.s.bandwidthMiBps} MiB/s · ${this.s.warp ? 'modelled time' : 'wall-clock time'}`,
      `${'mode'.padEnd(17)}${'time'.padStart(8)}  ${'dump'.padEnd(18)}${'handed over'.padEnd(17)}${'recovery VM'.padEnd(28)}I/O dump / VM (MiB/s)`,
    ];
    const lines = [...head, ...this.lives.map((l) => this.line(l))];
    let out = this.drawn ? `\x1b[${this.drawn}A` : '';
    for (const l of lines) out += `\x1b[2K${l}\n`;
    process.stderr.write(out);
    this.drawn = lines.length;
  }
}

/** The reports side by side. */
export function renderTable(res: DemoResult): string {
  const s = res.settings;
  const modes = s.modes;
  const col = (v: string) => v.padStart(18);
  const row = (label: string, f: (m: Mode) => string) => `${label.padEnd(26)}${modes.map((m) => col(f(m))).join('')}`;
  const get = (m: Mode) => res.summary[m]!;
  const pages = (m: Mode, k: string) => {
    const x = get(m).pages;
    if (!x.total) return '—';
    const v = k === 'dumped' ? x.dumped : (x.excluded[k] ?? 0);
    return `${v.toLocaleString('en-US')}`;
  };
  const lines = [
    '',
    `SIMULATED host — guest ${s.guestGiB} GiB, ${s.freePercent} % free, disk ${s.bandwidthMiBps} MiB/s; times are ${s.time === 'wall clock' ? 'wall-clock' : 'modelled (the disk and the recovery VM boot are modelled; CPU work and real I/O measured on this machine)'}`,
    '',
    row('', (m) => m),
    row('service downtime', (m) => fmtS(get(m).serviceDowntimeSeconds)),
    row('total time', (m) => fmtS(get(m).totalSeconds)),
    row('bytes written', (m) => fmtBytes(get(m).bytesWritten)),
    row('dump time', (m) => (get(m).dumpSeconds === null ? '—' : fmtS(get(m).dumpSeconds))),
    row('memory handed over', (m) => fmtBytes(get(m).memoryHandedOverBytes)),
    row('pages: total', (m) => pages(m, 'total') === '—' ? '—' : get(m).pages.total.toLocaleString('en-US')),
    row('  dumped', (m) => pages(m, 'dumped')),
    row('  free', (m) => pages(m, 'free')),
    row('  page cache', (m) => pages(m, 'cache')),
    row('  private cache', (m) => pages(m, 'privateCache')),
    row('  user data', (m) => pages(m, 'user')),
    row('  zero', (m) => pages(m, 'zero')),
    '',
  ];
  for (const m of modes) {
    const sink = get(m).sink;
    if (sink) lines.push(`${m}: ${sink}${!s.keep && sink.includes('stored at') ? ' (removed after the demo; --keep keeps it)' : ''}`);
  }
  if (res.summary.downtimeRatio) lines.push(`vicover: ${res.summary.downtimeRatio}× less service downtime than coredump-restart (SIMULATED).`);
  lines.push(`reports and log: ${res.measured.dir} · wall time ${res.measured.wallSeconds.toFixed(1)} s · peak RSS ${res.measured.peakRssMiB} MiB`);
  return lines.join('\n');
}
