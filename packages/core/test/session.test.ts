/**
 * The crash session walk, on an in-memory guest and a recording backend (a test double of the
 * backend contract: no hypervisor is involved here — the real QEMU backend has its own end-to-end
 * tests). What is checked: hook order, chunks cheapest first, no release before the chunk is durable
 * (journal + writer), the dump file's pages equal the source's, modes, full-disk handling.
 */
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { KdumpReader } from '@vicover/dumpfmt';
import {
  CrashSession,
  Vicover,
  silentLogger,
  STAGE,
  VcvError,
  type Backend,
  type MemorySource,
  type PhysRange,
  type VmRef,
  type VmHandle,
  type PageSet,
  findUnfinished,
  readJournal,
} from '@vicover/core';
import { nodeFs, type DumpFileHandle, type DumpFs } from '@vicover/dumpfmt';

const PAGE = 4096;
const MiB = 1024 * 1024;

function guestMemory(bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  // Every page carries its pfn (so misplaced pages are caught); every 5th page stays zero.
  for (let pfn = 0; pfn < bytes / PAGE; pfn++) {
    if (pfn % 5 === 0) continue;
    b.writeUInt32LE(pfn, pfn * PAGE);
    b.fill(pfn & 0xff, pfn * PAGE + 4, pfn * PAGE + 64);
  }
  return b;
}

function memSource(buf: Buffer, released: PhysRange[]): MemorySource {
  const ranges = [{ start: 0, end: buf.length }];
  const check = (gpa: number, len: number) => {
    if (gpa < 0 || gpa + len > buf.length) throw new VcvError('VCV_ERR_MEMORY_RANGE', `0x${gpa.toString(16)} outside RAM`);
  };
  const readSync = (gpa: number, dst: Uint8Array, off: number, len: number) => {
    check(gpa, len);
    dst.set(buf.subarray(gpa, gpa + len), off);
    // Released ranges read as zero (like a punched hole).
    for (const r of released) {
      const a = Math.max(r.start, gpa);
      const z = Math.min(r.end, gpa + len);
      if (a < z) dst.fill(0, off + a - gpa, off + z - gpa);
    }
  };
  return {
    description: 'in-memory test guest',
    ranges,
    maxPfn: buf.length / PAGE,
    notes: [],
    readSync,
    read: async (gpa, dst, off, len) => readSync(gpa, dst, off, len),
    close: async () => undefined,
  };
}

interface Recorder {
  calls: string[];
  released: PhysRange[];
  dumpDir?: string;
}

function testBackend(vm: VmRef, mem: Buffer, rec: Recorder, sessionDir: () => string | null): Backend {
  let started = 0;
  return {
    name: 'test',
    growGranularityBytes: 2 * MiB,
    async start() {},
    async stop() {},
    async list() {
      return [vm];
    },
    async capture() {
      rec.calls.push('capture');
      return { cpuNotes: [] };
    },
    async openMemory() {
      return memSource(mem, rec.released);
    },
    async release(_vm, range) {
      // The journal must already list this chunk as durable.
      const dir = sessionDir();
      const j = (await readJournal(path.join(dir!, 'session.json')))!;
      const idx = j.chunks.findIndex((c: { start: number }) => c.start === range.start);
      expect(j.durable).toContain(idx);
      rec.calls.push(`release:${range.start / MiB}`);
      rec.released.push(range);
      return { freedBytes: range.end - range.start };
    },
    releasesImmediately: () => true,
    async allocatedBytes() {
      return mem.length - rec.released.reduce((s, r) => s + r.end - r.start, 0);
    },
    async destroy() {
      rec.calls.push('destroy');
    },
    async definitionOf() {
      return {};
    },
    async startVm(_def, opts) {
      rec.calls.push(`startVm:${opts.memoryBytes / MiB}`);
      return { id: `r${++started}`, name: 'recovery' };
    },
    async resizeVm(_h, bytes) {
      rec.calls.push(`resize:${bytes / MiB}`);
    },
    async throttleVm(_h, limits) {
      rec.calls.push(`throttle:${limits ? limits.bps : 'none'}`);
    },
    async vmIoStats() {
      return { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 };
    },
    async vmAllocatedBytes() {
      return 0;
    },
    async stopVm() {},
    vmInfo(h) {
      return { handle: h.id, restarts: 0 };
    },
  };
}

