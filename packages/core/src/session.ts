/**
 * One crash, one session: the walk of DESIGN.md §1.
 *
 *   capture ─► onCrash ─► selectPages ─► plan chunks ─► for each chunk: write ─► fsync ─► onChunkDumped
 *                                                        ─► backend.release ─► onMemoryReclaimed
 *   (a backend that frees memory only at destroy: write every chunk ─► one fsync ─► then per chunk
 *    onChunkDumped ─► backend.release; all memory is handed over at destroy)
 *   (scheduleIo every tick meanwhile)   recovery VM healthy ─► onRecovered     ─► report
 *
 * The session never releases a chunk before the writer's sync() for it returned and the journal says
 * so. On a write failure (full disk) the dump is marked incomplete, nothing more is released, the
 * crashed VM's remaining memory is kept, and the error names the cause.
 */
import { promises as fsp, constants as C } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Bitmap, KdumpWriter, ElfWriter } from '@vicover/dumpfmt';
import { VcvError, isVcvError, wrapError, type ErrorCode } from '@vicover/errors';
import type { Backend, CrashEvent, PageSet, VmHandle, VmRef } from './contracts.js';
import type { ElfNote, MemorySource, PhysRange } from './memory.js';
import { PAGE_SIZE } from './memory.js';
import type { Vicover } from './core.js';
import type { ChunkInfo, IoShares, ReclaimInfo } from './hooks.js';
import type { Logger } from './log.js';
import type { Compression, Mode } from './schema.js';
import { chunkBytesFor, orderCheapestFirst, planChunks, type Chunk } from './planner.js';
import { TokenBucket } from './tokenbucket.js';
import { IoScheduler } from './scheduler.js';
import { emptyExcluded, finiteOrNull, summaryLine, type CrashReport } from './report.js';
import { appendJournal, writeJournal, type Journal } from './journal.js';

export interface Utsname {
  sysname?: string;
  nodename?: string;
  release?: string;
  version?: string;
  machine?: string;
  domainname?: string;
}

/** What a writer from @vicover/dumpfmt offers the session (kdump and ELF alike). */
interface DumpWriter {
  writePages(startPfn: number, data: Buffer): Promise<{ pages: number; zeroPages: number; bytesWritten: number }>;
  sync(): Promise<unknown>;
  state(): unknown;
  finish(): Promise<unknown>;
  abort(reason: string): Promise<void>;
}

export interface DumpSettings {
  format: 'kdump' | 'elf';
  compression: Compression;
  level: number;
  chunkMiB: number;
  blockMiB: number;
  fsync: boolean;
}

export interface SessionOptions {
  core: Vicover;
  event: CrashEvent;
  /** null for offline dumps (`vicover dump IMAGE`): nothing to capture, release or recover. */
  backend: Backend | null;
  mode?: Mode;
  /** Memory given directly (offline); otherwise the backend opens it. */
  memory?: MemorySource;
  /** Override parts of config.dump. */
  dump?: Partial<DumpSettings>;
  /** Write the dump exactly here (offline CLI). Otherwise `<dump.dir>/<vm>-<time>/vmcore.<fmt>`. */
  outputFile?: string;
  /** Allow replacing an existing output file (the CLI's --force). */
  overwrite?: boolean;
  /** Dump in address order without handing memory over (offline). */
  offline?: boolean;
  /** Resume an interrupted session from its journal. */
  resume?: { dir: string; journal: Journal };
  /** Called with progress (for progress bars): pages written so far, pages to write. */
  onProgress?: (p: { pagesWritten: number; pagesTotal: number; bytesWritten: number; handedOverBytes: number }) => void;
  signal?: AbortSignal;
}

const MiB = 1024 * 1024;

function sessionStamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 64) || 'vm';
}

export class CrashSession {
  readonly id: string;
  readonly core: Vicover;
  readonly vm: VmRef;
  readonly event: CrashEvent;
  readonly backend: Backend | null;
  readonly mode: Mode;
  readonly log: Logger;
  readonly offline: boolean;
  readonly signal: AbortSignal;
  readonly settings: DumpSettings;
  /** Plugin-private state, keyed by plugin name (extension point without new core fields). */
  readonly data = new Map<string, unknown>();
  /** Notes the dump will carry: CPU notes from the backend, then guest-OS notes from the introspection plugin. */
  readonly notes: ElfNote[] = [];
  /** Dump header facts a guest-OS plugin knows (utsname, phys_base). */
  readonly dumpInfo: { utsname: Utsname; physBase: bigint } = { utsname: { machine: 'x86_64' }, physBase: 0n };
  readonly report: CrashReport;

  /** Monotonic time of the crash (performance.now() base). */
  private readonly t0: number;
  private memorySource: MemorySource | null;
  private dir: string | null = null;
  private dumpFile: string | null = null;
  private journal: Journal | null = null;
  private recoveryVm: VmHandle | null = null;
  private recoveredResolve: (() => void) | null = null;
  private readonly recoveredPromise: Promise<void>;
  private handedOverBytes = 0;
  private readonly bucket = new TokenBucket();
  private scheduler: IoScheduler | null = null;
  private sampler: NodeJS.Timeout | null = null;
  private readonly opts: SessionOptions;
  private readonly abort = new AbortController();
  private pageSet: PageSet | null = null;

