/**
 * A file-backed MemorySource: guest-physical segments mapped onto byte ranges of one file, read with
 * positional reads (`fs.read`/`fs.readSync` with a position). Never loads the image; never allocates
 * on behalf of the caller (the caller's buffer is filled in place).
 */
import * as fs from 'node:fs';
import type { ElfNote, MemorySource, PhysRange } from '@vicover/core';
import { VcvError, wrapError } from '@vicover/errors';

export const PAGE_SIZE = 4096;

/** One guest-physical segment: [gpa, gpa + memBytes) of RAM, the first fileBytes backed by the file. */
export interface Segment {
  readonly gpa: number;
  readonly memBytes: number;
  readonly fileOffset: number;
  /** Bytes of the segment present in the file (the rest reads as zero, like an ELF memsz > filesz). */
  readonly fileBytes: number;
}

/** Validates segments (sorted, non-overlapping, integral, below 2^52) and merges touching ranges. */
export function segmentsToRanges(segments: readonly Segment[], what: string): PhysRange[] {
  const ranges: PhysRange[] = [];
  let prevEnd = -1;
  for (const s of segments) {
    const end = s.gpa + s.memBytes;
    if (
      !Number.isSafeInteger(s.gpa) ||
      !Number.isSafeInteger(s.memBytes) ||
      !Number.isSafeInteger(s.fileOffset) ||
      !Number.isSafeInteger(s.fileBytes) ||
      s.gpa < 0 ||
      s.memBytes <= 0 ||
      s.fileBytes < 0 ||
      s.fileBytes > s.memBytes ||
      s.fileOffset < 0 ||
      end > 2 ** 52
    ) {
      throw new VcvError('VCV_ERR_IMAGE_LAYOUT', `${what}: impossible segment gpa=${s.gpa} size=${s.memBytes}`, {
        gpa: s.gpa,
        memBytes: s.memBytes,
      });
    }
    if (s.gpa < prevEnd) {
      throw new VcvError('VCV_ERR_IMAGE_LAYOUT', `${what}: segments overlap or are not sorted at gpa 0x${s.gpa.toString(16)}`, {
        gpa: s.gpa,
      });
    }
    const last = ranges[ranges.length - 1];
    if (last && last.end === s.gpa) ranges[ranges.length - 1] = { start: last.start, end };
    else ranges.push({ start: s.gpa, end });
    prevEnd = end;
  }
  return ranges;
}

/** Low-level positional reader over one descriptor: short reads (EOF, sparse tails) are zero-filled. */
export class PositionalFile {
  private fd: number | null;
  constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
  }

  static open(path: string): PositionalFile {
    try {
      return new PositionalFile(path, fs.openSync(path, 'r'));
    } catch (e) {
      throw wrapError(e, 'VCV_ERR_IO', `cannot open ${path}`, { file: path });
    }
  }

  get size(): number {
    return fs.fstatSync(this.descriptor()).size;
  }

  private descriptor(): number {
    if (this.fd === null) throw new VcvError('VCV_ERR_IO', `${this.path} is closed`, { file: this.path });
    return this.fd;
  }

  readSync(position: number, buf: Uint8Array, offset: number, length: number): void {
    const fd = this.descriptor();
    let done = 0;
    while (done < length) {
      let n: number;
      try {
        n = fs.readSync(fd, buf, offset + done, length - done, position + done);
      } catch (e) {
        throw wrapError(e, 'VCV_ERR_IO', `read of ${this.path} at ${position + done} failed`, { file: this.path });
      }
      if (n === 0) {
        buf.fill(0, offset + done, offset + length);
        return;
      }
      done += n;
    }
  }

  async read(position: number, buf: Uint8Array, offset: number, length: number): Promise<void> {
    const fd = this.descriptor();
    let done = 0;
    while (done < length) {
      const n = await new Promise<number>((resolve, reject) => {
        fs.read(fd, buf, offset + done, length - done, position + done, (err, bytes) => {
          if (err) reject(wrapError(err, 'VCV_ERR_IO', `read of ${this.path} at ${position + done} failed`, { file: this.path }));
          else resolve(bytes);
        });
      });
      if (n === 0) {
        buf.fill(0, offset + done, offset + length);
        return;
      }
      done += n;
    }
  }

  async close(): Promise<void> {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
  }
}

