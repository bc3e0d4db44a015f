/**
 * KdumpWriter: writes a kdump-compressed (v6) file chunk by chunk, in any pfn order.
 *
 * The page set is fixed at create(): header, sub-header + notes, both bitmaps and the (zeroed)
 * descriptor table are laid out and written first, with the incomplete flag (0x8) set. writePages()
 * then appends page data at the data end and fills that chunk's descriptors with one positional
 * write. finish() clears the incomplete flag only when every dumpable page was written.
 *
 * I/O of concurrent writePages() calls is serialized in call order (their CPU work — zero detection
 * and compression — happens at call time, so a caller that keeps two calls in flight overlaps
 * compression with I/O). sync() is the durability point; state() is the checkpoint as of the last
 * sync, and KdumpWriter.resume() continues a dump from such a checkpoint after a crash.
 */
import { VcvError, wrapError } from '@vicover/errors';
import { Bitmap, RankIndex } from '../bitmap.js';
import { COMPRESSION_FLAG, createCompressor, DUMP_DH_COMPRESSED_INCOMPLETE, type Compression, type PageCompressor } from '../codec/index.js';
import { createDumpFile, nodeFs, readAll, SerialQueue, writeAll, writevAll, type DumpFileHandle, type DumpFs } from '../fsio.js';
import { findVmcoreinfo, type ElfNote } from '../notes.js';
import { computeKdumpLayout, type KdumpLayout } from './layout.js';
import { encodeDiskDumpHeader, KDUMP_SIGNATURE, decodeDiskDumpHeader, UTS_FIELD_LEN, type DiskDumpHeader, type Utsname } from './header.js';
import { encodeKdumpSubHeader, decodeKdumpSubHeader, KDUMP_SUB_HEADER_SIZE } from './subheader.js';
import { PAGE_DESC_SIZE, readPageDescOffset, writePageDesc } from './pagedesc.js';
import { packChunk, ScratchPool, type PackedChunk } from './pack.js';
import { CompressPool } from './pool.js';
import { NativeCopier, PACK_MAX_BYTES, PACK_PAGE } from '../native-copy.js';
import { availableParallelism } from 'node:os';
import type { ChunkResult, WriterSummary } from '../types.js';

export const KDUMP_HEADER_VERSION = 6;
export const PAGE_SIZE = 4096;

export interface KdumpUtsname {
  sysname?: string;
  nodename?: string;
  release?: string;
  version?: string;
  machine: 'x86_64';
  domainname?: string;
}

export interface KdumpWriterOptions {
  path: string;
  /** Injectable file system (tests: ENOSPC, EIO, short writes). Default node:fs/promises. */
  fs?: DumpFs;
  /**
   * Number of pfns covered (max_mapnr): one past the highest guest RAM pfn. Do not stretch it over
   * firmware ranges (QEMU's BIOS ROM below 4 GiB): makedumpfile 1.7.2 then refuses to re-filter the file.
   */
  maxPfn: number;
  /** 1st bitmap: which pfns are RAM. Bits at or above maxPfn must be clear. */
  ram: Bitmap;
  /** 2nd bitmap: which pfns are dumped. Must be a subset of `ram`. */
  dump: Bitmap;
  compression: Compression;
  /** Detect all-zero pages and let them share one descriptor (dump level bit 1). */
  excludeZero: boolean;
  /** ELF notes for the sub-header region: NT_PRSTATUS per CPU, then VMCOREINFO. */
  notes: ElfNote[];
  utsname: KdumpUtsname;
  physBase: bigint;
  /** makedumpfile dump level (0–31) this page set corresponds to; recorded, not enforced. */
  dumpLevel: number;
  nrCpus: number;
  /** Header timestamp; default now. */
  timestamp?: Date | number;
  /** Replace an existing file (default: refuse with VCV_ERR_OUTPUT_EXISTS). */
  overwrite?: boolean;
  /**
   * The caller hands `ram` and `dump` over and never changes them afterwards: the writer uses them as
   * they are instead of copying them (2 × maxPfn/8 bytes: 64 MiB for a 1 TiB guest). Applies when
   * their size is exactly maxPfn.
   */
  adoptBitmaps?: boolean;
  /**
   * Compression threads (worker_threads). Default: one per CPU (at most 8) for zlib/lzo/snappy/zstd,
   * none for 'none'. 0 compresses in the writer's thread.
   */
  workers?: number;
  /**
   * Write zeros over the descriptor table at create (default true): later descriptor writes then
   * overwrite allocated blocks and cannot hit ENOSPC on ext4/xfs; costs 24 bytes per dumped page.
   */
  preallocateDescriptors?: boolean;
  /**
   * The image file the page data comes from, when callers will use copyPages(): the native helper
   * (native/copy.c) then copies page runs inside the kernel. Ignored with an injected `fs`.
   */
  copyFrom?: string;
  /**
   * Use the native helper (default true when it is built): copyPages() with `copyFrom`, and write-back
   * of written data started as it is written, so the final fdatasync waits for less. Not with `fs`.
   */
  nativeCopy?: boolean;
  /**
   * fdatasync the laid-out head (header, notes, bitmaps, descriptor table) before create() returns
   * (default true), so that state() right after create is a checkpoint resume() can start from. A
   * caller that keeps no checkpoint (a one-shot dump, made durable by finish()) passes false.
   */
  durableLayout?: boolean;
}