  constructor(opts: SessionOptions) {
    this.opts = opts;
    this.core = opts.core;
    this.event = opts.event;
    this.vm = opts.event.vm;
    this.backend = opts.backend;
    this.offline = opts.offline ?? opts.backend === null;
    this.mode = this.offline ? 'vicover' : (opts.mode ?? opts.core.config.mode);
    this.id = opts.resume?.journal.sessionId ?? `${safeName(this.vm.name)}-${sessionStamp(opts.event.at)}-${randomBytes(2).toString('hex')}`;
    this.log = opts.core.log.child({ vm: this.vm.name, session: this.id });
    this.memorySource = opts.memory ?? null;
    this.settings = { ...opts.core.config.dump, ...(opts.dump ?? {}) };
    this.signal = opts.signal ? AbortSignal.any([opts.signal, this.abort.signal]) : this.abort.signal;
    // The crash happened at event.at (wall clock); map it onto the monotonic clock.
    this.t0 = performance.now() - Math.max(0, Date.now() - opts.event.at);
    this.recoveredPromise = new Promise((r) => (this.recoveredResolve = r));
    const margin = opts.core.config.memory.marginMiB * MiB;
    this.report = {
      reportVersion: 1,
      simulated: opts.backend?.simulated === true,
      sessionId: this.id,
      mode: this.mode,
      backend: opts.backend?.name ?? 'offline',
      vm: { id: this.vm.id, name: this.vm.name, memoryBytes: this.vm.memoryBytes },
      crash: { at: new Date(opts.event.at).toISOString(), reason: opts.event.reason },
      triage: {},
      pages: { total: 0, dumped: 0, excluded: emptyExcluded() },
      dump: { bytesWritten: 0, complete: false, chunks: 0 },
      recovery: {},
      serviceDowntimeSeconds: null,
      totalSeconds: null,
      memory: { totalBytes: this.vm.memoryBytes, budgetBytes: this.vm.memoryBytes + margin, marginBytes: margin, peakBytes: 0, handedOverBytes: 0, releasesImmediately: true },
      io: { deviceBps: opts.core.config.io.bandwidthMiBps ? opts.core.config.io.bandwidthMiBps * MiB : null, tickMs: opts.core.config.io.tickMs },
      pageSize: PAGE_SIZE,
      timeline: { dump: [], handover: [], shares: [], memory: [], recoveryIo: [], dumpIo: [], events: [] },
      warnings: [],
      extra: {},
      state: 'running',
    };
  }

  // ── API for plugins ─────────────────────────────────────────────────────────

  /** ms since the crash. */
  elapsedMs(): number {
    return performance.now() - this.t0;
  }

  /** The crashed guest's memory (available from onCrash on). */
  get memory(): MemorySource {
    if (!this.memorySource) throw new VcvError('VCV_ERR_INTERNAL', 'session memory is not open yet');
    return this.memorySource;
  }

  /** Directory holding the dump, report and journal (null for offline dumps to an explicit file). */
  get directory(): string | null {
    return this.dir;
  }

  get dumpPath(): string | null {
    return this.dumpFile;
  }

  get pages(): PageSet | null {
    return this.pageSet;
  }

  get memoryHandedOverBytes(): number {
    return this.handedOverBytes;
  }

  get budget(): { totalBytes: number; budgetBytes: number; marginBytes: number } {
    return { totalBytes: this.report.memory.totalBytes, budgetBytes: this.report.memory.budgetBytes, marginBytes: this.report.memory.marginBytes };
  }

  addNote(note: ElfNote): void {
    this.notes.push(note);
  }

  event_(event: string, detail?: string): void {
    this.report.timeline.events.push({ tMs: Math.round(this.elapsedMs()), event, detail });
  }

  /** Record what triage found (a guest-OS plugin calls this from onCrash). */
  setTriage(t: { panicLine?: string; lastLines?: string[]; source?: string; [k: string]: unknown }): void {
    Object.assign(this.report.triage, t, { atMs: Math.round(this.elapsedMs()) });
    this.event_('triage', t.panicLine);
  }

  warn(code: ErrorCode | string, message: string, plugin?: string): void {
    this.report.warnings.push({ code, message, plugin });
    this.log.warn({ code, plugin }, message);
  }

  /** A recovery strategy tells the core which VM it started (so I/O can be measured and throttled). */
  setRecoveryVm(vm: VmHandle, info: { initialBytes?: number } = {}): void {
    this.recoveryVm = vm;
    this.report.recovery.vm = vm.name;
    this.report.recovery.startedAtMs = Math.round(this.elapsedMs());
    if (info.initialBytes !== undefined) this.report.recovery.initialBytes = info.initialBytes;
    this.event_('recovery-started', vm.name);
    void this.sampleMemory();
  }

  /** A recovery strategy records a resize of the recovery VM (timeline event + memory sample). */
  recoveryResized(bytes: number): void {
    this.event_('recovery-resized', `${Math.round(bytes / MiB)} MiB`);
    void this.sampleMemory();
  }

  get recovery(): VmHandle | null {
    return this.recoveryVm;
  }

  get isRecovered(): boolean {
    return this.report.recovery.recoveredAtMs !== undefined;
  }

  /** A recovery strategy reports the service is back (health check passed). Fires onRecovered once. */
  async recovered(check: string): Promise<void> {
    if (this.isRecovered || !this.recoveryVm) return;
    const atMs = Math.round(this.elapsedMs());
    this.report.recovery.recoveredAtMs = atMs;
    this.report.recovery.check = check;
    this.report.serviceDowntimeSeconds = atMs / 1000;
    this.event_('recovered', check);
    this.log.info({ downtimeSeconds: atMs / 1000, check }, 'service is back');
    this.recoveredResolve?.();
    try {
      await this.core.hooks.onRecovered.promise({ vm: this.recoveryVm, atMs, check }, this);
    } catch (e) {
      this.warn(isVcvError(e) ? e.code : 'VCV_ERR_HOOK_FAILED', (e as Error).message, isVcvError(e) ? (e.details.plugin as string) : undefined);
    }
    // Recovered after the session stopped waiting (timeout): the report on disk must say so too.
    if (this.finished) await this.writeReport().catch((e) => this.log.warn({ err: e }, 'cannot rewrite report.json'));
  }

