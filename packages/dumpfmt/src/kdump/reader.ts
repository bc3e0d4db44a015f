/**
 * KdumpReader: reads kdump-compressed files (makedumpfile, QEMU, ours), seekable or flattened.
 *
 * Every header field is checked against the file size before it sizes an allocation or a read, so a
 * cut-short or hostile file gives a coded VcvError:
 *   VCV_ERR_FORMAT_TRUNCATED  the header, sub-header, notes, bitmaps or descriptor table end past EOF
 *   VCV_ERR_FORMAT_INVALID    impossible values (block size, bitmap too small for max_mapnr, …)
 *   VCV_ERR_FORMAT_UNSUPPORTED old DISKDUMP files, split dumps, big-endian dumps
 * A file cut inside the data area still opens; the pages whose data is missing are reported by
 * lostPages() and readPage() gives VCV_ERR_PAGE_NOT_DUMPED for them.
 */
import { VcvError } from '@vicover/errors';
import { Bitmap, MAX_BITMAP_BITS, RankIndex } from '../bitmap.js';
import { compressionFromFlags, decompressPage, DUMP_DH_COMPRESSED_INCOMPLETE, type Compression } from '../codec/index.js';
import { invalid, safeNumber, truncated, unsupported } from '../errors.js';
import { findVmcoreinfo, MAX_NOTES_SIZE, parseNotesLenient, type ElfNote } from '../notes.js';
import { FileSource, FlatSource, readExact, type ByteSource } from '../source.js';
import { iterateDumpedPages, type DumpReader, type ReaderOptions } from '../types-reader.js';
import { decodeDiskDumpHeader, DISK_DUMP_HEADER_SIZE, DISKDUMP_SIGNATURE, KDUMP_SIGNATURE, type DiskDumpHeader } from './header.js';
import { decodeKdumpSubHeader, KDUMP_SUB_HEADER_SIZE, type KdumpSubHeader } from './subheader.js';
import { isFlatSignature } from './flat.js';
import { PAGE_DESC_SIZE, readPageDescOffset, type PageDesc } from './pagedesc.js';

export interface KdumpStats {
  dumpable: number;
  /** Descriptor offset 0 (never written: incomplete dump) or data past the end of the file. */
  lost: number;
  /** Of the lost pages, those whose data lies past the end of the file. */
  truncated: number;
  /** Pages sharing the zero-page descriptor. */
  zero: number;
  raw: number;
  compressed: number;
  /** Bytes of page data referenced (shared zero page not counted). */
  dataBytes: number;
}

/** Largest bitmap region (both bitmaps) we load: 2 GiB, i.e. 2^33 pfns per bitmap (32 TiB of 4 KiB pages). */
const MAX_BITMAP_REGION = 2 ** 31;

export class KdumpReader implements DumpReader {
  readonly format: 'kdump' | 'kdump-flattened';
  readonly header: DiskDumpHeader;
  readonly subHeader: KdumpSubHeader;
  readonly pageSize: number;
  readonly maxPfn: number;
  readonly compression: Compression;
  readonly incomplete: boolean;
  readonly notes: ElfNote[];
  readonly vmcoreinfo: string | undefined;
  /** 1st bitmap: RAM pfns. */
  readonly ram: Bitmap;
  /** 2nd bitmap: dumpable pfns (the same object as `ram` in a full dump with one bitmap). */
  readonly dump: Bitmap;
  readonly descOffset: number;
  /** End of the descriptor table = lowest valid data offset. */
  readonly dataStart: number;
  readonly physBase: bigint;
  readonly dumpLevel: number;
  /** Recoverable oddities found while opening (e.g. a flattened stream without its end marker). */
  readonly warnings: string[] = [];
  private readonly rank: RankIndex;
  private cache: { pfn: number; data: Buffer } | undefined;

