/**
 * Random-access byte sources for the readers: a plain file, or the logical ("rearranged") view of a
 * makedumpfile-flattened file. Reads are synchronous (readers serve small random reads: a page, a
 * descriptor) and bounds-checked.
 */
import * as fs from 'node:fs';
import { VcvError, wrapError } from '@vicover/errors';
import { truncated, invalid, unsupported } from './errors.js';
import { FLAT_HEADER_SIZE, FLAT_RECORD_HEADER_SIZE, FLAT_TYPE, FLAT_VERSION, decodeFlatHeader } from './kdump/flat.js';

export interface ByteSource {
  /** Logical size in bytes. */
  readonly size: number;
  readonly file: string;
  /** Read up to `len` bytes at `pos` into buf[off…]; returns the count (short only at the end). */
  readInto(buf: Uint8Array, off: number, len: number, pos: number): number;
  /** The same, off the main thread (sources that can; others fall back to readInto). */
  readIntoAsync?(buf: Uint8Array, off: number, len: number, pos: number): Promise<number>;
  close(): void;
}

/** Read exactly `len` bytes at `pos` or throw VCV_ERR_FORMAT_TRUNCATED naming `what`. */
export function readExact(src: ByteSource, pos: number, len: number, what: string): Buffer {
  if (!(pos >= 0 && len >= 0 && pos + len <= src.size)) {
    throw truncated(what, { file: src.file, offset: pos, need: len, size: src.size });
  }
  const buf = Buffer.allocUnsafe(len);
  const n = src.readInto(buf, 0, len, pos);
  if (n !== len) throw truncated(what, { file: src.file, offset: pos, need: len, got: n });
  return buf;
}

export class FileSource implements ByteSource {
  readonly size: number;
  private fd: number;

  private constructor(readonly file: string, fd: number, size: number) {
    this.fd = fd;
    this.size = size;
  }

  static open(file: string): FileSource {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw wrapError(e, 'VCV_ERR_INPUT_NOT_FOUND', `cannot open ${file}`, { file });
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile() && !st.isBlockDevice()) throw new VcvError('VCV_ERR_INPUT_NOT_FOUND', `${file} is not a regular file`, { file });
      return new FileSource(file, fd, st.size);
    } catch (e) {
      fs.closeSync(fd);
      throw wrapError(e, 'VCV_ERR_IO', `cannot stat ${file}`, { file });
    }
  }

  readInto(buf: Uint8Array, off: number, len: number, pos: number): number {
    let done = 0;
    try {
      while (done < len) {
        const n = fs.readSync(this.fd, buf, off + done, len - done, pos + done);
        if (n <= 0) break;
        done += n;
      }
    } catch (e) {
      throw wrapError(e, 'VCV_ERR_IO', `read of ${this.file} failed`, { file: this.file, offset: pos + done });
    }
    return done;
  }

  async readIntoAsync(buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
    let done = 0;
    try {
      while (done < len) {
        const n = await new Promise<number>((resolve, reject) =>
          fs.read(this.fd, buf, off + done, len - done, pos + done, (err, bytes) => (err ? reject(err) : resolve(bytes))),
        );
        if (n <= 0) break;
        done += n;
      }
    } catch (e) {
      throw wrapError(e, 'VCV_ERR_IO', `read of ${this.file} failed`, { file: this.file, offset: pos + done });
    }
    return done;
  }

  close(): void {
    if (this.fd >= 0) {
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }
}

/** Limits for hostile flattened files. */
const MAX_FLAT_RECORDS = 1 << 24;
const MAX_FLAT_WORK = 1 << 28;

interface Extent {
  /** logical start, end */
  s: number;
  e: number;
  /** file position of logical byte `s` */
  f: number;
}

/**
 * The logical view of a flattened file: records are positional writes; later records win where they
 * overlap; bytes no record wrote read as zero. A missing end marker (a cut-short stream) is tolerated
 * and reported by `complete = false`.
 */
export class FlatSource implements ByteSource {
  readonly size: number;
  readonly file: string;
  /** False when the record stream ended without the end marker. */
  readonly complete: boolean;
  readonly records: number;
  private readonly extents: Extent[];

  private constructor(private readonly inner: ByteSource, extents: Extent[], complete: boolean, records: number) {
    this.file = inner.file;
    this.extents = extents;
    this.size = extents.length ? extents[extents.length - 1]!.e : 0;
    this.complete = complete;
    this.records = records;
  }