  // ── the walk ────────────────────────────────────────────────────────────────

  async run(): Promise<CrashReport> {
    this.event_('crash', this.event.reason);
    this.log.info({ reason: this.event.reason, mode: this.mode }, `crash detected: ${this.event.reason}`);
    try {
      await this.prepareDirectory();
      if (this.opts.resume) return await this.runResumed();
      await this.capture();
      await this.afterCapture();
    } catch (e) {
      await this.fail(e);
    } finally {
      await this.cleanup();
    }
    return this.report;
  }

  /** Everything after the crashed VM was captured: triage and recovery start, selection, dump, handover. */
  private async afterCapture(): Promise<void> {
    await this.core.hooks.onCrash.promise(this);
    if (this.mode === 'restart-only') {
      await this.handOverAll('restart-only: no dump');
    } else {
      await this.select();
      await this.dumpAll();
      if (this.mode === 'coredump-restart' || this.offline) {
        await this.handOverAll(this.offline ? 'offline' : 'coredump-restart: dump complete');
      } else {
        await this.finishHandover();
      }
    }
    await this.waitForRecovery();
    this.report.state = 'done';
  }

  private async prepareDirectory(): Promise<void> {
    if (this.opts.resume) {
      this.dir = this.opts.resume.dir;
      this.journal = this.opts.resume.journal;
      this.dumpFile = this.journal.dumpFile;
      return;
    }
    if (this.opts.outputFile) {
      this.dumpFile = path.resolve(this.opts.outputFile);
      await fsp.mkdir(path.dirname(this.dumpFile), { recursive: true, mode: 0o700 });
      return;
    }
    if (this.mode === 'restart-only' && this.offline) return;
    const root = this.core.config.dump.dir;
    await fsp.mkdir(root, { recursive: true, mode: 0o700 }).catch((e) => {
      throw wrapError(e, 'VCV_ERR_OUTPUT_CREATE', `cannot create dump directory ${root}`);
    });
    this.dir = path.join(root, this.id);
    await fsp.mkdir(this.dir, { mode: 0o700 }).catch((e) => {
      throw wrapError(e, 'VCV_ERR_OUTPUT_CREATE', `cannot create session directory ${this.dir}`);
    });
    await fsp.chmod(this.dir, 0o700);
    if (this.mode !== 'restart-only') this.dumpFile = path.join(this.dir, this.settings.format === 'elf' ? 'vmcore.elf' : 'vmcore.kdump');
  }

  private async capture(): Promise<void> {
    if (this.backend) {
      const cap = await this.backend.capture(this.vm).catch((e) => {
        throw wrapError(e, 'VCV_ERR_BACKEND', `backend ${this.backend!.name}: capturing the crashed VM failed`);
      });
      for (const n of cap.cpuNotes) this.notes.push(n);
      if (cap.info) this.report.extra.capture = cap.info;
      this.report.memory.releasesImmediately = this.backend.releasesImmediately(this.vm);
      if (!this.memorySource) this.memorySource = await this.backend.openMemory(this.vm);
      this.event_('captured', `${cap.cpuNotes.length} CPU note(s)`);
      // From here the crashed VM's process may be gone: only the journal remembers this crash.
      if (this.dir) {
        this.journal = this.newJournal({ state: 'captured', cpuNotes: cap.cpuNotes.map((n) => ({ name: n.name, type: n.type, desc: n.desc.toString('base64') })) });
        await writeJournal(path.join(this.dir, 'session.json'), this.journal);
      }
      this.startSampler();
    } else if (this.memorySource) {
      // Offline: reuse CPU notes the image carries (an ELF vmcore's NT_PRSTATUS).
      for (const n of this.memorySource.notes) if (n.type === 1 && n.name === 'CORE') this.notes.push(n);
    }
    if (!this.memorySource) throw new VcvError('VCV_ERR_INTERNAL', 'no memory source for the session');
  }

  /** All RAM pages, then the filters narrow. */
  private fullPageSet(): PageSet {
    const mem = this.memory;
    const ram = new Bitmap(mem.maxPfn);
    for (const r of mem.ranges) ram.setRange(r.start / PAGE_SIZE, r.end / PAGE_SIZE);
    const dump = new Bitmap(mem.maxPfn);
    const excluded = emptyExcluded();
    if (mem.present) {
      // A filtered dump as input: only the pages it holds can be dumped again.
      for (const [a, b] of mem.present.runs(0, mem.maxPfn)) dump.setRange(a, b);
      excluded.notInSource = ram.count() - dump.count();
      if (excluded.notInSource > 0) this.warn('VCV_ERR_PAGE_NOT_DUMPED', `${excluded.notInSource} RAM pages are not in the input (it is a filtered dump); they stay out of this one`);
    } else {
      for (const r of mem.ranges) dump.setRange(r.start / PAGE_SIZE, r.end / PAGE_SIZE);
    }
    return { maxPfn: mem.maxPfn, ram, dump, excluded, excludeZero: false, dumpLevel: 0, notes: {} };
  }

