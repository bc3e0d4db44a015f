/**
 * A pfn bitmap in kdump bit order: bit n of byte k is pfn 8k+n (LSB first), exactly the on-disk layout
 * of the two kdump bitmaps, so `bytes` can be written out as is.
 *
 * Storage is a Uint32Array; the byte view `bytes` aliases it. On a little-endian host (every host Node
 * runs on that we support; checked at load) bit b of word w is pfn 32w+b, so counting and run
 * iteration work a word (32 pfns) at a time. Bits at and above `size` are always zero.
 *
 * Sizes are plain numbers: up to 2^34 bits (a 2 GiB bitmap, a 64 TiB guest with 4 KiB pages).
 */
import { endianness } from 'node:os';

if (endianness() !== 'LE') {
  throw new Error('@vicover/dumpfmt needs a little-endian host');
}

/** The largest bitmap this package builds (bits). */
export const MAX_BITMAP_BITS = 2 ** 34;

export function popcount32(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** Index of the lowest set bit of a non-zero 32-bit value. */
function ctz32(x: number): number {
  return 31 - Math.clz32(x & -x);
}

export class Bitmap {
  /** Number of bits. */
  readonly size: number;
  /** The words; bits past `size` are zero. Exposed for fast internal loops (rank index, writers). */
  readonly words: Uint32Array;
  /** ceil(size/8) bytes in kdump order, aliasing `words`. */
  readonly bytes: Uint8Array;

  constructor(nbits: number) {
    if (!Number.isInteger(nbits) || nbits < 0 || nbits > MAX_BITMAP_BITS) {
      throw new RangeError(`bitmap size ${nbits} must be an integer in [0, 2^34]`);
    }
    this.size = nbits;
    this.words = new Uint32Array(Math.ceil(nbits / 32));
    this.bytes = new Uint8Array(this.words.buffer, 0, Math.ceil(nbits / 8));
  }

  /** Copy `bytes` (kdump order) into a new bitmap of `nbits` bits (default: 8 × bytes.length). Extra bytes are ignored, missing ones are zero. */
  static from(bytes: Uint8Array, nbits: number = bytes.length * 8): Bitmap {
    const bm = new Bitmap(nbits);
    const n = Math.min(bytes.length, bm.bytes.length);
    bm.bytes.set(bytes.subarray(0, n));
    bm.maskTail();
    return bm;
  }

  clone(): Bitmap {
    const bm = new Bitmap(this.size);
    bm.words.set(this.words);
    return bm;
  }

  private maskTail(): void {
    const rem = this.size & 31;
    if (rem !== 0) this.words[this.words.length - 1]! &= (1 << rem) - 1;
  }

  private check(i: number): void {
    if (!(i >= 0 && i < this.size && Number.isInteger(i))) throw new RangeError(`bit ${i} outside bitmap of ${this.size} bits`);
  }

  private checkRange(start: number, end: number): void {
    if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= this.size)) {
      throw new RangeError(`range [${start}, ${end}) outside bitmap of ${this.size} bits`);
    }
  }

  get(i: number): boolean {
    if (!(i >= 0 && i < this.size)) return false;
    return ((this.words[i >>> 5]! >>> (i & 31)) & 1) === 1;
  }

  set(i: number): this {
    this.check(i);
    this.words[i >>> 5]! |= 1 << (i & 31);
    return this;
  }

  clear(i: number): this {
    this.check(i);
    this.words[i >>> 5]! &= ~(1 << (i & 31));
    return this;
  }

  /** Set bits [start, end). */
  setRange(start: number, end: number): this {
    this.checkRange(start, end);
    this.fill(start, end, true);
    return this;
  }

  /** Clear bits [start, end). */
  clearRange(start: number, end: number): this {
    this.checkRange(start, end);
    this.fill(start, end, false);
    return this;
  }

  private fill(start: number, end: number, value: boolean): void {
    if (start >= end) return;
    const w = this.words;
    const ws = Math.floor(start / 32);
    const we = Math.floor((end - 1) / 32);
    const headMask = (0xffffffff << (start & 31)) >>> 0;
    const tailMask = (end & 31) === 0 ? 0xffffffff : ((1 << (end & 31)) - 1) >>> 0;
    if (ws === we) {
      const m = headMask & tailMask;
      w[ws] = value ? w[ws]! | m : w[ws]! & ~m;
      return;
    }
    w[ws] = value ? w[ws]! | headMask : w[ws]! & ~headMask;
    w.fill(value ? 0xffffffff : 0, ws + 1, we);
    w[we] = value ? w[we]! | tailMask : w[we]! & ~tailMask;
  }

  /** Number of set bits in [start, end). */
  count(start = 0, end = this.size): number {
    start = Math.max(0, start);
    end = Math.min(this.size, end);
    if (start >= end) return 0;
    const w = this.words;
    const ws = Math.floor(start / 32);
    const we = Math.floor((end - 1) / 32);
    const headMask = (0xffffffff << (start & 31)) >>> 0;
    const tailMask = (end & 31) === 0 ? 0xffffffff : ((1 << (end & 31)) - 1) >>> 0;
    if (ws === we) return popcount32(w[ws]! & headMask & tailMask);
    let n = popcount32(w[ws]! & headMask) + popcount32(w[we]! & tailMask);
    for (let i = ws + 1; i < we; i++) {
      const x = w[i]!;
      if (x === 0) continue;
      n += x === 0xffffffff ? 32 : popcount32(x);
    }
    return n;
  }

  /**
   * The first set bit at or after `from` and before `limit` (default: the end), or -1. The scan stops
   * at `limit`, so looking at a small window of a large bitmap costs the window, not the rest.
   */
  nextSet(from: number, limit = this.size): number {
    if (from < 0) from = 0;
    limit = Math.min(limit, this.size);
    if (from >= limit) return -1;
    const w = this.words;
    let i = Math.floor(from / 32);
    let x = (w[i]! & (0xffffffff << (from & 31))) >>> 0;
    const n = Math.ceil(limit / 32);
    while (x === 0) {
      if (++i >= n) return -1;
      x = w[i]!;
    }
    const r = i * 32 + ctz32(x);
    return r < limit ? r : -1;
  }

  /** The first clear bit at or after `from` and before `limit` (default: the end), or `limit` when there is none. */
  nextClear(from: number, limit = this.size): number {
    if (from < 0) from = 0;
    limit = Math.min(limit, this.size);
    if (from >= limit) return limit;
    const w = this.words;
    let i = Math.floor(from / 32);
    let x = (~w[i]! & (0xffffffff << (from & 31))) >>> 0;
    const n = Math.ceil(limit / 32);
    while (x === 0) {
      if (++i >= n) return limit;
      x = ~w[i]! >>> 0;
    }
    return Math.min(limit, i * 32 + ctz32(x));
  }

  /** Runs of set bits inside [start, end), as half-open `[runStart, runEnd)` pairs in ascending order. */
  *runs(start = 0, end = this.size): Generator<[number, number]> {
    end = Math.min(end, this.size);
    let i = this.nextSet(start, end);
    while (i >= 0) {
      const j = this.nextClear(i, end);
      yield [i, j];
      i = this.nextSet(j, end);
    }
  }

  /** Visit runs without allocating a generator or arrays (hot paths). Costs O(end − start), whatever lies beyond. */
  forEachRun(start: number, end: number, fn: (runStart: number, runEnd: number) => void): void {
    end = Math.min(end, this.size);
    let i = this.nextSet(start, end);
    while (i >= 0) {
      const j = this.nextClear(i, end);
      fn(i, j);
      i = this.nextSet(j, end);
    }
  }

  private sameSize(other: Bitmap): void {
    if (other.size !== this.size) throw new RangeError(`bitmap sizes differ: ${this.size} vs ${other.size}`);
  }

  /** this &= other (in place). */
  and(other: Bitmap): this {
    this.sameSize(other);
    const a = this.words;
    const b = other.words;
    for (let i = 0; i < a.length; i++) a[i]! &= b[i]!;
    return this;
  }

  /** this &= ~other (in place). */
  andNot(other: Bitmap): this {
    this.sameSize(other);
    const a = this.words;
    const b = other.words;
    for (let i = 0; i < a.length; i++) a[i]! &= ~b[i]!;
    return this;
  }

  /** this |= other (in place). */
  or(other: Bitmap): this {
    this.sameSize(other);
    const a = this.words;
    const b = other.words;
    for (let i = 0; i < a.length; i++) a[i]! |= b[i]!;
    return this;
  }

  /** True when every bit set here is also set in `other` (sizes may differ; bits past other.size count as clear). */
  isSubsetOf(other: Bitmap): boolean {
    const a = this.words;
    const b = other.words;
    for (let i = 0; i < a.length; i++) {
      const x = a[i]!;
      if (x !== 0 && (x & ~(b[i] ?? 0)) !== 0) return false;
    }
    return true;
  }

  equals(other: Bitmap): boolean {
    if (other.size !== this.size) return false;
    const a = this.words;
    const b = other.words;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
}

