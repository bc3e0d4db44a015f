/**
 * The per-chunk CPU work of the kdump writer: for each dumpable pfn of a chunk, detect a zero page,
 * else compress it (or keep it raw when compression does not help) into one packed buffer.
 * No per-page allocation except what node:zlib allocates per call; no I/O.
 *
 * Runs in the writer's thread or in a compression worker (./worker.ts) on a copy of the chunk.
 */
import type { PageCompressor } from '../codec/index.js';

export interface PackedChunk {
  /** Dumpable pages in the chunk (= number of descriptors). */
  pages: number;
  zeroPages: number;
  /** Per descriptor: data offset relative to the chunk's data start, or -1 for the shared zero page. */
  rel: Float64Array;
  size: Uint32Array;
  flags: Uint8Array;
  /** Data to append, in order; `dataBytes` in total. */
  bufs: Buffer[];
  dataBytes: number;
  /** The scratch the arrays live in; give it back to its pool once the chunk is written. */
  scratch: ChunkScratch;
  /** Called once the chunk's data has been written (returns transfer buffers to the worker pool). */
  release?: () => void;
}

const zeroPages = new Map<number, Buffer>();
function zeroPage(ps: number): Buffer {
  let z = zeroPages.get(ps);
  if (!z) zeroPages.set(ps, (z = Buffer.alloc(ps)));
  return z;
}

export function isZeroPage(buf: Buffer, off: number, ps: number): boolean {
  // cheap rejects first: most non-zero pages differ in the first or last word
  if (buf[off] !== 0 || buf[off + ps - 1] !== 0) return false;
  return buf.compare(zeroPage(ps), 0, ps, off, off + ps) === 0;
}

/**
 * Pack the pages `data[(runStart-base)·ps …]` for the given runs of dumpable pfns (absolute pfns, data
 * starts at pfn `base`). `nPages` is the total length of the runs.
 */
export function packChunk(
  data: Buffer,
  base: number,
  runs: ArrayLike<number>, // flattened [start0, end0, start1, end1, …]
  nPages: number,
  ps: number,
  compressor: PageCompressor | undefined,
  excludeZero: boolean,
  scratch: ChunkScratch = new ChunkScratch(nPages, ps, !!compressor),
): PackedChunk {
  const { rel, size, flags } = scratch;
  flags.fill(0, 0, nPages);
  const bufs: Buffer[] = [];
  let zeros = 0;
  let k = 0;
  let dataBytes = 0;
  if (!compressor) {
    // Raw: reference the caller's buffer; coalesce consecutive non-zero pages into one slice.
    for (let r = 0; r < runs.length; r += 2) {
      let sliceStart = -1;
      for (let pfn = runs[r]!; pfn < runs[r + 1]!; pfn++, k++) {
        const off = (pfn - base) * ps;
        if (excludeZero && isZeroPage(data, off, ps)) {
          if (sliceStart >= 0) {
            bufs.push(data.subarray(sliceStart, off));
            sliceStart = -1;
          }
          rel[k] = -1;
          size[k] = ps;
          zeros++;
          continue;
        }
        if (sliceStart < 0) sliceStart = off;
        rel[k] = dataBytes;
        size[k] = ps;
        dataBytes += ps;
      }
      if (sliceStart >= 0) bufs.push(data.subarray(sliceStart, (runs[r + 1]! - base) * ps));
    }
    return { pages: nPages, zeroPages: zeros, rel, size, flags, bufs, dataBytes, scratch };
  }
  const packed = scratch.packed!;
  const flag = compressor.flag;
  for (let r = 0; r < runs.length; r += 2) {
    for (let pfn = runs[r]!; pfn < runs[r + 1]!; pfn++, k++) {
      const off = (pfn - base) * ps;
      if (excludeZero && isZeroPage(data, off, ps)) {
        rel[k] = -1;
        size[k] = ps;
        zeros++;
        continue;
      }
      const n = compressor.compress(data, off, ps, packed, dataBytes);
      rel[k] = dataBytes;
      if (n > 0) {
        size[k] = n;
        flags[k] = flag;
        dataBytes += n;
      } else {
        data.copy(packed, dataBytes, off, off + ps);
        size[k] = ps;
        dataBytes += ps;
      }
    }
  }
  if (dataBytes > 0) bufs.push(packed.subarray(0, dataBytes));
  return { pages: nPages, zeroPages: zeros, rel, size, flags, bufs, dataBytes, scratch };
}

/**
 * Per-chunk working memory, reused across chunks: allocating fresh multi-MiB buffers per chunk costs
 * a page fault per 4 KiB on first touch, which on a VM is slower than compressing the data.
 */
export class ChunkScratch {
  readonly rel: Float64Array;
  readonly size: Uint32Array;
  readonly flags: Uint8Array;
  /** Output area for compressed pages (only with a codec). */
  readonly packed: Buffer | undefined;
  /** Descriptor batch buffer. */
  readonly desc: Buffer;
  constructor(
    readonly capacity: number,
    ps: number,
    withPacked: boolean,
  ) {
    this.rel = new Float64Array(capacity);
    this.size = new Uint32Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.packed = withPacked ? Buffer.allocUnsafeSlow(capacity * ps) : undefined;
    this.desc = Buffer.allocUnsafeSlow(capacity * 24);
  }
}

/** A small free list of ChunkScratch objects. At most `keep` idle ones are retained. */
export class ScratchPool {
  private readonly free: ChunkScratch[] = [];
  constructor(
    private readonly ps: number,
    private readonly withPacked: boolean,
    private readonly keep = 3,
  ) {}
  acquire(pages: number): ChunkScratch {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const c = this.free[i]!.capacity;
      if (c >= pages && (best < 0 || c < this.free[best]!.capacity)) best = i;
    }
    if (best >= 0) return this.free.splice(best, 1)[0]!;
    return new ChunkScratch(Math.max(pages, 256), this.ps, this.withPacked);
  }
  release(s: ChunkScratch): void {
    this.free.push(s);
    if (this.free.length > this.keep) {
      // drop the smallest
      let min = 0;
      for (let i = 1; i < this.free.length; i++) if (this.free[i]!.capacity < this.free[min]!.capacity) min = i;
      this.free.splice(min, 1);
    }
  }
}