  private async select(): Promise<void> {
    const full = this.fullPageSet();
    let pages: PageSet = full;
    if (this.mode === 'vicover') {
      const level = this.settings.level;
      full.dumpLevel = level;
      full.excludeZero = (level & 1) !== 0;
      pages = await this.core.hooks.selectPages.promise(full, this);
      this.checkPageSet(pages, full);
      if (!hasTaps(this.core.hooks.selectPages) && level > 1) {
        this.warn('VCV_ERR_INTROSPECTION', `no page filter plugin is loaded: dumping all RAM pages (level ${level} asks for filtering)`);
      }
    }
    this.pageSet = pages;
    const total = pages.ram.count();
    this.report.pages.total = total;
    this.report.pages.dumped = pages.dump.count();
    for (const [k, v] of Object.entries(pages.excluded)) this.report.pages.excluded[k] = v;
    if (pages.fallback) {
      this.report.dump.fallback = pages.fallback;
      this.warn(pages.fallback.code, `full dump: ${pages.fallback.reason}`, pages.fallback.plugin);
    }
    if (Object.keys(pages.notes).length) this.report.extra.selectPages = pages.notes;
    this.event_('pages-selected', `${this.report.pages.dumped} of ${total}`);
    this.log.info({ total, dumped: this.report.pages.dumped, excluded: this.report.pages.excluded }, 'pages selected');
  }

  private checkPageSet(p: PageSet, full: PageSet): void {
    const ok = p && typeof p === 'object' && p.dump && p.ram === full.ram && typeof p.dump.count === 'function' && p.dump.size === full.dump.size;
    if (!ok) throw new VcvError('VCV_ERR_HOOK_RESULT', 'selectPages returned something that is not the page set it was given (return the set you received, narrowed)', { hook: 'selectPages' });
  }

  private async createWriter(pages: PageSet, compression: Compression): Promise<DumpWriter> {
    const target = this.backend?.dumpTarget
      ? await this.backend.dumpTarget(this.vm, { path: this.dumpFile!, estimatedBytes: pages.dump.count() * PAGE_SIZE })
      : null;
    if (target) {
      this.report.dump.sink = target.description;
      this.log.info({ sink: target.description }, 'dump output goes through the backend');
    }
    const journaled = this.dir !== null;
    const common = {
      path: this.dumpFile!,
      maxPfn: pages.maxPfn,
      ram: pages.ram as unknown as Bitmap,
      dump: pages.dump as unknown as Bitmap,
      notes: this.notes,
      overwrite: this.opts.overwrite === true,
      // The page set is final here and the session only reads it: no copies (64 MiB at 1 TiB).
      adoptBitmaps: true,
      // With a session directory (a journal): its first writer checkpoint is the laid-out file, so
      // that goes to disk first, and the descriptor table is zeroed up front so a later ENOSPC stays
      // away from chunks already dumped and about to be released. A dump without one releases
      // nothing and is made durable when it is finished.
      durableLayout: journaled,
      preallocateDescriptors: journaled,
      ...(target ? { fs: target.fs } : {}),
    };
    if (this.settings.format === 'elf') {
      return ElfWriter.create({ ...common, excludeZero: pages.excludeZero }) as unknown as Promise<DumpWriter>;
    }
    // Pages that go out byte for byte from a plain image file are copied by the writer's native helper
    // (inside the kernel when zero pages are kept; read and checked by the helper when they are not,
    // which needs every page whole in one place of the file).
    const mem = this.memory;
    const plain = compression === 'none' && !target && mem.backingFile && mem.fileExtents && !mem.present;
    const copyFrom = plain && (!pages.excludeZero || pageGranular(mem)) ? mem.backingFile : undefined;
    return KdumpWriter.create({
      ...common,
      ...(copyFrom ? { copyFrom } : {}),
      compression,
      excludeZero: pages.excludeZero,
      utsname: { ...this.dumpInfo.utsname, machine: 'x86_64' },
      physBase: this.dumpInfo.physBase,
      dumpLevel: pages.dumpLevel,
      nrCpus: Math.max(1, this.notes.filter((n) => n.type === 1).length),
    }) as unknown as Promise<DumpWriter>;
  }

  private async dumpAll(): Promise<void> {
    const pages = this.pageSet!;
    const granularity = this.backend?.growGranularityBytes ?? PAGE_SIZE;
    const chunkBytes = this.offline ? chunkBytesFor(Math.max(this.settings.chunkMiB, 256), PAGE_SIZE) : chunkBytesFor(this.settings.chunkMiB, granularity);
    const chunks = planChunks(this.memory.ranges, pages.dump, chunkBytes);
    const ordered = this.mode === 'vicover' && !this.offline ? orderCheapestFirst(chunks) : chunks;
    this.report.dump.chunks = chunks.length;
    this.report.dump.chunkBytes = chunkBytes;
    this.report.dump.file = this.dumpFile ?? undefined;
    this.report.dump.format = this.settings.format;
    this.report.dump.compression = this.settings.format === 'kdump' ? this.settings.compression : 'none';
    this.report.dump.level = pages.dumpLevel;
    this.report.dump.startedAtMs = Math.round(this.elapsedMs());
    this.event_('dump-started', `${chunks.length} chunks of ${chunkBytes / MiB} MiB`);
    if (!this.settings.fsync) this.warn('VCV_ERR_USAGE', 'dump.fsync is off: chunks are released without a durability guarantee');

    const writer = await this.createWriter(pages, this.settings.compression);
    if (this.dir) {
      this.journal = this.newJournal({
        chunkBytes,
        chunks: chunks.map((c) => ({ start: c.range.start, end: c.range.end, selectedPages: c.selectedPages })),
        order: ordered.map((c) => c.index),
        writer: writer.state(),
        state: 'dumping',
      });
      await writeJournal(path.join(this.dir, 'session.json'), this.journal);
    }
    await this.writeChunks(writer, ordered, new Set());
  }

  private newJournal(fields: Partial<Journal>): Journal {
    return {
      journalVersion: 1,
      sessionId: this.id,
      backend: this.backend?.name ?? 'offline',
      vm: this.vm,
      event: this.event,
      mode: this.mode,
      dumpFile: this.dumpFile,
      format: this.settings.format,
      chunkBytes: 0,
      chunks: [],
      order: [],
      durable: [],
      released: [],
      writer: null,
      state: 'captured',
      startedAt: Date.now() - Math.round(this.elapsedMs()),
      ...fields,
    };
  }