export interface KdumpCheckpoint {
  format: 'kdump';
  version: 1;
  /** Data end offset: everything below it was durable when the checkpoint was taken. */
  dataEnd: number;
  pagesWritten: number;
  zeroPages: number;
  layout: {
    pageSize: number;
    maxPfn: number;
    numDumpable: number;
    descOffset: number;
    dataStart: number;
    compression: Compression;
    excludeZero: boolean;
  };
  /** ISO time of the sync that made this checkpoint durable. */
  time: string;
}

type WriterState = 'open' | 'closing' | 'closed';

const ZERO_FILL = Buffer.alloc(8 << 20);
/**
 * The native helper fdatasyncs in the background after this many bytes (NativeCopier.backgroundSync).
 * `VICOVER_BACKGROUND_SYNC=0` turns it off, `VICOVER_BACKGROUND_SYNC=N` (N MiB, 1–65536) sets the step.
 */
function backgroundSyncBytes(): number {
  const v = process.env.VICOVER_BACKGROUND_SYNC;
  if (v === undefined || v === '') return 32 << 20;
  const mib = Number(v);
  if (!Number.isInteger(mib) || mib < 0 || mib > 65536) throw new VcvError('VCV_ERR_WRITER_OPTIONS', `VICOVER_BACKGROUND_SYNC must be 0 (off) or a whole number of MiB up to 65536, not ${JSON.stringify(v)}`);
  return mib * (1 << 20);
}

export class KdumpWriter {
  private state_: WriterState = 'open';
  private readonly queue = new SerialQueue();
  private readonly rank: RankIndex;
  private readonly compressor: PageCompressor | undefined;
  /** Pfns whose data and descriptor have been written. */
  readonly written: Bitmap;
  private dataEnd: number;
  private pagesWritten = 0;
  private zeroPages = 0;
  private checkpoint: KdumpCheckpoint;
  private readonly scratch: ScratchPool;
  private readonly pool: CompressPool | undefined;
  /** In-kernel copies and early write-back; null on the JavaScript path. */
  private copier: NativeCopier | null = null;

  private constructor(
    readonly path: string,
    private readonly fh: DumpFileHandle,
    private readonly header: DiskDumpHeader,
    readonly layout: KdumpLayout,
    readonly ram: Bitmap,
    readonly dump: Bitmap,
    readonly compression: Compression,
    readonly excludeZero: boolean,
    dataEnd: number,
    written: Bitmap | undefined,
    workers: number | undefined,
  ) {
    this.rank = new RankIndex(dump);
    this.compressor = createCompressor(compression);
    const n = workers ?? Math.min(8, availableParallelism());
    this.pool = this.compressor ? CompressPool.create(n, compression, excludeZero, layout.pageSize) : undefined;
    this.scratch = new ScratchPool(layout.pageSize, this.compressor !== undefined);
    this.written = written ?? new Bitmap(dump.size);
    this.dataEnd = dataEnd;
    this.checkpoint = this.snapshot();
  }

  // ── create ────────────────────────────────────────────────────────────────────────────────────