  static open(inner: ByteSource): FlatSource {
    const file = inner.file;
    const hdr = readExact(inner, 0, Math.min(FLAT_HEADER_SIZE, inner.size), 'flattened header');
    if (hdr.length < 32) throw truncated('flattened header', { file, offset: 0 });
    const h = decodeFlatHeader(hdr, file);
    if (h.type !== FLAT_TYPE || h.version !== FLAT_VERSION) {
      throw unsupported(`flattened file of type ${h.type} version ${h.version}; only type 1 version 1 exists`, { file });
    }
    if (inner.size < FLAT_HEADER_SIZE) throw truncated('flattened header', { file, offset: 0, size: inner.size });
    const extents: Extent[] = [];
    const rh = Buffer.alloc(FLAT_RECORD_HEADER_SIZE);
    let pos = FLAT_HEADER_SIZE;
    let records = 0;
    let work = 0;
    let complete = false;
    while (pos + FLAT_RECORD_HEADER_SIZE <= inner.size) {
      if (inner.readInto(rh, 0, FLAT_RECORD_HEADER_SIZE, pos) !== FLAT_RECORD_HEADER_SIZE) break;
      const off = rh.readBigInt64BE(0);
      const sz = rh.readBigInt64BE(8);
      if (off === -1n) {
        complete = true;
        break;
      }
      if (off < 0n || sz <= 0n || off > BigInt(Number.MAX_SAFE_INTEGER) || sz > BigInt(inner.size)) {
        throw invalid(`flattened record at ${pos}: offset ${off}, size ${sz}`, { file, offset: pos });
      }
      const s = Number(off);
      const n = Number(sz);
      if (pos + FLAT_RECORD_HEADER_SIZE + n > inner.size) break; // record cut short: stop (incomplete)
      if (++records > MAX_FLAT_RECORDS) throw unsupported(`flattened file with more than ${MAX_FLAT_RECORDS} records; rearrange it with \`makedumpfile -R OUT < ${file}\``, { file });
      work += insertExtent(extents, { s, e: s + n, f: pos + FLAT_RECORD_HEADER_SIZE });
      if (work > MAX_FLAT_WORK) throw unsupported(`flattened file too fragmented to index; rearrange it with \`makedumpfile -R OUT < ${file}\``, { file });
      pos += FLAT_RECORD_HEADER_SIZE + n;
    }
    return new FlatSource(inner, extents, complete, records);
  }

  readInto(buf: Uint8Array, off: number, len: number, pos: number): number {
    const end = Math.min(pos + len, this.size);
    if (pos >= end) return 0;
    const ex = this.extents;
    // first extent with e > pos
    let lo = 0;
    let hi = ex.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ex[mid]!.e <= pos) lo = mid + 1;
      else hi = mid;
    }
    let p = pos;
    for (let i = lo; i < ex.length && p < end; i++) {
      const x = ex[i]!;
      if (x.s > p) {
        const gapEnd = Math.min(x.s, end);
        buf.fill(0, off + (p - pos), off + (gapEnd - pos));
        p = gapEnd;
        if (p >= end) break;
      }
      const n = Math.min(x.e, end) - p;
      const got = this.inner.readInto(buf, off + (p - pos), n, x.f + (p - x.s));
      if (got !== n) throw truncated('flattened record data', { file: this.file, offset: x.f + (p - x.s) });
      p += n;
    }
    if (p < end) buf.fill(0, off + (p - pos), off + (end - pos));
    return end - pos;
  }

  close(): void {
    this.inner.close();
  }
}

/** Insert [s,e) over existing non-overlapping sorted extents (new data wins). Returns the work done. */
function insertExtent(list: Extent[], x: Extent): number {
  const n = list.length;
  // fast path: append at the end
  if (n === 0 || list[n - 1]!.e <= x.s) {
    const last = list[n - 1];
    if (last && last.e === x.s && last.f + (last.e - last.s) === x.f) last.e = x.e;
    else list.push(x);
    return 1;
  }
  // first extent with e > x.s
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.e <= x.s) lo = mid + 1;
    else hi = mid;
  }
  const repl: Extent[] = [];
  let i = lo;
  // keep the part of list[i] before x.s
  for (; i < n && list[i]!.s < x.e; i++) {
    const y = list[i]!;
    if (y.s < x.s) repl.push({ s: y.s, e: x.s, f: y.f });
    if (y.e > x.e) repl.push({ s: x.e, e: y.e, f: y.f + (x.e - y.s) });
  }
  // order: left remainder(s) < x < right remainder(s)
  const left = repl.filter((r) => r.e <= x.s);
  const right = repl.filter((r) => r.s >= x.e);
  list.splice(lo, i - lo, ...left, x, ...right);
  return 1 + (n - lo);
}
