/**
 * Compression worker for KdumpWriter: receives a batch of pages — in a transferred ArrayBuffer, or as
 * segments of the caller's SharedArrayBuffer, read in place — detects zero pages, compresses the rest
 * into a second transferred buffer and sends it back with the sizes (0 = zero page, > 0 compressed
 * size, < 0 stored raw with -size bytes). Buffers ping-pong between the threads, so no per-chunk
 * allocation happens on either side. zlib goes through the native packer when it is built.
 */
import { parentPort } from 'node:worker_threads';
import { createCompressor, ZLIB_LEVEL, type Compression, type PageCompressor } from '../codec/index.js';
import { nativePacker } from '../native-pack.js';
import { isZeroPage } from './pack.js';

export interface WorkerJob {
  id: number;
  codec: Compression;
  excludeZero: boolean;
  ps: number;
  pages: number;
  /** The pages, copied in and transferred; or absent when they are read from `shared` in place. */
  input?: ArrayBuffer;
  /** The caller's memory holding the pages (no copy): with `segs`, flat [byte offset, pages, …]. */
  shared?: SharedArrayBuffer;
  segs?: number[];
  output: ArrayBuffer;
}

export interface WorkerReply {
  id: number;
  sizes: Int32Array;
  used: number;
  input?: ArrayBuffer;
  output: ArrayBuffer;
  error?: string;
}

const compressors = new Map<Compression, PageCompressor | undefined>();

parentPort?.on('message', (job: WorkerJob) => {
  const { id, codec, excludeZero, ps, pages, input, shared, output } = job;
  const sizes = new Int32Array(pages);
  let used = 0;
  const transfer = (): ArrayBuffer[] => (input ? [input, output] : [output]);
  try {
    let comp = compressors.get(codec);
    if (!compressors.has(codec)) compressors.set(codec, (comp = createCompressor(codec)));
    const dst = Buffer.from(output);
    const native = codec === 'zlib' ? nativePacker() : null;
    // (source, byte offset, pages) segments, in descriptor order
    const segs: [Buffer, number, number][] = [];
    if (input) segs.push([Buffer.from(input, 0, pages * ps), 0, pages]);
    else if (shared && job.segs) {
      const src = Buffer.from(shared);
      for (let i = 0; i < job.segs.length; i += 2) segs.push([src, job.segs[i]!, job.segs[i + 1]!]);
    }
    let k = 0;
    for (const [src, at, n] of segs) {
      if (k + n > pages) throw new Error(`job segments hold more than ${pages} pages`);
      if (native) {
        used += native.packPages(src, at, n, ps, dst.subarray(used), sizes.subarray(k, k + n), excludeZero, ZLIB_LEVEL);
        k += n;
        continue;
      }
      for (let i = 0; i < n; i++, k++) {
        const off = at + i * ps;
        if (excludeZero && isZeroPage(src, off, ps)) continue; // size 0
        const c = comp ? comp.compress(src, off, ps, dst, used) : -1;
        if (c > 0) {
          sizes[k] = c;
          used += c;
        } else {
          src.copy(dst, used, off, off + ps);
          sizes[k] = -ps;
          used += ps;
        }
      }
    }
    if (k !== pages) throw new Error(`job segments hold ${k} pages, not ${pages}`);
    const reply: WorkerReply = { id, sizes, used, input, output };
    parentPort!.postMessage(reply, [...transfer(), sizes.buffer as ArrayBuffer]);
  } catch (e) {
    const reply: WorkerReply = { id, sizes, used: 0, input, output, error: e instanceof Error ? e.stack ?? e.message : String(e) };
    parentPort!.postMessage(reply, transfer());
  }
});