/** A minimal strategy: start on onCrash (vicover) or at the final handover, grow on every reclaim. */
function strategy(rec: Recorder) {
  return {
    name: 'test-strategy',
    apply(core: Vicover) {
      let vm: VmHandle | null = null;
      core.hooks.onCrash.tapPromise({ name: 'test-strategy', stage: STAGE.RECOVERY }, async (s) => {
        rec.calls.push('onCrash:strategy');
        if (s.mode !== 'vicover') return;
        vm = await s.backend!.startVm({}, { name: 'r', memoryBytes: 4 * MiB, maxMemoryBytes: s.vm.memoryBytes });
        s.setRecoveryVm(vm);
        setTimeout(() => void s.recovered('test'), 5);
      });
      core.hooks.onChunkDumped.tapPromise('test-strategy', async (c) => {
        rec.calls.push(`dumped:${c.range.start / MiB}`);
      });
      core.hooks.onMemoryReclaimed.tapPromise('test-strategy', async (r, s) => {
        if (!vm) {
          vm = await s.backend!.startVm({}, { name: 'r', memoryBytes: r.handedOverBytes, maxMemoryBytes: s.vm.memoryBytes });
          s.setRecoveryVm(vm);
          await s.recovered('test');
        } else await s.backend!.resizeVm(vm, 4 * MiB + r.handedOverBytes);
      });
    },
  };
}

/** Excludes every even pfn in the upper half (a stand-in for a guest-OS filter). */
const filter = {
  name: 'test-filter',
  apply(core: Vicover) {
    core.hooks.selectPages.tapPromise({ name: 'test-filter', stage: STAGE.FILTER }, async (pages: PageSet) => {
      let n = 0;
      for (let pfn = pages.maxPfn / 2; pfn < pages.maxPfn; pfn += 2) {
        pages.dump.clear(pfn);
        n++;
      }
      pages.excluded.free += n;
      return pages;
    });
  },
};

/**
 * The dump file's DumpFs with every fdatasync/fsync recorded in `rec.calls` (as `fsync`), so a test
 * sees where durability points fall between chunk writes and releases.
 */
function countingFs(rec: Recorder): DumpFs {
  return {
    async open(p, flags, mode) {
      const fh = (await nodeFs.open(p, flags, mode)) as DumpFileHandle;
      return Object.assign(Object.create(fh) as DumpFileHandle, {
        write: fh.write.bind(fh),
        writev: fh.writev.bind(fh),
        read: fh.read.bind(fh),
        truncate: fh.truncate.bind(fh),
        stat: fh.stat.bind(fh),
        close: fh.close.bind(fh),
        datasync: async () => {
          rec.calls.push('fsync');
          await fh.datasync();
        },
        sync: async () => {
          rec.calls.push('fsync');
          await fh.sync();
        },
      });
    },
    unlink: nodeFs.unlink,
  };
}

/** A backend like the PV Xen one: release() frees nothing until destroy (releasesImmediately false). */
function laterRelease(b: Backend, rec: Recorder): void {
  b.releasesImmediately = () => false;
  b.dumpTarget = async () => ({ fs: countingFs(rec), description: 'counting fsyncs' });
}