  static async create(opts: KdumpWriterOptions): Promise<KdumpWriter> {
    const { maxPfn, ram, dump } = opts;
    const fail = (msg: string) => new VcvError('VCV_ERR_WRITER_OPTIONS', msg, { file: opts.path });
    if (!Number.isInteger(maxPfn) || maxPfn <= 0) throw fail(`maxPfn must be a positive integer, got ${maxPfn}`);
    if (ram.size < maxPfn || dump.size < maxPfn) throw fail(`bitmaps must cover maxPfn=${maxPfn} pfns (ram ${ram.size}, dump ${dump.size})`);
    if (ram.count(maxPfn) !== 0 || dump.count(maxPfn) !== 0) throw fail(`bitmaps have bits set at or above maxPfn=${maxPfn}`);
    if (!dump.isSubsetOf(ram)) throw fail('the dump bitmap must be a subset of the RAM bitmap (every dumped pfn is RAM)');
    if (!Number.isInteger(opts.nrCpus) || opts.nrCpus <= 0) throw fail(`nrCpus must be > 0 (crash refuses 0), got ${opts.nrCpus}`);
    if (!Number.isInteger(opts.dumpLevel) || opts.dumpLevel < 0 || opts.dumpLevel > 31) throw fail(`dumpLevel must be 0–31, got ${opts.dumpLevel}`);
    if (opts.utsname.machine !== 'x86_64') throw fail(`utsname.machine must be "x86_64", got ${JSON.stringify(opts.utsname.machine)}`);
    // libkdumpfile ignores the whole utsname (and with it the architecture, so it then skips the
    // NT_PRSTATUS notes) unless sysname, nodename, release, version and machine are all non-empty.
    const osrelease = /^OSRELEASE=(.+)$/m.exec(findVmcoreinfo(opts.notes) ?? '')?.[1];
    const uts: Utsname = {
      sysname: opts.utsname.sysname || 'Linux',
      nodename: opts.utsname.nodename || '(none)',
      release: opts.utsname.release || osrelease || 'unknown',
      version: opts.utsname.version || 'unknown',
      machine: opts.utsname.machine,
      domainname: opts.utsname.domainname || '(none)',
    };
    for (const [k, v] of Object.entries(uts)) {
      if (Buffer.byteLength(v) >= UTS_FIELD_LEN) throw fail(`utsname.${k} is longer than ${UTS_FIELD_LEN - 1} bytes`);
    }
    const compressor = createCompressor(opts.compression); // validates the codec name early
    void compressor;

    // Shrink the bitmaps to exactly maxPfn bits so their bytes are what goes to disk.
    const ramBm = ram.size === maxPfn ? (opts.adoptBitmaps ? ram : ram.clone()) : Bitmap.from(ram.bytes, maxPfn);
    const dumpBm = dump.size === maxPfn ? (opts.adoptBitmaps ? dump : dump.clone()) : Bitmap.from(dump.bytes, maxPfn);
    const numDumpable = dumpBm.count();
    const lay = computeKdumpLayout({ pageSize: PAGE_SIZE, maxPfn, numDumpable, notes: opts.notes, excludeZero: opts.excludeZero });
    const ts = opts.timestamp === undefined ? Date.now() : typeof opts.timestamp === 'number' ? opts.timestamp : opts.timestamp.getTime();
    const header: DiskDumpHeader = {
      signature: KDUMP_SIGNATURE,
      headerVersion: KDUMP_HEADER_VERSION,
      utsname: uts,
      timestamp: { sec: BigInt(Math.floor(ts / 1000)), usec: BigInt(Math.floor((ts % 1000) * 1000)) },
      status: COMPRESSION_FLAG[opts.compression] | DUMP_DH_COMPRESSED_INCOMPLETE,
      blockSize: PAGE_SIZE,
      subHdrSize: lay.subHdrBlocks,
      bitmapBlocks: (2 * lay.bitmapBytes) / PAGE_SIZE,
      maxMapnr: Math.min(maxPfn, 0xffffffff),
      totalRamBlocks: 0,
      deviceBlocks: 0,
      writtenBlocks: 0,
      currentCpu: 0,
      nrCpus: opts.nrCpus,
    };
    const sub = encodeKdumpSubHeader({
      physBase: opts.physBase,
      dumpLevel: opts.dumpLevel,
      split: 0,
      startPfn: 0n,
      endPfn: 0n,
      offsetVmcoreinfo: BigInt(lay.vmcoreinfoOffset),
      sizeVmcoreinfo: BigInt(lay.vmcoreinfoSize),
      offsetNote: BigInt(lay.noteSize ? lay.noteOffset : 0),
      sizeNote: BigInt(lay.noteSize),
      offsetEraseinfo: 0n,
      sizeEraseinfo: 0n,
      startPfn64: 0n,
      endPfn64: 0n,
      maxMapnr64: BigInt(maxPfn),
    });

    const fs = opts.fs ?? nodeFs;
    const bgBytes = backgroundSyncBytes();
    const fh = await createDumpFile(fs, opts.path, opts.overwrite ?? false);
    // The helper starts first: its exec overlaps the head's writes below.
    const fd = (fh as { fd?: unknown }).fd;
    let copier: NativeCopier | null = null;
    try {
      if (!opts.fs && opts.nativeCopy !== false && typeof fd === 'number') {
        copier = NativeCopier.open({ outFd: fd, outPath: opts.path, ...(opts.copyFrom ? { inputPath: opts.copyFrom } : {}) });
        // Flush the disk's cache while the dump is written, not all at the final fdatasync.
        if (bgBytes > 0) void copier?.backgroundSync(bgBytes);
      }
      // Head: header block, sub-header + notes blocks, two bitmaps — one writev.
      const headBlock = Buffer.alloc(PAGE_SIZE);
      encodeDiskDumpHeader(header).copy(headBlock);
      const subRegion = Buffer.alloc(lay.subHdrBlocks * PAGE_SIZE);
      sub.copy(subRegion, 0);
      lay.notesBlob.copy(subRegion, KDUMP_SUB_HEADER_SIZE);
      const bmPad = Buffer.alloc(lay.bitmapBytes - ramBm.bytes.length);
      await writevAll(fh, [headBlock, subRegion, ramBm.bytes, bmPad, dumpBm.bytes, bmPad], 0);
      // Descriptor table: zeros (= "lost page") until each chunk fills its part.
      if (opts.preallocateDescriptors ?? true) {
        for (let pos = lay.descOffset; pos < lay.dataStart; pos += ZERO_FILL.length) {
          await writeAll(fh, ZERO_FILL.subarray(0, Math.min(ZERO_FILL.length, lay.dataStart - pos)), pos);
        }
      } else {
        await fh.truncate(lay.dataStart);
      }
      let dataEnd = lay.dataStart;
      if (opts.excludeZero) {
        await writeAll(fh, Buffer.alloc(PAGE_SIZE), lay.dataStart);
        dataEnd += PAGE_SIZE;
      }
      if (opts.durableLayout ?? true) await fh.datasync();
      const w = new KdumpWriter(opts.path, fh, header, lay, ramBm, dumpBm, opts.compression, opts.excludeZero, dataEnd, undefined, opts.workers);
      w.copier = copier;
      return w;
    } catch (e) {
      // A half laid-out file holds no pages yet: remove it rather than leave a broken dump behind.
      await copier?.close().catch(() => undefined);
      await fh.close().catch(() => undefined);
      await fs.unlink(opts.path).catch(() => undefined);
      throw wrapError(e, 'VCV_ERR_IO', `cannot lay out kdump file ${opts.path}`, { file: opts.path });
    }
  }