  private async runResumed(): Promise<CrashReport> {
    const j = this.journal!;
    if (j.state === 'captured') {
      // The daemon died after capture, before the dump was laid out: start over from onCrash.
      this.log.warn('resuming a crash that was captured but not yet dumped');
      this.event_('resumed', 'captured, not yet dumped');
      const alive = this.backend?.reattach ? await this.backend.reattach(this.vm).catch(() => false) : false;
      if (!alive || !this.backend) {
        this.warn('VCV_ERR_SESSION', 'the crashed VM is gone; nothing could be dumped');
        this.report.state = 'interrupted';
        return this.report;
      }
      for (const n of j.cpuNotes ?? []) this.notes.push({ name: n.name, type: n.type, desc: Buffer.from(n.desc, 'base64') });
      this.report.memory.releasesImmediately = this.backend.releasesImmediately(this.vm);
      this.memorySource = await this.backend.openMemory(this.vm);
      this.startSampler();
      await this.afterCapture();
      return this.report;
    }
    this.log.warn({ durable: j.durable.length, released: j.released.length, chunks: j.chunks.length }, 'resuming an interrupted session');
    this.event_('resumed', `${j.durable.length}/${j.chunks.length} chunks were durable`);
    const alive = this.backend?.reattach ? await this.backend.reattach(this.vm).catch(() => false) : false;
    const chunks: Chunk[] = j.chunks.map((c, index) => ({ index, range: { start: c.start, end: c.end }, startPfn: c.start / PAGE_SIZE, endPfn: c.end / PAGE_SIZE, selectedPages: c.selectedPages }));
    this.report.dump.chunks = chunks.length;
    this.report.dump.file = j.dumpFile ?? undefined;
    if (!alive || !this.backend || !j.dumpFile) {
      this.warn('VCV_ERR_SESSION', 'the crashed VM is gone; the dump stays incomplete with the chunks that were durable');
      this.report.state = 'interrupted';
      return this.report;
    }
    this.report.memory.releasesImmediately = this.backend.releasesImmediately(this.vm);
    this.memorySource = await this.backend.openMemory(this.vm);
    this.startSampler();
    // Chunks durable but not yet released: release them now (they are safe on disk).
    for (const i of j.durable) {
      if (!j.released.includes(i)) await this.releaseChunk(chunks[i]!, null);
    }
    if (j.format !== 'kdump') {
      this.warn('VCV_ERR_SESSION', `resuming a ${j.format} dump is not supported (only kdump); the dump stays incomplete`);
      this.report.state = 'interrupted';
      return this.report;
    }
    const writer = (await KdumpWriter.resume(j.dumpFile, j.writer as never)) as unknown as DumpWriter;
    const done = new Set(j.durable);
    const ordered = j.order.map((i) => chunks[i]!);
    await this.writeChunks(writer, ordered, done);
    await this.finishHandover();
    // Like run(): the report waits for the recovery VM's health check (its downtime is the point).
    await this.waitForRecovery();
    this.report.state = 'done';
    return this.report;
  }

