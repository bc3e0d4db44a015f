/**
 * Crash reports made by running real core crash sessions (CrashSession, the I/O scheduler with the
 * real io-proportional policy, the real kdump writer) on an in-memory guest and a recording backend.
 * The backend is a test double of the backend contract — no hypervisor exists in this test — that
 * behaves like one over time: the recovery VM's memory grows as it is resized, its disk reads and
 * writes at a boot-then-steady rate capped by the throttle the scheduler sets, released chunks give
 * memory back, and (optionally) the dump disk fills up.
 */
import { mkdtempSync } from 'node:fs';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  CrashSession,
  Vicover,
  STAGE,
  loadPlugin,
  silentLogger,
  type Backend,
  type CrashReport,
  type IoLimits,
  type MemorySource,
  type Mode,
  type PageSet,
  type PhysRange,
  type VmHandle,
  type VmRef,
} from '@vicover/core';

const PAGE = 4096;
const MiB = 1024 * 1024;

export interface FixtureOptions {
  mode: Mode;
  /** Guest RAM (default 48 MiB). */
  sizeMiB?: number;
  simulated?: boolean;
  vmName?: string;
  /** The strategy reports the service back this long after starting the recovery VM (null: never). */
  bootMs?: number | null;
  panicLine?: string;
  lastLines?: string[];
  /** Schedule I/O with the real io-proportional policy at this device bandwidth. */
  bandwidthMiBps?: number;
  /** The dump disk is full after this many bytes (ENOSPC). */
  diskFullAfterBytes?: number;
  /** The backend reads guest memory this slowly (MiB/s; default: as fast as it can). */
  readMiBps?: number;
}

export interface Fixture {
  report: CrashReport;
  session: CrashSession;
  dir: string;
}

function guestMemory(bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let pfn = 0; pfn < bytes / PAGE; pfn++) {
    if (pfn % 5 === 0) continue; // every fifth page stays zero
    b.writeUInt32LE(pfn, pfn * PAGE);
    b.fill(pfn & 0xff, pfn * PAGE + 4, pfn * PAGE + 256);
  }
  return b;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function memSource(buf: Buffer, released: PhysRange[], readMiBps: number | undefined): MemorySource {
  const readSync = (gpa: number, dst: Uint8Array, off: number, len: number) => {
    dst.set(buf.subarray(gpa, gpa + len), off);
    for (const r of released) {
      const a = Math.max(r.start, gpa);
      const z = Math.min(r.end, gpa + len);
      if (a < z) dst.fill(0, off + a - gpa, off + z - gpa);
    }
  };
  return {
    description: 'in-memory test guest',
    ranges: [{ start: 0, end: buf.length }],
    maxPfn: buf.length / PAGE,
    notes: [],
    readSync,
    read: async (gpa, dst, off, len) => {
      if (readMiBps) await sleep((1000 * len) / (readMiBps * MiB));
      readSync(gpa, dst, off, len);
    },
    close: async () => undefined,
  };
}

/** A node:fs-like DumpFs whose files stop taking bytes after `limit` (ENOSPC), like a full disk. */
function fullDiskFs(limit: number) {
  let written = 0;
  const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
  return {
    async open(p: string, flags: string, mode?: number) {
      const fh = await fsp.open(p, flags, mode);
      return {
        write: async (b: Uint8Array, o: number, l: number, pos: number) => {
          if (written + l > limit) throw enospc();
          written += l;
          return fh.write(b, o, l, pos);
        },
        writev: async (bufs: readonly NodeJS.ArrayBufferView[], pos: number) => {
          const l = bufs.reduce((s, b) => s + b.byteLength, 0);
          if (written + l > limit) throw enospc();
          written += l;
          return fh.writev(bufs as NodeJS.ArrayBufferView[], pos);
        },
        read: (b: Uint8Array, o: number, l: number, pos: number) => fh.read(b, o, l, pos),
        datasync: () => fh.datasync(),
        sync: () => fh.sync(),
        truncate: (l: number) => fh.truncate(l),
        stat: () => fh.stat(),
        close: () => fh.close(),
      };
    },
    unlink: (p: string) => fsp.unlink(p),
  };
}

interface RecoveryVmState {
  handle: VmHandle;
  memoryBytes: number;
  startedAt: number;
  limitBps: number;
  readBytes: number;
  writeBytes: number;
  lastAt: number;
}

