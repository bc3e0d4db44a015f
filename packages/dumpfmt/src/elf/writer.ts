/**
 * ElfWriter: an ELF64 vmcore (ET_CORE, EM_X86_64) written chunk by chunk in any pfn order.
 *
 *   ELF header | [section header 0, only with PN_XNUM] | PT_NOTE + PT_LOAD program headers | notes |
 *   pad to 4 KiB | segment data (page aligned, in pfn order)
 *
 * Segments: one PT_LOAD per run of dumped pfns inside a run of RAM. Runs separated by fewer than
 * `mergeGapPages` excluded RAM pages (default 256, as makedumpfile) share a segment; the excluded pages
 * in between are never written and read as zeros (file holes). Runs are never merged across non-RAM
 * holes. p_paddr is the guest-physical address; p_vaddr is the same value by default (so gdb's `x`
 * reads physical memory), or 0 with `vaddr: 'zero'`.
 *
 * The file is sized at create (sparse); with `excludeZero` all-zero pages are left as holes (runs of
 * at least 4 zero pages are skipped; shorter ones are written to keep writes few). e_flags has
 * makedumpfile's DUMP_ELF_INCOMPLETE (0x1) from create until finish() sees every page written.
 * An ELF file cannot tell a lost page from a zero page: the incomplete flag is the only signal.
 */
import { VcvError, wrapError } from '@vicover/errors';
import { Bitmap } from '../bitmap.js';
import { createDumpFile, nodeFs, readAll, SerialQueue, writeAll, writevAll, type DumpFileHandle, type DumpFs } from '../fsio.js';
import { encodeNotes, type ElfNote } from '../notes.js';
import { isZeroPage } from '../kdump/pack.js';
import type { ChunkResult, WriterSummary } from '../types.js';
import {
  EHDR_SIZE,
  ELF_DUMP_INCOMPLETE,
  elfIdent,
  EM_X86_64,
  encodeEhdr,
  encodeShdr,
  ET_CORE,
  EV_CURRENT,
  PF_R,
  PF_W,
  PF_X,
  PHDR_SIZE,
  PN_XNUM,
  PT_LOAD,
  PT_NOTE,
  SHDR_SIZE,
  writePhdr,
  decodeEhdr,
  type Elf64Ehdr,
} from './structs.js';

const PAGE_SIZE = 4096;
/** Zero runs shorter than this are written inline rather than left as holes (fewer syscalls). */
const ZERO_SKIP_PAGES = 4;

export interface ElfWriterOptions {
  path: string;
  fs?: DumpFs;
  maxPfn: number;
  ram: Bitmap;
  dump: Bitmap;
  notes: ElfNote[];
  /** Leave all-zero pages as file holes (default true). */
  excludeZero?: boolean;
  /** Excluded RAM runs shorter than this many pages do not split a segment (default 256; 0 = never merge). */
  mergeGapPages?: number;
  /** p_vaddr of PT_LOADs: 'phys' (= p_paddr, default) or 'zero'. */
  vaddr?: 'phys' | 'zero';
  overwrite?: boolean;
  /** The caller hands `dump` over and never changes it afterwards: no copy (see KdumpWriterOptions). */
  adoptBitmaps?: boolean;
  /** fdatasync the laid-out file before create() returns (default true; see KdumpWriterOptions). */
  durableLayout?: boolean;
}

export interface ElfCheckpoint {
  format: 'elf';
  version: 1;
  /** Written pfn runs, flattened [start0, end0, start1, end1, …]. */
  written: number[];
  pagesWritten: number;
  zeroPages: number;
  layout: { maxPfn: number; numDumpable: number; segments: number; fileSize: number };
  time: string;
}

interface Segments {
  start: number[];
  end: number[];
  /** File offset of each segment's first page. */
  off: number[];
}