  private async writeChunks(writer: DumpWriter, ordered: readonly Chunk[], done: Set<number>): Promise<void> {
    const pages = this.pageSet;
    const blockBytes = this.settings.blockMiB * MiB;
    const mem = this.memory;
    const pagesTotal = ordered.reduce((s, c) => s + c.selectedPages, 0);
    // A block mostly selected is read whole (one big read); a sparse one only run by run — a level-31
    // dump keeps a few percent of pages scattered over all of RAM, and reading the rest would cost more
    // than the dump. Runs closer than GAP pages are read together. A source that holds only some pages
    // (a filtered dump as input) is always read run by run. Bytes between runs are never written.
    const GAP = 16;
    const readBlock = async (b: { start: number; end: number }, buf: Buffer): Promise<void> => {
      const p0 = b.start / PAGE_SIZE;
      const p1 = b.end / PAGE_SIZE;
      const selected = pages ? pages.dump.count(p0, p1) : p1 - p0;
      if (!mem.present && selected * 2 >= p1 - p0) return mem.read(b.start, buf, 0, b.end - b.start);
      const reads: Promise<void>[] = [];
      let rs = -1;
      let re = -1;
      const flush = () => {
        if (rs >= 0) reads.push(mem.read(rs * PAGE_SIZE, buf, rs * PAGE_SIZE - b.start, (re - rs) * PAGE_SIZE));
      };
      const runs = pages ? (pages.dump as unknown as Bitmap).runs(p0, p1) : [[p0, p1] as [number, number]];
      for (const [a, z] of runs) {
        if (rs >= 0 && a - re <= GAP && !mem.present) re = z;
        else {
          flush();
          rs = a;
          re = z;
        }
      }
      flush();
      await Promise.all(reads);
    };
    let pagesWritten = 0;
    let bytesWritten = 0;
    let zeroPages = 0;
    // Per-chunk durability (fsync, journal entry, release right after) buys something only where a
    // released chunk's memory comes back at once. Where the backend frees a crashed VM's memory only
    // when it is destroyed, nothing can be handed over before the end: every chunk is written, the
    // dump is made durable once, and then the chunks are journaled, reported and released together —
    // still never a release before its pages are on disk. A daemon stopped before that single sync
    // resumes the dump from its start (the journal's writer checkpoint is the initial one).
    const deferred = !this.offline && this.backend !== null && !this.report.memory.releasesImmediately;
    const written: { chunk: Chunk; info: Omit<ChunkInfo, 'durableAtMs'> }[] = [];
    this.startScheduler(ordered, done);
    // Two buffers: the next block is read while the current one is compressed and written. In shared
    // memory when the writer has compression workers, which then read the pages in place instead of
    // a copy; otherwise ordinary memory (filling a shared buffer — a source's zero runs — is done
    // element by element and cost the simulated host's full dump twice its time).
    const workers = (writer as { workers?: number }).workers ?? 0;
    const block = () => (workers > 0 ? Buffer.from(new SharedArrayBuffer(blockBytes)) : Buffer.allocUnsafeSlow(blockBytes));
    const bufs = [block(), block()];
    let which = 0;
    try {
      for (let seq = 0; seq < ordered.length; seq++) {
        const chunk = ordered[seq]!;
        if (done.has(chunk.index)) continue;
        if (this.signal.aborted) throw new VcvError('VCV_ERR_ABORTED', 'the session was stopped before the dump finished');
        let cw = 0;
        let cz = 0;
        let cb = 0;
        // Blocks of this chunk that hold selected pages.
        const blocks: { start: number; end: number }[] = [];
        for (let a = chunk.range.start; a < chunk.range.end; a += blockBytes) {
          const b = Math.min(chunk.range.end, a + blockBytes);
          if (!pages || pages.dump.count(a / PAGE_SIZE, b / PAGE_SIZE) > 0) blocks.push({ start: a, end: b });
        }
        // A read-ahead that fails while the current block is being written must not become an
        // unhandled rejection (it would kill the process before the error reaches the catch below):
        // mark it handled now; awaiting it later still throws.
        const readAhead = (b: { start: number; end: number }, buf: Buffer): Promise<void> => {
          const p = readBlock(b, buf);
          p.catch(() => undefined);
          return p;
        };
        const copier = writer as unknown as { canCopy?: boolean; copyPages?: KdumpWriter['copyPages'] };
        const extents = mem.fileExtents?.bind(mem);
        const copying = copier.canCopy === true && extents !== undefined;
        const account = async (r: { pages: number; zeroPages: number; bytesWritten: number }): Promise<void> => {
          // Pace by what reached the disk (compressed, zero pages shared), not by what was read.
          await this.bucket.take(r.bytesWritten, this.signal);
          cw += r.pages;
          cz += r.zeroPages;
          cb += r.bytesWritten;
          pagesWritten += r.pages;
          bytesWritten += r.bytesWritten;
          this.report.dump.bytesWritten += r.bytesWritten;
          this.opts.onProgress?.({ pagesWritten, pagesTotal, bytesWritten, handedOverBytes: this.handedOverBytes });
        };
        let pending: Promise<void> | null = blocks.length && !copying ? readAhead(blocks[0]!, bufs[which]!) : null;
        for (let k = 0; k < blocks.length && copying; k++) {
          // In-kernel copy from the image file: nothing passes through this process.
          const blk = blocks[k]!;
          await account(await copier.copyPages!(blk.start / PAGE_SIZE, blk.end / PAGE_SIZE, extents));
        }
        for (let k = 0; k < blocks.length && !copying; k++) {
          const blk = blocks[k]!;
          const len = blk.end - blk.start;
          const cur = bufs[which]!;
          await pending;
          which ^= 1;
          const nxt = blocks[k + 1];
          pending = nxt ? readAhead(nxt, bufs[which]!) : null;
          await account(await writer.writePages(blk.start / PAGE_SIZE, cur.subarray(0, len)));
        }
        await pending;
        zeroPages += cz;
        const written1 = { seq, index: chunk.index, range: chunk.range, selectedPages: chunk.selectedPages, writtenPages: cw, zeroPages: cz, bytesWritten: cb };
        if (deferred) {
          written.push({ chunk, info: written1 });
          this.report.timeline.dump.push({ tMs: Math.round(this.elapsedMs()), pagesWritten, bytesWritten: this.report.dump.bytesWritten });
          continue;
        }
        // Durability before release: an offline dump releases nothing, so finish() fsyncs once at the end.
        if (this.settings.fsync && !this.offline) await writer.sync();
        const info: ChunkInfo = { ...written1, durableAtMs: Math.round(this.elapsedMs()) };
        if (this.journal && this.dir) {
          this.journal.durable.push(chunk.index);
          this.journal.writer = writer.state();
          await appendJournal(path.join(this.dir, 'session.json'), { durable: chunk.index, writer: this.journal.writer }, true);
        }
        done.add(chunk.index);
        this.report.timeline.dump.push({ tMs: info.durableAtMs, pagesWritten, bytesWritten: this.report.dump.bytesWritten });
        await this.core.hooks.onChunkDumped.promise(info, this);
        if (this.mode === 'vicover' && !this.offline) await this.releaseChunk(chunk, info);
      }
      if (written.length) {
        // The one durability point of a deferred dump, then the journal says so in one atomic write.
        if (this.settings.fsync) await writer.sync();
        const durableAtMs = Math.round(this.elapsedMs());
        this.event_('dump-durable', `${written.length} chunks, one fsync`);
        if (this.journal && this.dir) {
          for (const w of written) this.journal.durable.push(w.chunk.index);
          this.journal.writer = writer.state();
          await writeJournal(path.join(this.dir, 'session.json'), this.journal);
        }
        for (const w of written) {
          const info: ChunkInfo = { ...w.info, durableAtMs };
          done.add(w.chunk.index);
          await this.core.hooks.onChunkDumped.promise(info, this);
          if (this.mode === 'vicover') await this.releaseChunk(w.chunk, info);
        }
      }
      if (pages?.excludeZero) {
        this.report.pages.excluded.zero += zeroPages;
        this.report.pages.dumped -= zeroPages;
      }
      await writer.finish();
      this.report.dump.complete = true;
      if (this.journal && this.dir) {
        this.journal.state = 'dumped';
        await writeJournal(path.join(this.dir, 'session.json'), this.journal);
      }
    } catch (e) {
      await writer.abort(e instanceof Error ? e.message : String(e)).catch(() => undefined);
      if (pages?.excludeZero) {
        this.report.pages.excluded.zero += zeroPages;
        this.report.pages.dumped -= zeroPages;
      }
      throw isVcvError(e) ? e : wrapError(e, 'VCV_ERR_IO', `writing the dump ${this.dumpFile} failed`);
    } finally {
      this.report.dump.finishedAtMs = Math.round(this.elapsedMs());
      this.report.dump.seconds = (this.report.dump.finishedAtMs - (this.report.dump.startedAtMs ?? 0)) / 1000;
      this.event_(this.report.dump.complete ? 'dump-complete' : 'dump-incomplete');
    }
  }