export function recordingBackend(vm: VmRef, mem: Buffer, o: FixtureOptions): Backend {
  const released: PhysRange[] = [];
  const vms = new Map<string, RecoveryVmState>();
  let destroyed = false;
  let n = 0;
  /** The recovery VM's disk: 24 MiB/s reads while booting (first 300 ms), then 6 MiB/s; writes 3 MiB/s; both capped by the throttle. */
  const advance = (s: RecoveryVmState) => {
    const now = performance.now();
    const dt = (now - s.lastAt) / 1000;
    const booting = now - s.startedAt < 300;
    const wantRead = (booting ? 24 : 6) * MiB;
    const wantWrite = 3 * MiB;
    const scale = Math.min(1, s.limitBps / (wantRead + wantWrite));
    s.readBytes += wantRead * scale * dt;
    s.writeBytes += wantWrite * scale * dt;
    s.lastAt = now;
  };
  return {
    name: 'test',
    simulated: o.simulated === true,
    growGranularityBytes: 2 * MiB,
    async start() {},
    async stop() {},
    async list() {
      return [vm];
    },
    async capture() {
      return { cpuNotes: [], info: { how: 'recording test backend' } };
    },
    async openMemory() {
      return memSource(mem, released, o.readMiBps);
    },
    async release(_vm, range) {
      released.push(range);
      return { freedBytes: range.end - range.start };
    },
    releasesImmediately: () => true,
    async allocatedBytes() {
      return destroyed ? 0 : mem.length - released.reduce((s, r) => s + r.end - r.start, 0);
    },
    async destroy() {
      destroyed = true;
    },
    async definitionOf() {
      return {};
    },
    ...(o.diskFullAfterBytes !== undefined ? { dumpTarget: async () => ({ fs: fullDiskFs(o.diskFullAfterBytes!) as never, description: `test disk, full after ${o.diskFullAfterBytes} bytes` }) } : {}),
    async startVm(_def, opts) {
      const handle = { id: `r${++n}`, name: `${vm.name}-recovery` };
      vms.set(handle.id, { handle, memoryBytes: opts.memoryBytes, startedAt: performance.now(), limitBps: Infinity, readBytes: 0, writeBytes: 0, lastAt: performance.now() });
      return handle;
    },
    async resizeVm(h, bytes) {
      vms.get(h.id)!.memoryBytes = bytes;
    },
    async throttleVm(h, limits: IoLimits | null) {
      const s = vms.get(h.id);
      if (!s) return;
      advance(s);
      s.limitBps = limits?.bps ?? Infinity;
    },
    async vmIoStats(h) {
      const s = vms.get(h.id)!;
      advance(s);
      return { readBytes: Math.round(s.readBytes), writeBytes: Math.round(s.writeBytes), readOps: 0, writeOps: 0 };
    },
    async vmAllocatedBytes(h) {
      return vms.get(h.id)?.memoryBytes ?? 0;
    },
    async stopVm() {},
  };
}

/** Excludes pages like a guest-OS filter would: free pages in the upper half, some cache and user pages. */
const filter = {
  name: 'test-filter',
  apply(core: Vicover) {
    core.hooks.selectPages.tapPromise({ name: 'test-filter', stage: STAGE.FILTER }, async (pages: PageSet) => {
      for (let pfn = 0; pfn < pages.maxPfn; pfn++) {
        if (!pages.dump.get(pfn)) continue;
        const cls = pfn >= pages.maxPfn / 2 && pfn % 2 === 0 ? 'free' : pfn % 7 === 3 ? 'cache' : pfn % 13 === 4 ? 'user' : pfn % 29 === 6 ? 'privateCache' : null;
        if (!cls) continue;
        pages.dump.clear(pfn);
        pages.excluded[cls] = (pages.excluded[cls] ?? 0) + 1;
      }
      return pages;
    });
  },
};

/** Triage the way a guest-OS plugin does it: from onCrash, into the report. */
function triage(o: FixtureOptions) {
  return {
    name: 'test-triage',
    apply(core: Vicover) {
      core.hooks.onCrash.tapPromise({ name: 'test-triage', stage: STAGE.TRIAGE }, async (s) => {
        s.setTriage({ panicLine: o.panicLine ?? 'Kernel panic - not syncing: sysrq triggered crash', lastLines: o.lastLines ?? ['[   12.345678] sysrq: Trigger a crash', '[   12.345702] Kernel panic - not syncing: sysrq triggered crash'], source: 'printk ring buffer' });
      });
    },
  };
}

/** A recovery strategy: vicover mode starts the recovery VM small at once and grows it per reclaim; the others start it with all memory at the final handover. */
function strategy(o: FixtureOptions) {
  const bootMs = o.bootMs === undefined ? 250 : o.bootMs;
  return {
    name: 'test-strategy',
    apply(core: Vicover) {
      let vm: VmHandle | null = null;
      const healthyLater = (s: CrashSession) => {
        if (bootMs !== null) setTimeout(() => void s.recovered('tcp:80 answers'), bootMs);
      };
      core.hooks.onCrash.tapPromise({ name: 'test-strategy', stage: STAGE.RECOVERY }, async (s) => {
        if (s.mode !== 'vicover') return;
        vm = await s.backend!.startVm({}, { name: 'r', memoryBytes: 8 * MiB, maxMemoryBytes: s.vm.memoryBytes + 8 * MiB });
        s.setRecoveryVm(vm, { initialBytes: 8 * MiB });
        healthyLater(s);
      });
      core.hooks.onMemoryReclaimed.tapPromise('test-strategy', async (r, s) => {
        if (!vm) {
          vm = await s.backend!.startVm({}, { name: 'r', memoryBytes: r.handedOverBytes, maxMemoryBytes: s.vm.memoryBytes });
          s.setRecoveryVm(vm, { initialBytes: r.handedOverBytes });
          healthyLater(s);
        } else await s.backend!.resizeVm(vm, 8 * MiB + r.handedOverBytes);
      });
    },
  };
}