function buildSegments(ram: Bitmap, dump: Bitmap, maxPfn: number, mergeGap: number, dataStart: number): Segments {
  const seg: Segments = { start: [], end: [], off: [] };
  let pos = dataStart;
  ram.forEachRun(0, maxPfn, (rs, re) => {
    let cs = -1;
    let ce = -1;
    dump.forEachRun(rs, re, (s, e) => {
      if (cs >= 0 && s - ce < mergeGap) {
        ce = e;
        return;
      }
      if (cs >= 0) {
        seg.start.push(cs);
        seg.end.push(ce);
        seg.off.push(pos);
        pos += (ce - cs) * PAGE_SIZE;
      }
      cs = s;
      ce = e;
    });
    if (cs >= 0) {
      seg.start.push(cs);
      seg.end.push(ce);
      seg.off.push(pos);
      pos += (ce - cs) * PAGE_SIZE;
    }
  });
  return seg;
}

export class ElfWriter {
  private state_: 'open' | 'closing' | 'closed' = 'open';
  private readonly queue = new SerialQueue();
  readonly written: Bitmap;
  private pagesWritten = 0;
  private zeroPages = 0;
  private checkpoint: ElfCheckpoint;
  readonly numDumpable: number;

  private constructor(
    readonly path: string,
    private readonly fh: DumpFileHandle,
    private readonly ehdr: Elf64Ehdr,
    readonly dump: Bitmap,
    private readonly seg: Segments,
    readonly fileSize: number,
    readonly excludeZero: boolean,
  ) {
    this.written = new Bitmap(dump.size);
    this.numDumpable = dump.count();
    this.checkpoint = this.snapshot();
  }

  get segments(): number {
    return this.seg.start.length;
  }

  private static plan(opts: { maxPfn: number; ram: Bitmap; dump: Bitmap; notes: ElfNote[]; mergeGapPages?: number; vaddr?: 'phys' | 'zero'; path: string }) {
    const { maxPfn, ram, dump } = opts;
    const fail = (msg: string) => new VcvError('VCV_ERR_WRITER_OPTIONS', msg, { file: opts.path });
    if (!Number.isInteger(maxPfn) || maxPfn <= 0) throw fail(`maxPfn must be a positive integer, got ${maxPfn}`);
    if (ram.size < maxPfn || dump.size < maxPfn) throw fail(`bitmaps must cover maxPfn=${maxPfn} pfns`);
    if (ram.count(maxPfn) !== 0 || dump.count(maxPfn) !== 0) throw fail(`bitmaps have bits set at or above maxPfn=${maxPfn}`);
    if (!dump.isSubsetOf(ram)) throw fail('the dump bitmap must be a subset of the RAM bitmap');
    const mergeGap = opts.mergeGapPages ?? 256;
    const notesBlob = encodeNotes(opts.notes);
    // Count segments first to size the headers.
    const probe = buildSegments(ram, dump, maxPfn, mergeGap, 0);
    const nseg = probe.start.length;
    const phnum = 1 + nseg;
    const xnum = phnum >= PN_XNUM;
    const phoff = EHDR_SIZE + (xnum ? SHDR_SIZE : 0);
    const noteOff = phoff + phnum * PHDR_SIZE;
    const dataStart = Math.ceil((noteOff + notesBlob.length) / PAGE_SIZE) * PAGE_SIZE;
    const seg: Segments = { start: probe.start, end: probe.end, off: probe.off.map((o) => o + dataStart) };
    const last = nseg - 1;
    const fileSize = nseg ? seg.off[last]! + (seg.end[last]! - seg.start[last]!) * PAGE_SIZE : dataStart;
    const ehdr: Elf64Ehdr = {
      ident: elfIdent(),
      type: ET_CORE,
      machine: EM_X86_64,
      version: EV_CURRENT,
      entry: 0n,
      phoff: BigInt(phoff),
      shoff: xnum ? BigInt(EHDR_SIZE) : 0n,
      flags: ELF_DUMP_INCOMPLETE,
      ehsize: EHDR_SIZE,
      phentsize: PHDR_SIZE,
      phnum: xnum ? PN_XNUM : phnum,
      shentsize: xnum ? SHDR_SIZE : 0,
      shnum: xnum ? 1 : 0,
      shstrndx: 0,
    };
    const head = Buffer.alloc(noteOff);
    encodeEhdr(ehdr).copy(head, 0);
    if (xnum) {
      encodeShdr({ name: 0, type: 0, flags: 0n, addr: 0n, offset: 0n, size: 0n, link: 0, info: phnum, addralign: 0n, entsize: 0n }).copy(head, EHDR_SIZE);
    }
    writePhdr(head, phoff, { type: PT_NOTE, flags: 0, offset: BigInt(noteOff), vaddr: 0n, paddr: 0n, filesz: BigInt(notesBlob.length), memsz: BigInt(notesBlob.length), align: 0n });
    const physV = (opts.vaddr ?? 'phys') === 'phys';
    for (let i = 0; i < nseg; i++) {
      const paddr = BigInt(seg.start[i]!) * BigInt(PAGE_SIZE);
      const sz = BigInt((seg.end[i]! - seg.start[i]!) * PAGE_SIZE);
      writePhdr(head, phoff + (i + 1) * PHDR_SIZE, {
        type: PT_LOAD,
        flags: PF_R | PF_W | PF_X,
        offset: BigInt(seg.off[i]!),
        vaddr: physV ? paddr : 0n,
        paddr,
        filesz: sz,
        memsz: sz,
        align: 0n,
      });
    }
    return { ehdr, head, notesBlob, seg, fileSize, noteOff, phnum };
  }