  // ── resume ────────────────────────────────────────────────────────────────────────────────────

  /**
   * Reopen a file created by KdumpWriter.create() whose writer died, and continue from `checkpoint`
   * (a value returned by state() after a successful sync()). Descriptors pointing at or beyond the
   * checkpoint's data end are reset to "lost" (their data may not have reached the disk); `written`
   * then tells which pfns still need writing (`missing()`).
   */
  static async resume(path: string, checkpoint: KdumpCheckpoint, opts: { fs?: DumpFs; workers?: number } = {}): Promise<KdumpWriter> {
    const mismatch = (msg: string, d: Record<string, unknown> = {}) => new VcvError('VCV_ERR_RESUME_MISMATCH', `cannot resume ${path}: ${msg}`, { file: path, ...d });
    if (checkpoint?.format !== 'kdump' || checkpoint.version !== 1) throw mismatch('not a kdump checkpoint of version 1');
    const fs = opts.fs ?? nodeFs;
    let fh: DumpFileHandle;
    try {
      fh = await fs.open(path, 'r+');
    } catch (e) {
      throw wrapError(e, 'VCV_ERR_IO', `cannot reopen ${path}`, { file: path });
    }
    try {
      const size = (await fh.stat()).size;
      const head = Buffer.alloc(2 * PAGE_SIZE);
      if ((await readAll(fh, head, 0)) < PAGE_SIZE + KDUMP_SUB_HEADER_SIZE) throw mismatch('the file is shorter than its header');
      const header = decodeDiskDumpHeader(head, path);
      if (header.signature !== KDUMP_SIGNATURE || header.headerVersion !== KDUMP_HEADER_VERSION || header.blockSize !== PAGE_SIZE) {
        throw mismatch('not a kdump v6 file written by this writer');
      }
      if ((header.status & DUMP_DH_COMPRESSED_INCOMPLETE) === 0) throw mismatch('the dump is already complete (incomplete flag clear)');
      const sub = decodeKdumpSubHeader(head.subarray(PAGE_SIZE), 6, PAGE_SIZE, path);
      const L = checkpoint.layout;
      const maxPfn = Number(sub.maxMapnr64);
      if (maxPfn !== L.maxPfn || L.pageSize !== PAGE_SIZE || COMPRESSION_FLAG[L.compression] !== (header.status & ~DUMP_DH_COMPRESSED_INCOMPLETE)) {
        throw mismatch('header does not match the checkpoint (maxPfn, page size or compression)');
      }
      const bitmapOffset = (1 + header.subHdrSize) * PAGE_SIZE;
      const bitmapBytes = (header.bitmapBlocks * PAGE_SIZE) / 2;
      const descOffset = bitmapOffset + 2 * bitmapBytes;
      if (descOffset !== L.descOffset) throw mismatch('descriptor table offset differs from the checkpoint');
      if (size < checkpoint.dataEnd) throw mismatch(`the file has ${size} bytes, less than the checkpoint's durable data end ${checkpoint.dataEnd}`, { size });
      const bmBuf = Buffer.alloc(2 * bitmapBytes);
      if ((await readAll(fh, bmBuf, bitmapOffset)) !== bmBuf.length) throw mismatch('bitmaps are cut short');
      const ram = Bitmap.from(bmBuf.subarray(0, bitmapBytes), maxPfn);
      const dump = Bitmap.from(bmBuf.subarray(bitmapBytes), maxPfn);
      const numDumpable = dump.count();
      const dataStart = Math.ceil((descOffset + PAGE_DESC_SIZE * numDumpable) / PAGE_SIZE) * PAGE_SIZE;
      if (numDumpable !== L.numDumpable || dataStart !== L.dataStart) throw mismatch('the dump bitmap differs from the checkpoint');
      const lay: KdumpLayout = {
        pageSize: PAGE_SIZE,
        maxPfn,
        numDumpable,
        subHdrBlocks: header.subHdrSize,
        noteOffset: Number(sub.offsetNote),
        noteSize: Number(sub.sizeNote),
        vmcoreinfoOffset: Number(sub.offsetVmcoreinfo),
        vmcoreinfoSize: Number(sub.sizeVmcoreinfo),
        bitmapOffset,
        bitmapBytes,
        descOffset,
        dataStart,
        zeroPageOffset: L.excludeZero ? dataStart : -1,
      };
      const w = new KdumpWriter(path, fh, header, lay, ram, dump, L.compression, L.excludeZero, Math.max(checkpoint.dataEnd, dataStart + (L.excludeZero ? PAGE_SIZE : 0)), undefined, opts.workers);
      await w.rebuildFromDescriptors();
      // Whatever lies past the durable data end is garbage from the dead writer.
      await fh.truncate(w.dataEnd);
      await fh.datasync();
      w.checkpoint = w.snapshot();
      return w;
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw wrapError(e, 'VCV_ERR_IO', `cannot resume ${path}`, { file: path });
    }
  }