/** A core with the fixture's plugins and the recording backend (not yet registered as a plugin). */
export async function fixtureCore(o: FixtureOptions, config: Record<string, unknown> = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'vcv-report-fx-'));
  const sizeMiB = o.sizeMiB ?? 48;
  const cfg = Vicover.defaultConfig({
    mode: o.mode,
    dump: { dir: path.join(dir, 'dumps'), chunkMiB: 4, blockMiB: 1 },
    memory: { marginMiB: 16 },
    // The timeout counts from the crash; 1 s (the minimum) for the fixture that never recovers.
    sessions: { recoveryTimeoutSec: o.bootMs === null ? 1 : 30 },
    ...(o.bandwidthMiBps ? { io: { bandwidthMiBps: o.bandwidthMiBps, tickMs: 50 } } : {}),
    ...config,
  });
  const core = new Vicover({ config: cfg, logger: silentLogger() });
  if (o.bandwidthMiBps) await core.use(await loadPlugin(['io-proportional', { dumpWeight: 1, recoveryWeight: 1 }], 0, process.cwd()));
  await core.use(filter);
  await core.use(triage(o));
  await core.use(strategy(o));
  const vm: VmRef = { id: 'vm-7f3a', name: o.vmName ?? 'web1', memoryBytes: sizeMiB * MiB };
  const backend = recordingBackend(vm, guestMemory(sizeMiB * MiB), o);
  return { core, backend, vm, dir };
}

/** Run one real crash session and return its report (also written as report.json in its directory). */
export async function runFixture(o: FixtureOptions): Promise<Fixture> {
  const { core, backend, vm, dir } = await fixtureCore(o);
  const session = new CrashSession({ core, backend, event: { vm, at: Date.now(), reason: 'GUEST_PANICKED (pause)' } });
  const report = await session.run();
  // Freeze it: a strategy timer may still fire after the session gave up waiting.
  return { report: structuredClone(report), session, dir };
}

/**
 * A report with huge numbers (a 96 PiB guest, 26 billion pages, a 40-minute session), derived from a
 * real one by scaling: no machine has that much memory to crash. Sizes × 2^31, rates × 2^10, times × 1200.
 */
export function scaleReport(r: CrashReport): CrashReport {
  const B = 2 ** 31;
  const T = 1200;
  const c = structuredClone(r) as unknown as Record<string, any>;
  const t = (v: number | undefined) => (v === undefined ? v : Math.round(v * T));
  c.vm.memoryBytes *= B;
  for (const k of Object.keys(c.pages.excluded)) c.pages.excluded[k] *= B;
  c.pages.total *= B;
  c.pages.dumped *= B;
  c.dump.bytesWritten *= B;
  c.dump.chunkBytes *= B;
  c.dump.startedAtMs = t(c.dump.startedAtMs);
  c.dump.finishedAtMs = t(c.dump.finishedAtMs);
  c.dump.seconds = c.dump.seconds * T;
  for (const k of ['startedAtMs', 'recoveredAtMs']) c.recovery[k] = t(c.recovery[k]);
  c.recovery.initialBytes *= B;
  c.serviceDowntimeSeconds *= T;
  c.totalSeconds *= T;
  for (const k of ['totalBytes', 'budgetBytes', 'marginBytes', 'peakBytes', 'handedOverBytes']) c.memory[k] *= B;
  c.triage.atMs = t(c.triage.atMs);
  const tl = c.timeline;
  for (const s of Object.values(tl) as Record<string, number>[][]) for (const p of s) p.tMs = t(p.tMs)!;
  for (const p of tl.dump) (p.pagesWritten *= B), (p.bytesWritten *= B);
  for (const p of tl.handover) p.handedOverBytes *= B;
  for (const p of tl.shares) for (const k of ['dumpBps', 'recoveryBps']) if (p[k] !== null) p[k] *= 2 ** 10;
  for (const p of tl.memory) (p.crashedBytes *= B), (p.recoveryBytes *= B);
  for (const p of tl.recoveryIo) (p.readBps *= 2 ** 10), (p.writeBps *= 2 ** 10);
  c.vm.name = 'db-primary-with-a-rather-long-name-01.prod.example';
  return c as unknown as CrashReport;
}