  private async releaseChunk(chunk: Chunk, info: ChunkInfo | null): Promise<void> {
    const backend = this.backend!;
    if (this.journal && !this.journal.durable.includes(chunk.index)) {
      throw new VcvError('VCV_ERR_RELEASE_BEFORE_DURABLE', `chunk ${chunk.index} is not durable yet; refusing to release it`);
    }
    const { freedBytes } = await backend.release(this.vm, chunk.range).catch((e) => {
      throw wrapError(e, 'VCV_ERR_BACKEND', `backend ${backend.name}: releasing ${fmtRange(chunk.range)} failed`);
    });
    if (this.journal && this.dir) {
      this.journal.released.push(chunk.index);
      await appendJournal(path.join(this.dir, 'session.json'), { released: chunk.index }, false);
    }
    const bytes = chunk.range.end - chunk.range.start;
    await this.sampleMemory();
    if (this.report.memory.releasesImmediately) await this.handOver(bytes, freedBytes, chunk.range, info, false);
  }

  private async handOver(bytes: number, freedBytes: number, range: PhysRange | null, chunk: ChunkInfo | null, final: boolean): Promise<void> {
    this.handedOverBytes = final ? this.vm.memoryBytes : Math.min(this.vm.memoryBytes, this.handedOverBytes + bytes);
    this.report.memory.handedOverBytes = this.handedOverBytes;
    this.report.timeline.handover.push({ tMs: Math.round(this.elapsedMs()), handedOverBytes: this.handedOverBytes });
    const info: ReclaimInfo = { chunk, range, freedBytes, handedOverBytes: this.handedOverBytes, totalBytes: this.vm.memoryBytes, final };
    await this.core.hooks.onMemoryReclaimed.promise(info, this);
  }

  /** The rest at once: destroy the crashed VM (all memory back), then tell the strategy. */
  private async handOverAll(why: string): Promise<void> {
    if (!this.backend || this.offline) return;
    const before = await this.backend.allocatedBytes(this.vm).catch(() => 0);
    await this.backend.destroy(this.vm).catch((e) => {
      throw wrapError(e, 'VCV_ERR_BACKEND', `backend ${this.backend!.name}: destroying the crashed VM failed`);
    });
    this.event_('crashed-vm-destroyed', why);
    await this.sampleMemory();
    await this.handOver(this.vm.memoryBytes - this.handedOverBytes, before, null, null, true);
  }

  /** vicover mode after the last chunk: destroy what is left of the crashed VM and hand everything over. */
  private async finishHandover(): Promise<void> {
    await this.handOverAll('vicover: all chunks dumped and released');
    this.report.totalSeconds = this.elapsedMs() / 1000;
  }