  /** Scan the descriptor table: keep descriptors inside the durable data area, reset the others. */
  private async rebuildFromDescriptors(): Promise<void> {
    const L = this.layout;
    const ps = L.pageSize;
    const flag = COMPRESSION_FLAG[this.compression];
    const BATCH = 65536;
    const buf = Buffer.alloc(BATCH * PAGE_DESC_SIZE);
    let idx = 0;
    let pages = 0;
    let zeros = 0;
    const fixes: { pos: number; len: number }[] = [];
    const runs = this.dump.runs();
    let cur = runs.next();
    let pfn = cur.done ? 0 : cur.value[0];
    while (idx < L.numDumpable) {
      const n = Math.min(BATCH, L.numDumpable - idx);
      const got = await readAll(this.fh, buf.subarray(0, n * PAGE_DESC_SIZE), L.descOffset + idx * PAGE_DESC_SIZE);
      for (let i = 0; i < n; i++) {
        const at = i * PAGE_DESC_SIZE;
        const off = at + PAGE_DESC_SIZE <= got ? readPageDescOffset(buf, at) : 0;
        const size = off ? buf.readUInt32LE(at + 8) : 0;
        const f = off ? buf.readUInt32LE(at + 12) : 0;
        const valid =
          off >= L.dataStart && size >= 1 && size <= ps && off + size <= this.dataEnd && (f === 0 ? size === ps : f === flag);
        if (valid) {
          this.written.set(pfn);
          pages++;
          if (off === L.zeroPageOffset) zeros++;
        } else if (at + PAGE_DESC_SIZE <= got && !buf.subarray(at, at + PAGE_DESC_SIZE).every((b) => b === 0)) {
          const pos = L.descOffset + (idx + i) * PAGE_DESC_SIZE;
          const last = fixes[fixes.length - 1];
          if (last && last.pos + last.len === pos && last.len < ZERO_FILL.length) last.len += PAGE_DESC_SIZE;
          else fixes.push({ pos, len: PAGE_DESC_SIZE });
        }
        // advance pfn to the next dumpable one
        pfn++;
        if (!cur.done && pfn >= cur.value[1]) {
          cur = runs.next();
          if (!cur.done) pfn = cur.value[0];
        }
      }
      idx += n;
    }
    for (const f of fixes) await writeAll(this.fh, ZERO_FILL.subarray(0, f.len), f.pos);
    this.pagesWritten = pages;
    this.zeroPages = zeros;
  }

  // ── writing ───────────────────────────────────────────────────────────────────────────────────

  /**
   * Write guest memory for pfns [startPfn, startPfn + data.length/4096). Only pfns set in the dump
   * bitmap are written; the rest of `data` is ignored. Chunks may come in any order; a pfn written
   * twice gets its new data (the old data stays in the file, unreferenced). Keep `data` unchanged
   * until the promise settles.
   */
  writePages(startPfn: number, data: Buffer): Promise<ChunkResult> {
    if (this.state_ !== 'open') return Promise.reject(this.closedError('writePages'));
    const ps = this.layout.pageSize;
    if (!Number.isInteger(startPfn) || startPfn < 0) {
      return Promise.reject(new VcvError('VCV_ERR_WRITER_OPTIONS', `startPfn must be a non-negative integer, got ${startPfn}`, { file: this.path }));
    }
    if (data.length % ps !== 0) {
      return Promise.reject(new VcvError('VCV_ERR_WRITER_OPTIONS', `page data must be a multiple of ${ps} bytes, got ${data.length}`, { file: this.path }));
    }
    const endPfn = startPfn + data.length / ps;
    if (endPfn > this.layout.maxPfn) {
      return Promise.reject(
        new VcvError('VCV_ERR_WRITER_STATE', `pfns [${startPfn}, ${endPfn}) reach past maxPfn ${this.layout.maxPfn}`, { file: this.path }),
      );
    }
    // CPU work now, in call order; I/O later, serialized.
    const { runs, nPages } = this.dumpableRuns(startPfn, endPfn);
    if (nPages === 0) return this.queue.run(async () => ({ pages: 0, zeroPages: 0, bytesWritten: 0 }));
    const firstIdx = this.rank.rank(runs[0]!);
    let packed: Promise<PackedChunk>;
    const scratch = this.scratch.acquire(nPages);
    try {
      const inThread = () => packChunk(data, startPfn, runs, nPages, ps, this.compressor, this.excludeZero, scratch);
      packed =
        this.pool && !this.pool.isBroken
          ? // A dead worker pool must not lose the dump: compress this chunk (and later ones) here instead.
            this.pool.pack(data, startPfn, runs, nPages, scratch).catch(() => inThread())
          : Promise.resolve(inThread());
    } catch (e) {
      this.scratch.release(scratch);
      return Promise.reject(wrapError(e, 'VCV_ERR_INTERNAL', 'page compression failed', { file: this.path }));
    }
    // Do not leave an unhandled rejection behind if compression fails: the queued task reports it.
    packed.catch(() => undefined);
    return this.queue
      .run(async () => {
        const p = await packed;
        try {
          return await this.writePacked(p, runs, firstIdx);
        } finally {
          p.release?.();
        }
      })
      .finally(() => this.scratch.release(scratch));
  }