async function runSession(
  mode: 'vicover' | 'coredump-restart' | 'restart-only',
  sizeMiB = 32,
  extra: Record<string, unknown> = {},
  more: { io?: Record<string, unknown>; plugins?: string[]; tweak?: (b: Backend, rec: Recorder) => void } = {},
) {
  const dumpDir = mkdtempSync(path.join(tmpdir(), 'vcv-sess-'));
  const config = Vicover.defaultConfig({ mode, dump: { dir: path.join(dumpDir, 'dumps'), chunkMiB: 4, blockMiB: 1, ...extra }, ...(more.io ? { io: more.io } : {}) });
  const core = new Vicover({ config, logger: silentLogger() });
  const rec: Recorder = { calls: [], released: [] };
  for (const p of more.plugins ?? []) {
    const { loadPlugin } = await import('@vicover/core');
    await core.use(await loadPlugin(p, 0, dumpDir));
  }
  await core.use(filter);
  await core.use(strategy(rec));
  const vm: VmRef = { id: 'vm1', name: 'web1', memoryBytes: sizeMiB * MiB };
  const mem = guestMemory(sizeMiB * MiB);
  let session!: CrashSession;
  const backend = testBackend(vm, mem, rec, () => session.directory);
  more.tweak?.(backend, rec);
  session = new CrashSession({ core, backend, event: { vm, at: Date.now(), reason: 'test crash' } });
  const report = await session.run();
  return { report, rec, mem, session, dumpDir };
}

/** The dump is complete and holds exactly the pages the test filter selects (all but the even pfns from 4096 on), equal to the source. */
async function expectDumpHoldsSelected(file: string, mem: Buffer): Promise<void> {
  const r = await KdumpReader.open(file);
  expect(r.incomplete).toBe(false);
  for (let pfn = 0; pfn < 8192; pfn++) {
    const selected = !(pfn >= 4096 && pfn % 2 === 0);
    expect(r.isDumpable(pfn)).toBe(selected);
    if (selected) expect(r.readPage(pfn).equals(mem.subarray(pfn * PAGE, (pfn + 1) * PAGE))).toBe(true);
  }
  r.close();
}