  private constructor(readonly path: string, private readonly src: ByteSource, flattened: boolean, opts: ReaderOptions = {}) {
    this.format = flattened ? 'kdump-flattened' : 'kdump';
    const file = path;
    const N = src.size;
    if (flattened && !(src as FlatSource).complete) this.warnings.push('flattened stream has no end marker (cut short)');
    if (N < DISK_DUMP_HEADER_SIZE) {
      throw truncated('kdump header (disk_dump_header)', { file, offset: 0, size: N });
    }
    const h = decodeDiskDumpHeader(readExact(src, 0, DISK_DUMP_HEADER_SIZE, 'kdump header'), file);
    this.header = h;
    if (h.signature === DISKDUMP_SIGNATURE) throw unsupported('old DISKDUMP format (netdump/diskdump era) is not supported; crash reads it', { file });
    if (h.signature !== KDUMP_SIGNATURE) throw new VcvError('VCV_ERR_FORMAT_UNKNOWN', `${file}: no kdump signature`, { file });
    if (h.headerVersion < 1) throw unsupported(`kdump header_version ${h.headerVersion} (< 1) is not supported`, { file });
    if (h.headerVersion > 6) this.warnings.push(`header_version ${h.headerVersion} is newer than 6; reading it as version 6`);
    const bs = h.blockSize;
    if (!(bs >= 1024 && bs <= 65536 && (bs & (bs - 1)) === 0)) {
      // A big-endian dump has a byte-swapped block size.
      const swapped = Buffer.from(readExact(src, 428, 4, 'kdump header')).readInt32BE(0);
      if (swapped >= 1024 && swapped <= 65536 && (swapped & (swapped - 1)) === 0) throw unsupported('big-endian kdump files are not supported', { file });
      throw invalid(`kdump block_size ${bs} is not a power of two in [1024, 65536]`, { file, offset: 428 });
    }
    this.pageSize = bs;
    if (!(h.subHdrSize >= 1 && h.subHdrSize * bs <= MAX_NOTES_SIZE + bs)) {
      throw invalid(`kdump sub_hdr_size ${h.subHdrSize} blocks is out of range`, { file, offset: 432 });
    }
    const subEnd = (1 + h.subHdrSize) * bs;
    if (subEnd > N) throw truncated('kdump sub-header region', { file, offset: bs, need: subEnd - bs, size: N });
    const v = Math.min(h.headerVersion, 6);
    const sh = decodeKdumpSubHeader(readExact(src, bs, KDUMP_SUB_HEADER_SIZE, 'kdump sub-header'), v, bs, file);
    this.subHeader = sh;
    this.physBase = sh.physBase;
    this.dumpLevel = sh.dumpLevel;
    if (sh.split !== 0) throw unsupported('split kdump file (makedumpfile --split): join the parts with `makedumpfile --reassemble`', { file });

    let maxPfn = h.maxMapnr;
    if (v >= 6 && sh.maxMapnr64 !== 0n) {
      if (sh.maxMapnr64 > BigInt(MAX_BITMAP_BITS)) throw invalid(`max_mapnr_64 ${sh.maxMapnr64} is out of range`, { file, offset: bs + 96 });
      maxPfn = Number(sh.maxMapnr64);
    }
    if (maxPfn <= 0) throw invalid('kdump max_mapnr is 0', { file, offset: 440 });
    this.maxPfn = maxPfn;

    // Bitmaps
    const bmOff = subEnd;
    const bmTotal = h.bitmapBlocks * bs;
    if (bmTotal > MAX_BITMAP_REGION) throw invalid(`kdump bitmap_blocks ${h.bitmapBlocks} is too large`, { file, offset: 436 });
    if (bmTotal * 8 < maxPfn) throw invalid(`kdump bitmaps (${bmTotal} bytes) are too small for max_mapnr ${maxPfn}`, { file, offset: 436 });
    if (bmOff + bmTotal > N) throw truncated('kdump bitmaps', { file, offset: bmOff, need: bmTotal, size: N });
    const twoBitmaps = maxPfn <= (bmTotal * 8) / 2;
    const bm = readExact(src, bmOff, bmTotal, 'kdump bitmaps');
    if (twoBitmaps) {
      this.ram = Bitmap.from(bm.subarray(0, bmTotal / 2), maxPfn);
      this.dump = Bitmap.from(bm.subarray(bmTotal / 2), maxPfn);
    } else {
      this.ram = Bitmap.from(bm, maxPfn);
      this.dump = this.ram;
    }
    this.rank = new RankIndex(this.dump);
    this.descOffset = bmOff + bmTotal;
    this.dataStart = this.descOffset + PAGE_DESC_SIZE * this.rank.total;
    if (this.dataStart > N) {
      throw truncated('kdump page descriptor table', { file, offset: this.descOffset, need: this.dataStart - this.descOffset, size: N });
    }

    // Notes and VMCOREINFO. Damaged notes do not hide the pages: they become warnings.
    let notes: ElfNote[] = [];
    if (v >= 4 && sh.sizeNote !== 0n) {
      const off = sh.offsetNote;
      const size = sh.sizeNote;
      if (size > BigInt(MAX_NOTES_SIZE) || off < BigInt(bs) || off + size > BigInt(N)) {
        this.warnings.push(`ELF notes at offset ${off} (+${size}) lie outside the file or the sub-header region; ignored`);
      } else {
        const res = parseNotesLenient(readExact(src, Number(off), Number(size), 'kdump notes'), Number(off), file);
        notes = res.notes;
        if (res.error) this.warnings.push(`ELF notes are damaged after ${notes.length} note(s): ${res.error.message}`);
      }
    }
    this.notes = notes;
    let vmci = findVmcoreinfo(notes);
    if (vmci === undefined && v >= 3 && sh.sizeVmcoreinfo !== 0n) {
      const off = sh.offsetVmcoreinfo;
      const size = sh.sizeVmcoreinfo;
      if (size > BigInt(MAX_NOTES_SIZE) || off < BigInt(bs) || off + size > BigInt(N)) {
        this.warnings.push(`VMCOREINFO at offset ${off} (+${size}) lies outside the file; ignored`);
      } else {
        vmci = readExact(src, Number(off), Number(size), 'VMCOREINFO').toString('utf8').replace(/\0+$/, '');
      }
    }
    this.vmcoreinfo = vmci;
    if (h.nrCpus <= 0) this.warnings.push(`nr_cpus is ${h.nrCpus} (crash warns about this)`);
    if (h.utsname.machine !== 'x86_64') this.warnings.push(`utsname.machine is ${JSON.stringify(h.utsname.machine)}, not x86_64`);
    this.compression = compressionFromFlags(h.status);
    this.incomplete = (h.status & DUMP_DH_COMPRESSED_INCOMPLETE) !== 0;
    if (opts.strict && this.warnings.length) throw invalid(`${this.warnings[0]} (strict mode)`, { file, warnings: this.warnings });
  }