  private async writePacked(p: PackedChunk, runs: number[], firstIdx: number): Promise<ChunkResult> {
    const L = this.layout;
    const base = this.dataEnd;
    if (p.dataBytes > 0) {
      try {
        await writevAll(this.fh, p.bufs, base);
      } catch (e) {
        throw await this.failedWrite(e, 'page data', base);
      }
      this.dataEnd = base + p.dataBytes;
      this.copier?.writeback(base, p.dataBytes, true);
    }
    const desc = p.scratch.desc.subarray(0, p.pages * PAGE_DESC_SIZE);
    for (let k = 0; k < p.pages; k++) {
      const rel = p.rel[k]!;
      writePageDesc(desc, k * PAGE_DESC_SIZE, rel < 0 ? L.zeroPageOffset : base + rel, p.size[k]!, p.flags[k]!);
    }
    return this.commitDescriptors(desc, runs, firstIdx, p.pages, p.zeroPages, p.dataBytes, (k) => p.rel[k]! < 0);
  }

  /**
   * True when copyPages() can be used: uncompressed, and the native helper reading from `copyFrom`
   * (zero pages kept: copied inside the kernel; zero pages excluded: the helper reads the pages and
   * writes the others, and Node never sees the data).
   */
  get canCopy(): boolean {
    return this.copier?.hasInput === true && this.copier.usable && !this.compressor && (!this.excludeZero || this.layout.pageSize === PACK_PAGE) && this.state_ === 'open';
  }

  /**
   * Like writePages(), but the data of the dumpable pfns in [startPfn, endPfn) is copied by the kernel
   * from the `copyFrom` file: `extents(gpa, length)` says where guest-physical bytes lie in it, as
   * (file position, bytes) pieces in order, position -1 for bytes that read as zero. Only when canCopy.
   */
  copyPages(startPfn: number, endPfn: number, extents: (gpa: number, length: number) => readonly (readonly [number, number])[]): Promise<ChunkResult> {
    if (this.state_ !== 'open') return Promise.reject(this.closedError('copyPages'));
    if (!this.canCopy) return Promise.reject(new VcvError('VCV_ERR_WRITER_STATE', 'copyPages() needs the native helper with an input file and no compression', { file: this.path }));
    if (!Number.isInteger(startPfn) || !Number.isInteger(endPfn) || startPfn < 0 || endPfn < startPfn || endPfn > this.layout.maxPfn) {
      return Promise.reject(new VcvError('VCV_ERR_WRITER_OPTIONS', `bad pfn range [${startPfn}, ${endPfn}) (maxPfn ${this.layout.maxPfn})`, { file: this.path }));
    }
    const ps = this.layout.pageSize;
    const { runs, nPages } = this.dumpableRuns(startPfn, endPfn);
    if (nPages === 0) return this.queue.run(async () => ({ pages: 0, zeroPages: 0, bytesWritten: 0 }));
    const firstIdx = this.rank.rank(runs[0]!);
    // Where each run's bytes come from, resolved now (in call order) so a bad range fails the call.
    const pieces: number[] = [];
    try {
      for (let r = 0; r < runs.length; r += 2) {
        const want = (runs[r + 1]! - runs[r]!) * ps;
        let got = 0;
        for (const [pos, len] of extents(runs[r]! * ps, want)) {
          pieces.push(pos, len);
          got += len;
        }
        if (got !== want) throw new VcvError('VCV_ERR_INTERNAL', `extents cover ${got} of ${want} bytes at pfn ${runs[r]}`);
      }
      // Zero pages are found page by page in the input: each page must lie whole in one piece.
      if (this.excludeZero && pieces.some((v, i) => i % 2 === 1 && v % ps !== 0)) {
        throw new VcvError('VCV_ERR_WRITER_OPTIONS', 'copyPages() with zero pages excluded needs extents made of whole pages', { file: this.path });
      }
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.excludeZero) return this.queue.run(() => this.packFromInput(pieces, runs, firstIdx, nPages));
    return this.queue.run(async () => {
      const base = this.dataEnd;
      const copier = this.copier!;
      const jobs: Promise<number>[] = [];
      let at = base;
      for (let i = 0; i < pieces.length; i += 2) {
        const pos = pieces[i]!;
        const len = pieces[i + 1]!;
        if (pos >= 0) jobs.push(copier.copy(pos, at, len));
        at += len;
      }
      const dataBytes = nPages * ps;
      try {
        await Promise.all(jobs);
        // Zero-filled bytes at the very end are not written: the file must still reach them.
        if ((await this.fh.stat()).size < base + dataBytes) await this.fh.truncate(base + dataBytes);
      } catch (e) {
        throw await this.failedWrite(e, 'page data', base);
      }
      this.dataEnd = base + dataBytes;
      const desc = this.scratchDesc(nPages);
      for (let k = 0; k < nPages; k++) writePageDesc(desc, k * PAGE_DESC_SIZE, base + k * ps, ps, 0);
      return this.commitDescriptors(desc, runs, firstIdx, nPages, 0, dataBytes, () => false);
    });
  }