  private async waitForRecovery(): Promise<void> {
    if (this.offline || !this.backend) return;
    if (this.report.totalSeconds === null && this.mode !== 'vicover') this.report.totalSeconds = this.elapsedMs() / 1000;
    if (!this.recoveryVm && !hasTaps(this.core.hooks.onMemoryReclaimed) && !hasTaps(this.core.hooks.onCrash)) return;
    const timeoutMs = this.core.config.sessions.recoveryTimeoutSec * 1000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), Math.max(0, timeoutMs - this.elapsedMs()))));
    const aborted = new Promise<'aborted'>((r) => this.signal.addEventListener('abort', () => r('aborted'), { once: true }));
    const res = await Promise.race([this.recoveredPromise.then(() => 'ok' as const), timedOut, aborted]);
    clearTimeout(timer);
    if (res === 'timeout') this.warn('VCV_ERR_RECOVERY', `the recovery VM did not pass its health check within ${timeoutMs / 1000} s`);
    // totalSeconds: dump complete and all memory handed over — for restart-only, the handover.
    if (this.report.totalSeconds === null) this.report.totalSeconds = this.elapsedMs() / 1000;
  }

  private async fail(e: unknown): Promise<void> {
    const err = isVcvError(e) ? e : wrapError(e, 'VCV_ERR_SESSION', 'crash session failed');
    (this as { lastError?: VcvError }).lastError = err;
    if (err.code === 'VCV_ERR_ABORTED') {
      // Checkpointed, not failed: the journal stays resumable and the crashed VM's memory is kept.
      this.report.state = 'interrupted';
      this.event_('interrupted', err.message);
      this.log.warn('crash session interrupted; the next daemon resumes it from its journal');
      return;
    }
    this.report.state = 'failed';
    this.report.error = { code: err.code, message: err.message };
    this.event_('failed', `${err.code}: ${err.message}`);
    this.log.error({ err, code: err.code }, `crash session failed: ${err.message}`);
    try {
      await this.core.hooks.failed.promise(err, this);
    } catch (e2) {
      this.log.error({ err: e2 }, 'a failed-hook tap threw');
    }
    if (this.journal && this.dir) {
      this.journal.state = 'failed';
      await writeJournal(path.join(this.dir, 'session.json'), this.journal).catch(() => undefined);
    }
    (this as { lastError?: VcvError }).lastError = err;
  }

  /** The error that failed the session, if any. */
  get error(): VcvError | undefined {
    return (this as { lastError?: VcvError }).lastError;
  }

  private startScheduler(ordered: readonly Chunk[], done: Set<number>): void {
    if (this.offline || this.scheduler) return;
    const io = this.core.config.io;
    if (!hasTaps(this.core.hooks.scheduleIo)) return;
    if (!io.bandwidthMiBps) {
      this.warn('VCV_ERR_CONFIG_INVALID', 'an I/O policy is loaded but io.bandwidthMiBps is not set: I/O is not scheduled');
      return;
    }
    const selectedBytes = ordered.filter((c) => !done.has(c.index)).reduce((s, c) => s + c.selectedPages * PAGE_SIZE, 0);
    this.scheduler = new IoScheduler({
      session: this,
      hooks: this.core.hooks,
      backend: this.backend!,
      bucket: this.bucket,
      deviceBps: io.bandwidthMiBps * MiB,
      deviceIops: io.iops ?? 0,
      tickMs: io.tickMs,
      bytesTotal: selectedBytes,
      recoveryVm: () => this.recoveryVm,
      isHealthy: () => this.isRecovered,
      dumpActive: () => !this.report.dump.complete && this.report.state === 'running',
      handedOver: () => this.handedOverBytes,
      memoryTotal: this.vm.memoryBytes,
      onShares: (s: IoShares, tMs: number) =>
        this.report.timeline.shares.push({ tMs, dumpBps: finiteOrNull(s.dumpBps), recoveryBps: finiteOrNull(s.recoveryBps), policy: s.policy, reason: s.reason }),
      onRecoveryIo: (readBps: number, writeBps: number, tMs: number) => this.report.timeline.recoveryIo.push({ tMs, readBps, writeBps }),
      onDumpIo: (writeBps: number, tMs: number) => this.report.timeline.dumpIo.push({ tMs, writeBps }),
      log: this.log,
    });
    this.scheduler.start();
  }

  /** Sample host memory now (also called at every release, start and destroy, so steps are exact). */
  private sampleMemory: () => Promise<void> = async () => undefined;

  private startSampler(): void {
    if (!this.backend || this.sampler) return;
    const backend = this.backend;
    let busy = false;
    const sample = async () => {
      if (busy) return;
      busy = true;
      try {
        const crashedBytes = this.report.state === 'running' ? await backend.allocatedBytes(this.vm).catch(() => 0) : 0;
        const recoveryBytes = this.recoveryVm ? await backend.vmAllocatedBytes(this.recoveryVm).catch(() => 0) : 0;
        const tMs = Math.round(this.elapsedMs());
        this.report.timeline.memory.push({ tMs, crashedBytes, recoveryBytes });
        this.report.memory.peakBytes = Math.max(this.report.memory.peakBytes, crashedBytes + recoveryBytes);
      } finally {
        busy = false;
      }
    };
    this.sampleMemory = sample;
    void sample();
    this.sampler = setInterval(() => void sample(), 250);
    this.sampler.unref();
  }

  private finished = false;

  private async cleanup(): Promise<void> {
    this.scheduler?.stop();
    if (this.recoveryVm && this.backend?.vmInfo) {
      try {
        this.report.recovery.backend = { ...this.backend.vmInfo(this.recoveryVm) };
      } catch (e) {
        this.log.warn({ err: e }, `backend ${this.backend.name}: vmInfo failed`);
      }
    }
    if (this.sampler) clearInterval(this.sampler);
    this.sampler = null;
    if (this.recoveryVm && this.backend && this.scheduler) {
      await this.backend.throttleVm(this.recoveryVm, null).catch(() => undefined);
    }
    await this.memorySource?.close().catch(() => undefined);
    if (this.journal && this.dir && this.report.state === 'done') {
      this.journal.state = 'done';
      await writeJournal(path.join(this.dir, 'session.json'), this.journal).catch(() => undefined);
    }
    if (this.dir) {
      await this.writeReport().catch((e) => {
        // A full disk must not lose the report: it goes to the log instead.
        this.log.error({ err: e, report: this.report }, `cannot write report.json (${(e as Error).message}); the report is in this log line`);
      });
    }
    this.finished = true;
    this.log.info({ report: this.dir ? path.join(this.dir, 'report.json') : undefined }, summaryLine(this.report));
  }

  /** Stop the session (daemon shutdown): the dump is checkpointed, not finished. */
  stop(): void {
    this.abort.abort();
  }

  async writeReport(): Promise<string | null> {
    if (!this.dir) return null;
    const file = path.join(this.dir, 'report.json');
    const fh = await fsp.open(file, C.O_WRONLY | C.O_CREAT | C.O_TRUNC, 0o600);
    try {
      await fh.writeFile(JSON.stringify(this.report, null, 2) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    return file;
  }
}

/** tapable's isUsed() is true as soon as an interceptor exists (the core installs one on every hook). */
function hasTaps(hook: { taps: readonly unknown[] }): boolean {
  return hook.taps.length > 0;
}

function fmtRange(r: PhysRange): string {
  return `[0x${r.start.toString(16)}, 0x${r.end.toString(16)})`;
}

/** Every page of the source lies whole in one place of its backing file, or reads as zero whole. */
function pageGranular(mem: MemorySource): boolean {
  try {
    return mem.ranges.every((r) => mem.fileExtents!(r.start, r.end - r.start).every(([, len]) => len % PAGE_SIZE === 0));
  } catch {
    return false;
  }
}