describe('crash session', () => {
  it('vicover mode: dumps cheapest chunks first, releases each only after it is durable, hands everything over', async () => {
    const { report, rec, mem, session } = await runSession('vicover');
    expect(report.state).toBe('done');
    expect(report.error).toBeUndefined();
    // Lower-half chunks have all pages selected, upper-half chunks half: upper ones go first.
    const dumped = rec.calls.filter((c) => c.startsWith('dumped:')).map((c) => Number(c.split(':')[1]));
    expect(dumped).toEqual([16, 20, 24, 28, 0, 4, 8, 12]);
    // Each chunk: dumped, then released, then the strategy grows the VM.
    for (const start of dumped) {
      const i = rec.calls.indexOf(`dumped:${start}`);
      expect(rec.calls[i + 1]).toBe(`release:${start}`);
      expect(rec.calls[i + 2]).toMatch(/^resize:/);
    }
    expect(rec.calls.indexOf('capture')).toBeLessThan(rec.calls.indexOf('onCrash:strategy'));
    expect(rec.calls.at(-2)).toBe('destroy');
    expect(report.memory.handedOverBytes).toBe(32 * MiB);
    expect(report.timeline.handover.at(-1)!.handedOverBytes).toBe(32 * MiB);
    expect(report.serviceDowntimeSeconds).not.toBeNull();
    expect(report.totalSeconds).not.toBeNull();
    // Page accounting: total = dumped + excluded.
    const ex = report.pages.excluded;
    expect(report.pages.total).toBe(8192);
    expect(ex.free).toBe(2048);
    expect(report.pages.dumped + ex.free + ex.zero).toBe(report.pages.total);
    expect(ex.zero).toBeGreaterThan(0);
    // The dump holds exactly the source pages that were selected.
    await expectDumpHoldsSelected(session.dumpPath!, mem);
    // Files are private.
    expect(statSync(session.dumpPath!).mode & 0o777).toBe(0o600);
    expect(statSync(session.directory!).mode & 0o777).toBe(0o700);
    expect(statSync(path.join(session.directory!, 'report.json')).mode & 0o777).toBe(0o600);
    const onDisk = JSON.parse(readFileSync(path.join(session.directory!, 'report.json'), 'utf8'));
    expect(onDisk.pages).toEqual(report.pages);
    expect(JSON.parse(readFileSync(path.join(session.directory!, 'session.json'), 'utf8')).state).toBe('done');
  });

  it('coredump-restart: full dump, nothing released while dumping, recovery starts with all memory', async () => {
    const { report, rec, session } = await runSession('coredump-restart');
    expect(report.state).toBe('done');
    expect(rec.calls.some((c) => c.startsWith('release:'))).toBe(false);
    expect(report.pages.dumped).toBe(8192);
    expect(rec.calls.indexOf('destroy')).toBeGreaterThan(rec.calls.lastIndexOf(rec.calls.filter((c) => c.startsWith('dumped:')).at(-1)!));
    expect(rec.calls).toContain('startVm:32');
    // What the backend says about the recovery VM goes into the report (and report.json).
    expect(report.recovery.backend).toEqual({ handle: 'r1', restarts: 0 });
    expect(JSON.parse(readFileSync(path.join(session.directory!, 'report.json'), 'utf8')).recovery.backend).toEqual({ handle: 'r1', restarts: 0 });
    const r = await KdumpReader.open(session.dumpPath!);
    expect(r.pages).toBe(8192);
    r.close();
  });

  it('a backend that frees memory only at destroy: every chunk written, one fsync, then each chunk reported and released, all memory handed over at destroy', async () => {
    const perChunk = await runSession('vicover', 32, {}, { tweak: (b, rec) => (b.dumpTarget = async () => ({ fs: countingFs(rec), description: 'counting fsyncs' })) });
    const { report, rec, mem, session } = await runSession('vicover', 32, {}, { tweak: laterRelease });
    expect(report.state).toBe('done');
    expect(report.memory.releasesImmediately).toBe(false);
    const calls = rec.calls;
    const fsyncs = (c: string[]) => c.filter((x) => x === 'fsync').length;
    // 8 chunks: the per-chunk path syncs after each; this one once for all of them.
    expect(fsyncs(perChunk.rec.calls) - fsyncs(calls)).toBe(7);
    const firstDumped = calls.findIndex((c) => c.startsWith('dumped:'));
    expect(calls[firstDumped - 1]).toBe('fsync');
    const releases = calls.filter((c) => c.startsWith('release:'));
    expect(releases).toHaveLength(8);
    // After the one fsync: dumped:X, release:X for each chunk (release() itself checks the journal
    // lists the chunk durable), no further fsync until the dump is finished; then destroy, then the
    // strategy grows the recovery VM once.
    const tail = calls.slice(firstDumped, firstDumped + 16);
    for (let k = 0; k < 8; k++) {
      expect(tail[2 * k]).toMatch(/^dumped:/);
      expect(tail[2 * k + 1]).toBe(`release:${tail[2 * k]!.split(':')[1]}`);
    }
    expect(calls.filter((c) => c.startsWith('resize:'))).toHaveLength(1);
    expect(calls.indexOf('destroy')).toBeGreaterThan(calls.lastIndexOf(releases.at(-1)!));
    expect(calls.indexOf('destroy')).toBeLessThan(calls.findIndex((c) => c.startsWith('resize:')));
    expect(report.timeline.handover).toHaveLength(1);
    expect(report.memory.handedOverBytes).toBe(32 * MiB);
    expect(report.timeline.events.some((e) => e.event === 'dump-durable')).toBe(true);
    await expectDumpHoldsSelected(session.dumpPath!, mem);
  });

  it('a one-fsync dump stopped before its fsync is resumed from the start of the dump: nothing was journaled durable or released', async () => {
    const dumpDir = mkdtempSync(path.join(tmpdir(), 'vcv-deferred-'));
    const config = Vicover.defaultConfig({ mode: 'vicover', dump: { dir: dumpDir, chunkMiB: 4, blockMiB: 1 } });
    const vm: VmRef = { id: 'vm1', name: 'web1', memoryBytes: 32 * MiB };
    const mem = guestMemory(32 * MiB);
    const rec: Recorder = { calls: [], released: [] };
    // First daemon: stopped while the fifth chunk is being read.
    const core1 = new Vicover({ config, logger: silentLogger() });
    await core1.use(filter);
    let s1!: CrashSession;
    const b1 = testBackend(vm, mem, rec, () => s1.directory);
    laterRelease(b1, rec);
    let reads = 0;
    b1.openMemory = async () => {
      const m = memSource(mem, rec.released);
      return { ...m, read: async (gpa, dst, off, len) => { if (++reads === 5 * 4) s1.stop(); return m.read(gpa, dst, off, len); } };
    };
    s1 = new CrashSession({ core: core1, backend: b1, event: { vm, at: Date.now(), reason: 'test crash' } });
    const r1 = await s1.run();
    expect(r1.state).toBe('interrupted');
    expect(rec.calls.some((c) => c.startsWith('release:'))).toBe(false);
    const unfinished = await findUnfinished(dumpDir);
    expect(unfinished).toHaveLength(1);
    expect(unfinished[0]!.journal.durable).toEqual([]);
    // Second daemon: writes every chunk again, one fsync, releases, hands over.
    const core2 = new Vicover({ config, logger: silentLogger() });
    await core2.use(filter);
    await core2.use(strategy(rec));
    rec.calls.length = 0;
    let s2!: CrashSession;
    const b2 = testBackend(vm, mem, rec, () => s2.directory);
    laterRelease(b2, rec);
    b2.reattach = async () => true;
    s2 = new CrashSession({ core: core2, backend: b2, event: unfinished[0]!.journal.event, resume: unfinished[0]! });
    const r2 = await s2.run();
    expect(r2.state).toBe('done');
    expect(r2.dump.complete).toBe(true);
    expect(r2.memory.releasesImmediately).toBe(false);
    expect(rec.calls.filter((c) => c.startsWith('dumped:'))).toHaveLength(8);
    expect(rec.calls.filter((c) => c.startsWith('release:'))).toHaveLength(8);
    expect(r2.memory.handedOverBytes).toBe(32 * MiB);
    await expectDumpHoldsSelected(s2.dumpPath!, mem);
    expect(await findUnfinished(dumpDir)).toEqual([]);
  });

  it('restart-only: no dump, all memory at once', async () => {
    const { report, rec, session } = await runSession('restart-only');
    expect(report.state).toBe('done');
    expect(session.dumpPath).toBeNull();
    expect(rec.calls).toEqual(['capture', 'onCrash:strategy', 'destroy', 'startVm:32']);
    expect(report.dump.bytesWritten).toBe(0);
  });

  it.runIf(process.getuid?.() === 0)('a full disk stops the dump with VCV_ERR_NO_SPACE, releases nothing undumped, keeps the dump readable', async () => {
    // A real full disk: a 3 MiB tmpfs (root only) for a 32 MiB guest.
    const mnt = mkdtempSync(path.join(tmpdir(), 'vcv-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3M', 'tmpfs', mnt]);
    try {
      const { report, rec, session } = await runSession('vicover', 32, { dir: path.join(mnt, 'dumps') });
      expect(report.state).toBe('failed');
      expect(report.error!.code).toBe('VCV_ERR_NO_SPACE');
      expect(report.error!.message).toMatch(/no space|ENOSPC/i);
      expect(rec.calls).not.toContain('destroy');
      // Released chunks were durable (checked inside release()); the rest of memory is kept.
      expect(rec.released.length).toBeLessThan(8);
      const r = await KdumpReader.open(session.dumpPath!);
      expect(r.incomplete).toBe(true);
      const lost = r.lostPages().count();
      expect(lost).toBeGreaterThan(0);
      // Every page that is in the file and not lost reads back.
      let read = 0;
      for (const [a, b] of r.dumpedRuns()) for (let pfn = a; pfn < b; pfn++) if (!r.lostPages().get(pfn)) { r.readPage(pfn); read++; }
      expect(read).toBeGreaterThan(0);
      r.close();
    } finally {
      execFileSync('umount', ['-l', mnt]);
    }
  });

  it('a third-party I/O policy loaded from a path takes effect: the recovery VM is throttled to its share and the shares are recorded', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'vcv-policy-'));
    const file = path.join(d, 'flat-policy.mjs');
    writeFileSync(
      file,
      `export default { name: 'flat-policy', apply(core) { core.hooks.scheduleIo.tap('flat-policy', (shares, state) => ({ dumpBps: 64 * 1048576, recoveryBps: 12345, policy: 'flat', reason: 'test ' + state.deviceBps })); } };`,
    );
    const { report, rec } = await runSession('vicover', 32, { chunkMiB: 2 }, { io: { bandwidthMiBps: 100, tickMs: 10 }, plugins: [file] });
    expect(report.state).toBe('done');
    expect(rec.calls).toContain('throttle:12345');
    const shares = report.timeline.shares;
    expect(shares.length).toBeGreaterThan(0);
    expect(shares[0]).toMatchObject({ dumpBps: 64 * 1048576, recoveryBps: 12345, policy: 'flat', reason: `test ${100 * 1048576}` });
    // The throttle is lifted when the session ends.
    expect(rec.calls.at(-1)).toBe('throttle:none');
  });

  it('a crash captured by a daemon that stopped before the dump began is resumed from its journal', async () => {
    const dumpDir = mkdtempSync(path.join(tmpdir(), 'vcv-captured-'));
    const config = Vicover.defaultConfig({ mode: 'vicover', dump: { dir: dumpDir, chunkMiB: 4, blockMiB: 1 } });
    const vm: VmRef = { id: 'vm1', name: 'web1', memoryBytes: 16 * MiB };
    const mem = guestMemory(16 * MiB);
    const rec: Recorder = { calls: [], released: [] };
    // First daemon: stopped right after capture (SIGTERM during triage).
    const core1 = new Vicover({ config, logger: silentLogger() });
    await core1.use({ name: 'stopper', apply: (c) => c.hooks.onCrash.tapPromise('stopper', async () => { throw new VcvError('VCV_ERR_ABORTED', 'stopped'); }) });
    let s1!: CrashSession;
    s1 = new CrashSession({ core: core1, backend: testBackend(vm, mem, rec, () => s1.directory), event: { vm, at: Date.now(), reason: 'test crash' } });
    const r1 = await s1.run();
    expect(r1.state).toBe('interrupted');
    const unfinished = await findUnfinished(dumpDir);
    expect(unfinished.map((u) => u.journal.state)).toEqual(['captured']);
    // Second daemon: resumes — no new capture, the whole walk from onCrash on.
    const core2 = new Vicover({ config, logger: silentLogger() });
    await core2.use(filter);
    await core2.use(strategy(rec));
    rec.calls.length = 0;
    let s2!: CrashSession;
    const backend2 = testBackend(vm, mem, rec, () => s2.directory);
    backend2.reattach = async () => true;
    s2 = new CrashSession({ core: core2, backend: backend2, event: unfinished[0]!.journal.event, resume: unfinished[0]! });
    const r2 = await s2.run();
    expect(r2.state).toBe('done');
    expect(rec.calls).not.toContain('capture');
    expect(rec.calls).toContain('onCrash:strategy');
    expect(r2.dump.complete).toBe(true);
    expect(r2.memory.handedOverBytes).toBe(16 * MiB);
    expect(await findUnfinished(dumpDir)).toEqual([]);
  });
});
