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
): PackedChunk {
  const rel = new Float64Array(nPages);
  const size = new Uint32Array(nPages);
  const flags = new Uint8Array(nPages);
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
    return { pages: nPages, zeroPages: zeros, rel, size, flags, bufs, dataBytes };
  }
  const packed = Buffer.allocUnsafe(nPages * ps);
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
  return { pages: nPages, zeroPages: zeros, rel, size, flags, bufs, dataBytes };
}