  /**
   * copyPages() with zero pages excluded: the helper reads each piece's pages from the input and writes
   * the non-zero ones one after the other from the data end (the pieces are sent at once; each goes on
   * where the previous ended), and says which were zero and where it wrote from. Descriptors as
   * writePages() would make them: the same bytes in the same places; a PACK that did not go on where
   * the previous ended fails the chunk, so no descriptor can point elsewhere.
   */
  private async packFromInput(pieces: number[], runs: number[], firstIdx: number, nPages: number): Promise<ChunkResult> {
    const ps = this.layout.pageSize;
    const base = this.dataEnd;
    const copier = this.copier!;
    // Per piece: its pages, and the helper's answer (null: reads as zero, nothing sent).
    const jobs: { pages: number; reply: Promise<{ written: number; from: number; zero: Buffer }> | null }[] = [];
    let first = true;
    for (let i = 0; i < pieces.length; i += 2) {
      const pos = pieces[i]!;
      for (let done = 0; done < pieces[i + 1]!; done += PACK_MAX_BYTES) {
        const len = Math.min(PACK_MAX_BYTES, pieces[i + 1]! - done);
        if (pos < 0) jobs.push({ pages: len / ps, reply: null });
        else {
          jobs.push({ pages: len / ps, reply: copier.pack(pos + done, first ? base : null, len, false) });
          first = false;
        }
      }
    }
    for (const j of jobs) j.reply?.catch(() => undefined);
    const desc = this.scratchDesc(nPages);
    const zero = new Uint8Array(nPages);
    let k = 0;
    let dataBytes = 0;
    let zeroPages = 0;
    try {
      for (const j of jobs) {
        const r = j.reply ? await j.reply : null;
        if (r && r.from !== base + dataBytes) {
          throw new VcvError('VCV_ERR_INTERNAL', `the native copy helper wrote page data at offset ${r.from} instead of ${base + dataBytes}`, { file: this.path });
        }
        let wrote = 0;
        for (let i = 0; i < j.pages; i++, k++) {
          if (!r || (r.zero[i >> 3]! >> (i & 7)) & 1) {
            zero[k] = 1;
            zeroPages++;
            writePageDesc(desc, k * PAGE_DESC_SIZE, this.layout.zeroPageOffset, ps, 0);
          } else {
            writePageDesc(desc, k * PAGE_DESC_SIZE, base + dataBytes, ps, 0);
            dataBytes += ps;
            wrote += ps;
          }
        }
        if (r && r.written !== wrote) throw new VcvError('VCV_ERR_INTERNAL', `the native copy helper wrote ${r.written} bytes for ${wrote} bytes of non-zero pages`, { file: this.path });
      }
    } catch (e) {
      throw await this.failedWrite(e, 'page data', base);
    }
    this.dataEnd = base + dataBytes;
    copier.writeback(base, dataBytes);
    return this.commitDescriptors(desc, runs, firstIdx, nPages, zeroPages, dataBytes, (i) => zero[i] === 1);
  }

  /** The dumpable pfns of [startPfn, endPfn) as flat [start, end, start, end, …] runs, and their count. */
  private dumpableRuns(startPfn: number, endPfn: number): { runs: number[]; nPages: number } {
    const runs: number[] = [];
    let nPages = 0;
    this.dump.forEachRun(startPfn, endPfn, (s, e) => {
      runs.push(s, e);
      nPages += e - s;
    });
    return { runs, nPages };
  }

  private descBuf: Buffer | undefined;
  private scratchDesc(pages: number): Buffer {
    const need = pages * PAGE_DESC_SIZE;
    if (!this.descBuf || this.descBuf.length < need) this.descBuf = Buffer.allocUnsafe(need);
    return this.descBuf.subarray(0, need);
  }

  /** Write the descriptors of a chunk whose data is in place, and account for its pages. */
  private async commitDescriptors(
    desc: Buffer,
    runs: number[],
    firstIdx: number,
    pages: number,
    zeroPages: number,
    dataBytes: number,
    isZero: (k: number) => boolean,
  ): Promise<ChunkResult> {
    const L = this.layout;
    const descPos = L.descOffset + firstIdx * PAGE_DESC_SIZE;
    try {
      await writeAll(this.fh, desc, descPos);
    } catch (e) {
      // Some of these descriptors may have reached the file: reset them all so the chunk reads as
      // lost, never half-described (best effort: the same blocks were already allocated).
      await writeAll(this.fh, Buffer.alloc(desc.length), descPos).catch(() => undefined);
      throw await this.failedWrite(e, 'page descriptors', descPos);
    }
    // Book-keeping: count only pfns not written before.
    let newPages = pages;
    let newZeros = zeroPages;
    const before = this.countWritten(runs);
    if (before > 0) {
      newPages -= before;
      let k = 0;
      newZeros = 0;
      for (let r = 0; r < runs.length; r += 2) {
        for (let pfn = runs[r]!; pfn < runs[r + 1]!; pfn++, k++) if (isZero(k) && !this.written.get(pfn)) newZeros++;
      }
    }
    for (let r = 0; r < runs.length; r += 2) this.written.setRange(runs[r]!, runs[r + 1]!);
    this.pagesWritten += newPages;
    this.zeroPages += newZeros;
    return { pages, zeroPages, bytesWritten: dataBytes + desc.length };
  }