  /** Open a kdump file (seekable or flattened). */
  static async open(path: string, opts: ReaderOptions = {}): Promise<KdumpReader> {
    return KdumpReader.openSync(path, opts);
  }

  /** Read a kdump file from a byte source (plain or the logical view of a flattened file). Takes ownership of `src`. */
  static fromSource(path: string, src: ByteSource, flattened: boolean, opts: ReaderOptions = {}): KdumpReader {
    return new KdumpReader(path, src, flattened, opts);
  }

  static openSync(path: string, opts: ReaderOptions = {}): KdumpReader {
    const fsrc = FileSource.open(path);
    try {
      const head = readExact(fsrc, 0, Math.min(16, fsrc.size), 'file signature');
      if (isFlatSignature(head)) return new KdumpReader(path, FlatSource.open(fsrc), true, opts);
      return new KdumpReader(path, fsrc, false, opts);
    } catch (e) {
      fsrc.close();
      throw e;
    }
  }

  /** Dumpable pages (2nd bitmap popcount, zero pages included). */
  get pages(): number {
    return this.rank.total;
  }

  /** RAM pages (1st bitmap) and dumpable pages (2nd bitmap). */
  get pageCounts(): { ram: number; dumpable: number } {
    return { ram: this.ram.count(), dumpable: this.rank.total };
  }

  dumpedPages(opts: { skipUnreadable?: boolean } = {}): Generator<[number, Buffer]> {
    return iterateDumpedPages(this, opts.skipUnreadable ?? true);
  }

  isDumpable(pfn: number): boolean {
    return this.dump.get(pfn);
  }

  isDumped(pfn: number): boolean {
    return this.dump.get(pfn);
  }

  dumpedRuns(): Iterable<[number, number]> {
    return this.dump.runs();
  }

  /** The descriptor of a dumpable pfn, or undefined if the pfn is not dumpable. */
  pageDesc(pfn: number): PageDesc | undefined {
    if (!this.dump.get(pfn)) return undefined;
    const at = this.descOffset + this.rank.rank(pfn) * PAGE_DESC_SIZE;
    const b = readExact(this.src, at, PAGE_DESC_SIZE, 'page descriptor');
    return { offset: readPageDescOffset(b, 0), size: b.readUInt32LE(8), flags: b.readUInt32LE(12), pageFlags: b.readBigUInt64LE(16) };
  }