  static async create(opts: ElfWriterOptions): Promise<ElfWriter> {
    const p = ElfWriter.plan(opts);
    const dump = opts.dump.size === opts.maxPfn ? (opts.adoptBitmaps ? opts.dump : opts.dump.clone()) : Bitmap.from(opts.dump.bytes, opts.maxPfn);
    const fs = opts.fs ?? nodeFs;
    const fh = await createDumpFile(fs, opts.path, opts.overwrite ?? false);
    try {
      await writevAll(fh, [p.head, p.notesBlob], 0);
      await fh.truncate(p.fileSize);
      if (opts.durableLayout ?? true) await fh.datasync();
    } catch (e) {
      // A half laid-out file holds no pages yet: remove it rather than leave a broken dump behind.
      await fh.close().catch(() => undefined);
      await fs.unlink(opts.path).catch(() => undefined);
      throw wrapError(e, 'VCV_ERR_IO', `cannot lay out ELF file ${opts.path}`, { file: opts.path });
    }
    return new ElfWriter(opts.path, fh, p.ehdr, dump, p.seg, p.fileSize, opts.excludeZero ?? true);
  }

  /**
   * Continue an ELF dump after a crash. ELF files do not record which pages were written, so the
   * checkpoint carries the written runs, and the caller passes the same page set (ram, dump, notes,
   * merge/vaddr options) as at create; the rebuilt headers must match the file byte for byte.
   */
  static async resume(path: string, checkpoint: ElfCheckpoint, opts: Omit<ElfWriterOptions, 'path' | 'overwrite'>): Promise<ElfWriter> {
    const mismatch = (msg: string) => new VcvError('VCV_ERR_RESUME_MISMATCH', `cannot resume ${path}: ${msg}`, { file: path });
    if (checkpoint?.format !== 'elf' || checkpoint.version !== 1) throw mismatch('not an ELF checkpoint of version 1');
    const p = ElfWriter.plan({ ...opts, path });
    if (p.fileSize !== checkpoint.layout.fileSize || p.seg.start.length !== checkpoint.layout.segments) throw mismatch('the page set differs from the checkpoint');
    const fs = opts.fs ?? nodeFs;
    let fh: DumpFileHandle;
    try {
      fh = await fs.open(path, 'r+');
    } catch (e) {
      throw wrapError(e, 'VCV_ERR_IO', `cannot reopen ${path}`, { file: path });
    }
    try {
      const head = Buffer.alloc(p.head.length);
      if ((await readAll(fh, head, 0)) !== head.length) throw mismatch('the file is shorter than its headers');
      const eh = decodeEhdr(head, path);
      if ((eh.flags & ELF_DUMP_INCOMPLETE) === 0) throw mismatch('the dump is already complete');
      if (!head.equals(p.head)) throw mismatch('the program headers differ from the page set given');
      if ((await fh.stat()).size !== p.fileSize) await fh.truncate(p.fileSize);
      const dump = opts.dump.size === opts.maxPfn ? opts.dump.clone() : Bitmap.from(opts.dump.bytes, opts.maxPfn);
      const w = new ElfWriter(path, fh, p.ehdr, dump, p.seg, p.fileSize, opts.excludeZero ?? true);
      const wr = checkpoint.written;
      for (let i = 0; i + 1 < wr.length; i += 2) {
        const s = wr[i]!;
        const e = wr[i + 1]!;
        if (!(Number.isInteger(s) && Number.isInteger(e) && s >= 0 && s <= e && e <= dump.size)) throw mismatch(`bad written run [${s}, ${e})`);
        w.written.setRange(s, e);
      }
      w.written.and(dump);
      w.pagesWritten = w.written.count();
      w.zeroPages = Math.min(checkpoint.zeroPages, w.pagesWritten);
      w.checkpoint = w.snapshot();
      return w;
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw wrapError(e, 'VCV_ERR_IO', `cannot resume ${path}`, { file: path });
    }
  }