/**
 * Rank queries (number of set bits before a position) in O(64 words) using a table of cumulative counts
 * per 2048 bits. Used to find a pfn's page descriptor: its index is rank(pfn) in the dump bitmap.
 * The bitmap must not change after the index is built.
 */
export class RankIndex {
  private readonly cum: Float64Array;
  readonly total: number;
  static readonly BLOCK_WORDS = 64;

  constructor(readonly bitmap: Bitmap) {
    const w = bitmap.words;
    const nb = Math.ceil(w.length / RankIndex.BLOCK_WORDS) + 1;
    const cum = new Float64Array(nb);
    let acc = 0;
    for (let b = 0; b < nb - 1; b++) {
      cum[b] = acc;
      const end = Math.min(w.length, (b + 1) * RankIndex.BLOCK_WORDS);
      for (let i = b * RankIndex.BLOCK_WORDS; i < end; i++) {
        const x = w[i]!;
        if (x !== 0) acc += x === 0xffffffff ? 32 : popcount32(x);
      }
    }
    cum[nb - 1] = acc;
    this.cum = cum;
    this.total = acc;
  }

  /** Number of set bits in [0, pos). */
  rank(pos: number): number {
    if (pos <= 0) return 0;
    if (pos >= this.bitmap.size) return this.total;
    const wi = Math.floor(pos / 32);
    const b = Math.floor(wi / RankIndex.BLOCK_WORDS);
    const w = this.bitmap.words;
    let n = this.cum[b]!;
    for (let i = b * RankIndex.BLOCK_WORDS; i < wi; i++) {
      const x = w[i]!;
      if (x !== 0) n += x === 0xffffffff ? 32 : popcount32(x);
    }
    const rem = pos & 31;
    if (rem !== 0) n += popcount32(w[wi]! & ((1 << rem) - 1));
    return n;
  }
}
