/**
 * SyntheticMemory: an in-memory MemorySource for synthetic guests (tests, benchmarks, the simulated
 * host). Storage is sparse, in 2 MiB chunks allocated on first write; unwritten RAM reads as zero.
 */
import type { ElfNote, MemorySource, PhysRange } from '@vicover/core';
import { VcvError } from '@vicover/errors';

const CHUNK = 2 * 1024 * 1024;

/**
 * What the synthetic-guest builders (SyntheticKernel, PageTableBuilder) write through: RAM they can
 * fill and read back. SyntheticMemory keeps it in process memory; the simulated host supplies a
 * file-backed one, so guests far larger than the host's memory can be built the same way.
 */
export interface SyntheticRam extends MemorySource {
  readonly notes: ElfNote[];
  write(gpa: number, bytes: Uint8Array): void;
  /** A DataView onto [gpa, gpa + length) for bulk writes; the span must lie within one 2 MiB-aligned chunk. */
  viewOf(gpa: number, length: number): DataView;
  writeU64(gpa: number, v: bigint): void;
  writeU32(gpa: number, v: number): void;
  writeU16(gpa: number, v: number): void;
  writeU8(gpa: number, v: number): void;
  readU64(gpa: number): bigint;
}

export class SyntheticMemory implements SyntheticRam {
  readonly ranges: readonly PhysRange[];
  readonly maxPfn: number;
  notes: ElfNote[] = [];
  private readonly chunks = new Map<number, Uint8Array>();

  constructor(
    ranges: readonly PhysRange[],
    readonly description = 'synthetic guest memory',
  ) {
    const sorted = [...ranges].sort((a, b) => a.start - b.start);
    for (let i = 0; i < sorted.length; i++) {
      const r = sorted[i]!;
      if (r.start % 4096 !== 0 || r.end % 4096 !== 0 || r.end <= r.start || (i > 0 && r.start < sorted[i - 1]!.end)) {
        throw new VcvError('VCV_ERR_IMAGE_LAYOUT', `synthetic range [${r.start}, ${r.end}) is invalid`, {});
      }
    }
    this.ranges = sorted;
    this.maxPfn = sorted.length ? sorted[sorted.length - 1]!.end / 4096 : 0;
  }

  /** Bytes of backing storage allocated so far. */
  get allocatedBytes(): number {
    return this.chunks.size * CHUNK;
  }

  private check(gpa: number, length: number): void {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || length < 0 || gpa < 0) {
      throw new VcvError('VCV_ERR_MEMORY_RANGE', `bad synthetic access at ${gpa} (+${length})`, { gpa, length });
    }
    if (length === 0) return;
    // A read may span touching ranges.
    let cur = gpa;
    const end = gpa + length;
    while (cur < end) {
      const r = this.ranges.find((x) => cur >= x.start && cur < x.end);
      if (!r) {
        throw new VcvError('VCV_ERR_MEMORY_RANGE', `guest-physical 0x${cur.toString(16)} is outside synthetic RAM`, { gpa, length });
      }
      cur = Math.min(end, r.end);
    }
  }

  readSync(gpa: number, buf: Uint8Array, offset: number, length: number): void {
    this.check(gpa, length);
    let done = 0;
    while (done < length) {
      const a = gpa + done;
      const ci = Math.floor(a / CHUNK);
      const inChunk = a - ci * CHUNK;
      const n = Math.min(length - done, CHUNK - inChunk);
      const c = this.chunks.get(ci);
      if (c) buf.set(c.subarray(inChunk, inChunk + n), offset + done);
      else buf.fill(0, offset + done, offset + done + n);
      done += n;
    }
  }

  async read(gpa: number, buf: Uint8Array, offset: number, length: number): Promise<void> {
    this.readSync(gpa, buf, offset, length);
  }

  /** Write bytes (must lie in RAM). */
  write(gpa: number, bytes: Uint8Array): void {
    this.check(gpa, bytes.length);
    let done = 0;
    while (done < bytes.length) {
      const a = gpa + done;
      const ci = Math.floor(a / CHUNK);
      const inChunk = a - ci * CHUNK;
      const n = Math.min(bytes.length - done, CHUNK - inChunk);
      let c = this.chunks.get(ci);
      if (!c) {
        c = new Uint8Array(CHUNK);
        this.chunks.set(ci, c);
      }
      c.set(bytes.subarray(done, done + n), inChunk);
      done += n;
    }
  }

  /**
   * A DataView onto [gpa, gpa + length) for bulk writes, when the span lies in one chunk (always true
   * for ≤ 2 MiB spans aligned to 2 MiB). Allocates the chunk.
   */
  viewOf(gpa: number, length: number): DataView {
    this.check(gpa, length);
    const ci = Math.floor(gpa / CHUNK);
    const inChunk = gpa - ci * CHUNK;
    if (inChunk + length > CHUNK) throw new VcvError('VCV_ERR_INTERNAL', `viewOf crosses a ${CHUNK}-byte chunk`, { gpa, length });
    let c = this.chunks.get(ci);
    if (!c) {
      c = new Uint8Array(CHUNK);
      this.chunks.set(ci, c);
    }
    return new DataView(c.buffer, c.byteOffset + inChunk, length);
  }

  writeU64(gpa: number, v: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
    this.write(gpa, b);
  }
  writeU32(gpa: number, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    this.write(gpa, b);
  }
  writeU16(gpa: number, v: number): void {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, true);
    this.write(gpa, b);
  }
  writeU8(gpa: number, v: number): void {
    this.write(gpa, Uint8Array.of(v));
  }
  readU64(gpa: number): bigint {
    const b = new Uint8Array(8);
    this.readSync(gpa, b, 0, 8);
    return new DataView(b.buffer).getBigUint64(0, true);
  }

  /** True when [gpa, gpa+length) is RAM. */
  contains(gpa: number, length: number): boolean {
    return this.ranges.some((r) => gpa >= r.start && gpa + length <= r.end);
  }

  async close(): Promise<void> {
    this.chunks.clear();
  }
}

/** Hands out physical memory for synthetic kernel structures, bottom-up, aligned. */
export class PhysAllocator {
  constructor(
    private next: number,
    private readonly limit: number,
  ) {}

  alloc(bytes: number, align = 4096): number {
    const pa = Math.ceil(this.next / align) * align;
    if (pa + bytes > this.limit) {
      throw new VcvError('VCV_ERR_INTERNAL', `synthetic allocator out of memory (${bytes} bytes at 0x${pa.toString(16)})`, {});
    }
    this.next = pa + bytes;
    return pa;
  }

  get position(): number {
    return this.next;
  }
}