  private countWritten(runs: number[]): number {
    let n = 0;
    for (let r = 0; r < runs.length; r += 2) n += this.written.count(runs[r]!, runs[r + 1]!);
    return n;
  }

  /** After a failed write: keep what was written readable (the header has said "incomplete" since create) and make it durable. */
  private async failedWrite(e: unknown, what: string, offset: number): Promise<VcvError> {
    await this.fh.datasync().catch(() => undefined);
    const err = wrapError(e, 'VCV_ERR_IO', `writing ${what} of ${this.path} failed`, { file: this.path, offset });
    if (err.code === 'VCV_ERR_NO_SPACE') {
      err.message += `; the dump is marked incomplete and the ${this.pagesWritten} pages written so far stay readable`;
    }
    return err;
  }

  /** fdatasync: after it resolves, every page whose writePages() settled before this call is durable. Returns the new checkpoint. */
  sync(): Promise<KdumpCheckpoint> {
    if (this.state_ !== 'open') return Promise.reject(this.closedError('sync'));
    return this.queue.run(async () => {
      const cp = this.snapshot();
      try {
        await this.fh.datasync();
      } catch (e) {
        throw wrapError(e, 'VCV_ERR_IO', `fdatasync of ${this.path} failed`, { file: this.path });
      }
      this.checkpoint = cp;
      return cp;
    });
  }

  /** The checkpoint as of the last successful sync() (or create/resume): small, JSON-able. */
  state(): KdumpCheckpoint {
    return this.checkpoint;
  }

  private snapshot(): KdumpCheckpoint {
    const L = this.layout;
    return {
      format: 'kdump',
      version: 1,
      dataEnd: this.dataEnd,
      pagesWritten: this.pagesWritten,
      zeroPages: this.zeroPages,
      layout: {
        pageSize: L.pageSize,
        maxPfn: L.maxPfn,
        numDumpable: L.numDumpable,
        descOffset: L.descOffset,
        dataStart: L.dataStart,
        compression: this.compression,
        excludeZero: this.excludeZero,
      },
      time: new Date().toISOString(),
    };
  }

  /** Dumpable pfns not written yet. */
  missing(): Bitmap {
    return this.dump.clone().andNot(this.written);
  }

  get progress(): { dumpable: number; pagesWritten: number; zeroPages: number; dataBytes: number } {
    return { dumpable: this.layout.numDumpable, pagesWritten: this.pagesWritten, zeroPages: this.zeroPages, dataBytes: this.dataEnd - this.layout.dataStart };
  }

  /**
   * Wait for in-flight writes, sync, clear the incomplete flag if every dumpable page was written,
   * fsync and close. A dump with missing pages stays marked incomplete (summary.complete = false).
   */
  async finish(): Promise<WriterSummary> {
    if (this.state_ !== 'open') throw this.closedError('finish');
    this.state_ = 'closing';
    try {
      await this.queue.drain();
      await this.fh.datasync();
      const complete = this.pagesWritten === this.layout.numDumpable;
      if (complete) {
        const h = { ...this.header, status: this.header.status & ~DUMP_DH_COMPRESSED_INCOMPLETE };
        await writeAll(this.fh, encodeDiskDumpHeader(h), 0);
        this.header.status = h.status;
      }
      await this.fh.sync();
      return await this.close(complete);
    } catch (e) {
      await this.pool?.close().catch(() => undefined);
      await this.copier?.close().catch(() => undefined);
      await this.fh.close().catch(() => undefined);
      this.state_ = 'closed';
      throw wrapError(e, 'VCV_ERR_IO', `finishing ${this.path} failed`, { file: this.path });
    }
  }

  /** Stop: wait for in-flight writes, sync what is there, close. The file stays marked incomplete and readable. */
  async abort(reason: string): Promise<WriterSummary> {
    if (this.state_ === 'closed') throw new VcvError('VCV_ERR_WRITER_STATE', `abort() after the writer was closed`, { file: this.path });
    this.state_ = 'closing';
    await this.queue.drain();
    await this.fh.sync().catch(() => undefined);
    const s = await this.close(false).catch(async () => {
      await this.pool?.close().catch(() => undefined);
      await this.copier?.close().catch(() => undefined);
      return undefined;
    });
    return { ...(s ?? this.summary(false, 0)), abortReason: reason };
  }

  private async close(complete: boolean): Promise<WriterSummary> {
    await this.pool?.close();
    await this.copier?.close();
    const size = (await this.fh.stat()).size;
    await this.fh.close();
    this.state_ = 'closed';
    return this.summary(complete, size);
  }

  /** Number of compression worker threads in use (0 = compressing in the writer's thread). */
  get workers(): number {
    return this.pool && !this.pool.isBroken ? this.pool.size : 0;
  }

  private summary(complete: boolean, fileBytes: number): WriterSummary {
    return {
      path: this.path,
      format: 'kdump',
      complete,
      dumpable: this.layout.numDumpable,
      pagesWritten: this.pagesWritten,
      zeroPages: this.zeroPages,
      fileBytes,
      compression: this.compression,
    };
  }

  private closedError(op: string): VcvError {
    return new VcvError('VCV_ERR_WRITER_STATE', `${op}() after finish()/abort()`, { file: this.path });
  }
}