  /** One page of guest memory. VCV_ERR_PAGE_NOT_DUMPED (excluded, hole, lost or cut off) or VCV_ERR_PAGE_CORRUPT. */
  readPage(pfn: number): Buffer {
    if (this.cache?.pfn === pfn) return Buffer.from(this.cache.data);
    const file = this.path;
    if (!(Number.isInteger(pfn) && pfn >= 0 && pfn < this.maxPfn)) {
      throw new VcvError('VCV_ERR_PAGE_NOT_DUMPED', `pfn ${pfn} is outside the dump (max_mapnr ${this.maxPfn})`, { file, pfn, reason: 'out-of-range' });
    }
    const d = this.pageDesc(pfn);
    if (!d) {
      const reason = this.ram.get(pfn) ? 'excluded' : 'not-ram';
      throw new VcvError('VCV_ERR_PAGE_NOT_DUMPED', `pfn ${pfn} is not in the dump (${reason})`, { file, pfn, reason });
    }
    if (d.offset === 0) {
      throw new VcvError('VCV_ERR_PAGE_NOT_DUMPED', `pfn ${pfn} was lost: the dump is incomplete`, { file, pfn, reason: 'lost' });
    }
    const details = { file, pfn, offset: d.offset, size: d.size, flags: d.flags };
    if (d.size === 0 || d.size > this.pageSize || d.offset < this.dataStart) {
      throw new VcvError('VCV_ERR_PAGE_CORRUPT', `pfn ${pfn}: descriptor (offset ${d.offset}, size ${d.size}) is impossible`, details);
    }
    if (d.offset + d.size > this.src.size) {
      throw new VcvError('VCV_ERR_PAGE_NOT_DUMPED', `pfn ${pfn}: its data lies past the end of the file (cut short)`, { ...details, reason: 'truncated' });
    }
    const raw = readExact(this.src, d.offset, d.size, 'page data');
    const page = decompressPage(d.flags, raw, this.pageSize, details);
    this.cache = { pfn, data: page };
    return Buffer.from(page);
  }

  /** Read guest-physical memory; every byte must be in a dumped page. */
  readPhys(addr: number | bigint, buf: Uint8Array, off = 0, len = buf.length - off): void {
    let a = typeof addr === 'bigint' ? safeNumber(addr, 'address') : addr;
    const ps = this.pageSize;
    let o = off;
    let left = len;
    while (left > 0) {
      const pfn = Math.floor(a / ps);
      const inPage = a - pfn * ps;
      const n = Math.min(left, ps - inPage);
      const page = this.readPage(pfn);
      buf.set(page.subarray(inPage, inPage + n), o);
      a += n;
      o += n;
      left -= n;
    }
  }

  /**
   * Dumpable pfns whose data cannot be read back: descriptor offset 0 ("lost", incomplete dump) or data
   * past the end of the file (cut short). Scans the whole descriptor table.
   */
  lostPages(): Bitmap {
    return this.scan().lost;
  }

  /** Scan every descriptor: how pages are stored, and which are lost. */
  stats(): KdumpStats {
    const { lost, ...rest } = this.scan();
    return { ...rest, lost: lost.count() };
  }

  private scan(): Omit<KdumpStats, 'lost'> & { lost: Bitmap } {
    const lost = new Bitmap(this.maxPfn);
    const st = { dumpable: this.rank.total, truncated: 0, zero: 0, raw: 0, compressed: 0, dataBytes: 0 };
    const BATCH = 65536;
    const total = this.rank.total;
    const N = this.src.size;
    const ps = this.pageSize;
    // The shared zero page: the descriptor makedumpfile and we use for all-zero pages points at one
    // raw page of zeros. Count pages pointing at the most common raw offset as zero pages only if that
    // page really is zero (checked once).
    const seen = new Map<number, number>();
    let idx = 0;
    const runs = this.dump.runs();
    let cur = runs.next();
    let pfn = cur.done ? 0 : cur.value[0];
    while (idx < total) {
      const n = Math.min(BATCH, total - idx);
      const b = readExact(this.src, this.descOffset + idx * PAGE_DESC_SIZE, n * PAGE_DESC_SIZE, 'page descriptors');
      for (let i = 0; i < n; i++) {
        const at = i * PAGE_DESC_SIZE;
        const o = readPageDescOffset(b, at);
        const size = b.readUInt32LE(at + 8);
        const flags = b.readUInt32LE(at + 12);
        if (o === 0) lost.set(pfn);
        else if (o + size > N) {
          lost.set(pfn);
          st.truncated++;
        } else if (flags === 0) {
          seen.set(o, (seen.get(o) ?? 0) + 1);
        } else {
          st.compressed++;
          st.dataBytes += size;
        }
        pfn++;
        if (!cur.done && pfn >= cur.value[1]) {
          cur = runs.next();
          if (!cur.done) pfn = cur.value[0];
        }
      }
      idx += n;
    }
    for (const [o, count] of seen) {
      if (count > 1 && o + ps <= N && readExact(this.src, o, ps, 'zero page').every((x) => x === 0)) st.zero += count;
      else {
        st.raw += count;
        st.dataBytes += count * ps;
      }
    }
    return { ...st, lost };
  }

  close(): void {
    this.src.close();
    this.cache = undefined;
  }
}
