/**
 * Compression worker for KdumpWriter: receives a batch of pages in a transferred ArrayBuffer, detects
 * zero pages, compresses the rest into a second transferred buffer and sends both back with the sizes
 * (0 = zero page, > 0 compressed size, < 0 stored raw with -size bytes). Buffers ping-pong between the
 * threads, so no per-chunk allocation happens on either side.
 */
import { parentPort } from 'node:worker_threads';
import { createCompressor, type Compression, type PageCompressor } from '../codec/index.js';
import { isZeroPage } from './pack.js';

export interface WorkerJob {
  id: number;
  codec: Compression;
  excludeZero: boolean;
  ps: number;
  pages: number;
  input: ArrayBuffer;
  output: ArrayBuffer;
}

export interface WorkerReply {
  id: number;
  sizes: Int32Array;
  used: number;
  input: ArrayBuffer;
  output: ArrayBuffer;
  error?: string;
}

const compressors = new Map<Compression, PageCompressor | undefined>();

parentPort?.on('message', (job: WorkerJob) => {
  const { id, codec, excludeZero, ps, pages, input, output } = job;
  const sizes = new Int32Array(pages);
  let used = 0;
  try {
    let comp = compressors.get(codec);
    if (!compressors.has(codec)) compressors.set(codec, (comp = createCompressor(codec)));
    const src = Buffer.from(input, 0, pages * ps);
    const dst = Buffer.from(output);
    for (let i = 0; i < pages; i++) {
      const off = i * ps;
      if (excludeZero && isZeroPage(src, off, ps)) continue; // size 0
      const n = comp ? comp.compress(src, off, ps, dst, used) : -1;
      if (n > 0) {
        sizes[i] = n;
        used += n;
      } else {
        src.copy(dst, used, off, off + ps);
        sizes[i] = -ps;
        used += ps;
      }
    }
    const reply: WorkerReply = { id, sizes, used, input, output };
    parentPort!.postMessage(reply, [input, output, sizes.buffer as ArrayBuffer]);
  } catch (e) {
    const reply: WorkerReply = { id, sizes, used: 0, input, output, error: e instanceof Error ? e.stack ?? e.message : String(e) };
    parentPort!.postMessage(reply, [input, output]);
  }
});