  /** Index of the segment containing pfn, or -1. */
  private findSeg(pfn: number): number {
    const s = this.seg.start;
    let lo = 0;
    let hi = s.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (pfn < s[mid]!) hi = mid - 1;
      else if (pfn >= this.seg.end[mid]!) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /** Same contract as KdumpWriter.writePages. */
  writePages(startPfn: number, data: Buffer): Promise<ChunkResult> {
    if (this.state_ !== 'open') return Promise.reject(new VcvError('VCV_ERR_WRITER_STATE', 'writePages() after finish()/abort()', { file: this.path }));
    if (!Number.isInteger(startPfn) || startPfn < 0 || data.length % PAGE_SIZE !== 0) {
      return Promise.reject(new VcvError('VCV_ERR_WRITER_OPTIONS', `bad chunk: startPfn ${startPfn}, ${data.length} bytes (must be whole pages)`, { file: this.path }));
    }
    const endPfn = startPfn + data.length / PAGE_SIZE;
    if (endPfn > this.dump.size) {
      return Promise.reject(new VcvError('VCV_ERR_WRITER_STATE', `pfns [${startPfn}, ${endPfn}) reach past maxPfn ${this.dump.size}`, { file: this.path }));
    }
    // Plan the writes: groups of contiguous file ranges.
    const groups: { pos: number; bufs: Buffer[]; len: number }[] = [];
    const runs: number[] = [];
    let pages = 0;
    let zeros = 0;
    const emit = (pfn: number, n: number) => {
      const si = this.findSeg(pfn);
      const pos = this.seg.off[si]! + (pfn - this.seg.start[si]!) * PAGE_SIZE;
      const buf = data.subarray((pfn - startPfn) * PAGE_SIZE, (pfn - startPfn + n) * PAGE_SIZE);
      const g = groups[groups.length - 1];
      if (g && g.pos + g.len === pos) {
        g.bufs.push(buf);
        g.len += buf.length;
      } else groups.push({ pos, bufs: [buf], len: buf.length });
    };
    this.dump.forEachRun(startPfn, endPfn, (s, e) => {
      runs.push(s, e);
      pages += e - s;
      // split at segment ends (a dump run never spans two segments, but be safe) and at long zero runs
      let p = s;
      while (p < e) {
        const si = this.findSeg(p);
        const segEnd = Math.min(e, this.seg.end[si]!);
        if (!this.excludeZero) {
          emit(p, segEnd - p);
          p = segEnd;
          continue;
        }
        let from = p;
        let q = p;
        while (q < segEnd) {
          if (!isZeroPage(data, (q - startPfn) * PAGE_SIZE, PAGE_SIZE)) {
            q++;
            continue;
          }
          let z = q + 1;
          while (z < segEnd && isZeroPage(data, (z - startPfn) * PAGE_SIZE, PAGE_SIZE)) z++;
          zeros += z - q;
          if (z - q >= ZERO_SKIP_PAGES) {
            if (q > from) emit(from, q - from);
            from = z;
          }
          q = z;
        }
        if (segEnd > from) emit(from, segEnd - from);
        p = segEnd;
      }
    });
    return this.queue.run(async () => {
      let bytes = 0;
      for (const g of groups) {
        try {
          await writevAll(this.fh, g.bufs, g.pos);
        } catch (e) {
          await this.fh.datasync().catch(() => undefined);
          throw wrapError(e, 'VCV_ERR_IO', `writing page data of ${this.path} failed`, { file: this.path, offset: g.pos });
        }
        bytes += g.len;
      }
      let before = 0;
      for (let r = 0; r < runs.length; r += 2) before += this.written.count(runs[r]!, runs[r + 1]!);
      for (let r = 0; r < runs.length; r += 2) this.written.setRange(runs[r]!, runs[r + 1]!);
      this.pagesWritten += pages - before;
      if (before === 0) this.zeroPages += zeros;
      return { pages, zeroPages: zeros, bytesWritten: bytes };
    });
  }

  sync(): Promise<ElfCheckpoint> {
    if (this.state_ !== 'open') return Promise.reject(new VcvError('VCV_ERR_WRITER_STATE', 'sync() after finish()/abort()', { file: this.path }));
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

  state(): ElfCheckpoint {
    return this.checkpoint;
  }

  private snapshot(): ElfCheckpoint {
    const written: number[] = [];
    this.written.forEachRun(0, this.written.size, (s, e) => written.push(s, e));
    return {
      format: 'elf',
      version: 1,
      written,
      pagesWritten: this.pagesWritten,
      zeroPages: this.zeroPages,
      layout: { maxPfn: this.dump.size, numDumpable: this.numDumpable, segments: this.seg.start.length, fileSize: this.fileSize },
      time: new Date().toISOString(),
    };
  }

  missing(): Bitmap {
    return this.dump.clone().andNot(this.written);
  }

  get progress(): { dumpable: number; pagesWritten: number; zeroPages: number } {
    return { dumpable: this.numDumpable, pagesWritten: this.pagesWritten, zeroPages: this.zeroPages };
  }

  async finish(): Promise<WriterSummary> {
    if (this.state_ !== 'open') throw new VcvError('VCV_ERR_WRITER_STATE', 'finish() after finish()/abort()', { file: this.path });
    this.state_ = 'closing';
    try {
      await this.queue.drain();
      await this.fh.datasync();
      const complete = this.pagesWritten === this.numDumpable;
      if (complete) {
        this.ehdr.flags &= ~ELF_DUMP_INCOMPLETE;
        await writeAll(this.fh, encodeEhdr(this.ehdr), 0);
      }
      await this.fh.sync();
      return await this.close(complete);
    } catch (e) {
      await this.fh.close().catch(() => undefined);
      this.state_ = 'closed';
      throw wrapError(e, 'VCV_ERR_IO', `finishing ${this.path} failed`, { file: this.path });
    }
  }

  async abort(reason: string): Promise<WriterSummary> {
    if (this.state_ === 'closed') throw new VcvError('VCV_ERR_WRITER_STATE', 'abort() after the writer was closed', { file: this.path });
    this.state_ = 'closing';
    await this.queue.drain();
    await this.fh.sync().catch(() => undefined);
    const s = await this.close(false).catch(() => undefined);
    return { ...(s ?? this.summary(false)), abortReason: reason };
  }

  private async close(complete: boolean): Promise<WriterSummary> {
    await this.fh.close();
    this.state_ = 'closed';
    return this.summary(complete);
  }

  private summary(complete: boolean): WriterSummary {
    return {
      path: this.path,
      format: 'elf',
      complete,
      dumpable: this.numDumpable,
      pagesWritten: this.pagesWritten,
      zeroPages: this.zeroPages,
      fileBytes: this.fileSize,
      compression: 'none',
    };
  }
}