function checkArgs(gpa: number, buf: Uint8Array, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(gpa) ||
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    gpa < 0 ||
    offset < 0 ||
    length < 0 ||
    offset + length > buf.length
  ) {
    throw new VcvError('VCV_ERR_MEMORY_RANGE', `bad read request gpa=${gpa} offset=${offset} length=${length}`, {
      gpa,
      length,
    });
  }
}

/**
 * A MemorySource over segments of one file. A read may span touching segments; any byte outside
 * them is VCV_ERR_MEMORY_RANGE.
 */
export class SegmentedFileSource implements MemorySource {
  readonly ranges: readonly PhysRange[];
  readonly maxPfn: number;
  private readonly segs: readonly Segment[];

  constructor(
    readonly description: string,
    private readonly file: PositionalFile,
    segments: readonly Segment[],
    readonly notes: readonly ElfNote[] = [],
  ) {
    this.ranges = segmentsToRanges(segments, description);
    this.segs = segments;
    const last = this.ranges[this.ranges.length - 1];
    this.maxPfn = last ? Math.ceil(last.end / PAGE_SIZE) : 0;
  }

  /** The segment holding gpa, or -1. */
  private find(gpa: number): number {
    let lo = 0;
    let hi = this.segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = this.segs[mid]!;
      if (gpa < s.gpa) hi = mid - 1;
      else if (gpa >= s.gpa + s.memBytes) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /** Splits [gpa, gpa+length) into file pieces; calls back with (filePos | -1 for zero fill, bufOffset, len). */
  private plan(gpa: number, offset: number, length: number, each: (pos: number, off: number, len: number) => void): void {
    let i = this.find(gpa);
    let cur = gpa;
    let off = offset;
    let left = length;
    while (left > 0) {
      const s = i >= 0 ? this.segs[i] : undefined;
      if (!s || cur < s.gpa || cur >= s.gpa + s.memBytes) {
        throw new VcvError(
          'VCV_ERR_MEMORY_RANGE',
          `guest-physical 0x${cur.toString(16)} (read of ${length} bytes at 0x${gpa.toString(16)}) is outside the RAM of ${this.description}`,
          { gpa, length },
        );
      }
      const inSeg = cur - s.gpa;
      const n = Math.min(left, s.memBytes - inSeg);
      const backed = Math.max(0, Math.min(n, s.fileBytes - inSeg));
      if (backed > 0) each(s.fileOffset + inSeg, off, backed);
      if (n > backed) each(-1, off + backed, n - backed);
      cur += n;
      off += n;
      left -= n;
      i += 1;
    }
  }

  get backingFile(): string {
    return this.file.path;
  }

  fileExtents(gpa: number, length: number): [number, number][] {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || gpa < 0 || length < 0) {
      throw new VcvError('VCV_ERR_MEMORY_RANGE', `bad extent request gpa=${gpa} length=${length}`, { gpa, length });
    }
    const out: [number, number][] = [];
    this.plan(gpa, 0, length, (pos, _off, len) => {
      const last = out[out.length - 1];
      if (last && ((pos < 0 && last[0] < 0) || (pos >= 0 && last[0] >= 0 && last[0] + last[1] === pos))) last[1] += len;
      else out.push([pos, len]);
    });
    return out;
  }

  readSync(gpa: number, buf: Uint8Array, offset: number, length: number): void {
    checkArgs(gpa, buf, offset, length);
    this.plan(gpa, offset, length, (pos, off, len) => {
      if (pos < 0) buf.fill(0, off, off + len);
      else this.file.readSync(pos, buf, off, len);
    });
  }

  async read(gpa: number, buf: Uint8Array, offset: number, length: number): Promise<void> {
    checkArgs(gpa, buf, offset, length);
    const pieces: [number, number, number][] = [];
    this.plan(gpa, offset, length, (pos, off, len) => pieces.push([pos, off, len]));
    for (const [pos, off, len] of pieces) {
      if (pos < 0) buf.fill(0, off, off + len);
      else await this.file.read(pos, buf, off, len);
    }
  }

  close(): Promise<void> {
    return this.file.close();
  }
}
