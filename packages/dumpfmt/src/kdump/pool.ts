/**
 * A pool of compression workers (worker_threads) for KdumpWriter. One writePages() chunk is split
 * across all workers, so even a caller that awaits every chunk uses every core; the writer's thread
 * only copies pages into the transfer buffers, merges the results and does the I/O.
 *
 * The worker script is the compiled ./compress-worker.js. When this module runs from TypeScript
 * sources (vitest), the compiled worker is taken from the package's dist/ directory; when there is
 * none, `CompressPool.create` returns undefined and the writer compresses in its own thread.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { VcvError } from '@vicover/errors';
import { COMPRESSION_FLAG, type Compression } from '../codec/index.js';
import type { ChunkScratch, PackedChunk } from './pack.js';
import type { WorkerJob, WorkerReply } from './compress-worker.js';

export function compressWorkerUrl(): URL | undefined {
  const here = new URL('./compress-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  const dist = new URL('../../dist/kdump/compress-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(dist))) return dist;
  return undefined;
}

/** Pages per worker job below which splitting a chunk is not worth a message round trip. */
const MIN_JOB_PAGES = 64;

interface Slot {
  worker: Worker;
  busy: number;
}

interface Pending {
  resolve: (r: WorkerReply) => void;
  reject: (e: Error) => void;
  slot: Slot;
}

export class CompressPool {
  private readonly slots: Slot[];
  private readonly pending = new Map<number, Pending>();
  /** Idle transfer buffers (input/output pairs) by capacity in pages. */
  private readonly free: { pages: number; input: ArrayBuffer; output: ArrayBuffer }[] = [];
  private nextId = 1;
  private broken: Error | undefined;
  private closed = false;

  private constructor(
    n: number,
    url: URL,
    readonly codec: Compression,
    readonly excludeZero: boolean,
    readonly ps: number,
  ) {
    this.slots = [];
    for (let i = 0; i < n; i++) {
      const worker = new Worker(url);
      const slot: Slot = { worker, busy: 0 };
      worker.unref();
      worker.on('message', (r: WorkerReply) => this.onReply(r));
      worker.on('error', (e) => this.fail(e));
      worker.on('exit', (code) => {
        if (!this.closed) this.fail(new Error(`compression worker exited with code ${code}`));
      });
      this.slots.push(slot);
    }
  }

  static create(n: number, codec: Compression, excludeZero: boolean, ps: number): CompressPool | undefined {
    if (n <= 0 || codec === 'none') return undefined;
    const url = compressWorkerUrl();
    if (!url) return undefined;
    return new CompressPool(n, url, codec, excludeZero, ps);
  }

  get size(): number {
    return this.slots.length;
  }

  private fail(e: Error): void {
    this.broken ??= e;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(new VcvError('VCV_ERR_INTERNAL', `compression worker failed: ${e.message}`, {}, { cause: e }));
    }
  }

  private onReply(r: WorkerReply): void {
    const p = this.pending.get(r.id);
    if (!p) return;
    this.pending.delete(r.id);
    if (--p.slot.busy === 0) p.slot.worker.unref();
    if (r.error) {
      this.giveBack(r.input, r.output, 0);
      p.reject(new VcvError('VCV_ERR_INTERNAL', `compression worker: ${r.error}`));
    } else p.resolve(r);
  }

  private take(pages: number): { input: ArrayBuffer; output: ArrayBuffer } {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      if (this.free[i]!.pages >= pages && (best < 0 || this.free[i]!.pages < this.free[best]!.pages)) best = i;
    }
    if (best >= 0) return this.free.splice(best, 1)[0]!;
    const cap = Math.max(pages, MIN_JOB_PAGES);
    return { input: new ArrayBuffer(cap * this.ps), output: new ArrayBuffer(cap * this.ps) };
  }

  private giveBack(input: ArrayBuffer, output: ArrayBuffer, _pages: number): void {
    if (this.closed) return;
    this.free.push({ pages: input.byteLength / this.ps, input, output });
    // keep a bounded number of idle pairs (two chunks' worth)
    const keep = 2 * this.slots.length + 2;
    if (this.free.length > keep) {
      let min = 0;
      for (let i = 1; i < this.free.length; i++) if (this.free[i]!.pages < this.free[min]!.pages) min = i;
      this.free.splice(min, 1);
    }
  }

  private run(job: Omit<WorkerJob, 'id'>): Promise<WorkerReply> {
    if (this.broken) return Promise.reject(new VcvError('VCV_ERR_INTERNAL', `compression pool is broken: ${this.broken.message}`));
    // least busy worker
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.busy < slot.busy) slot = s;
    const id = this.nextId++;
    return new Promise<WorkerReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, slot });
      if (slot.busy++ === 0) slot.worker.ref();
      slot.worker.postMessage({ ...job, id }, [job.input, job.output]);
    });
  }

  /**
   * Pack the dumpable pages of a chunk (same result as packChunk) using the workers. The pages are
   * copied out of `data` before this returns, so the caller may reuse `data` right away.
   */
  pack(data: Buffer, base: number, runs: ArrayLike<number>, nPages: number, scratch: ChunkScratch): Promise<PackedChunk> {
    const ps = this.ps;
    const parts = Math.max(1, Math.min(this.slots.length, Math.floor(nPages / MIN_JOB_PAGES)));
    const per = Math.ceil(nPages / parts);
    // Copy pages into per-part input buffers, run by run.
    const jobs: { pages: number; input: ArrayBuffer; output: ArrayBuffer }[] = [];
    let r = 0;
    let pfn = runs.length ? runs[0]! : 0;
    for (let k = 0; k < parts; k++) {
      const pages = Math.min(per, nPages - k * per);
      const bufs = this.take(pages);
      const dst = Buffer.from(bufs.input);
      let filled = 0;
      while (filled < pages) {
        const runEnd = runs[r + 1]!;
        const n = Math.min(pages - filled, runEnd - pfn);
        data.copy(dst, filled * ps, (pfn - base) * ps, (pfn - base + n) * ps);
        filled += n;
        pfn += n;
        if (pfn >= runEnd) {
          r += 2;
          if (r < runs.length) pfn = runs[r]!;
        }
      }
      jobs.push({ pages, input: bufs.input, output: bufs.output }); // not {...bufs}: its `pages` is the capacity
    }
    const replies = jobs.map((j) => this.run({ codec: this.codec, excludeZero: this.excludeZero, ps, pages: j.pages, input: j.input, output: j.output }));
    return Promise.all(replies).then(
      (rs) => {
        const { rel, size, flags } = scratch;
        const flag = COMPRESSION_FLAG[this.codec];
        const bufs: Buffer[] = [];
        let k = 0;
        let dataBytes = 0;
        let zeros = 0;
        if (rs.reduce((a, x) => a + x.sizes.length, 0) !== nPages) throw new VcvError('VCV_ERR_INTERNAL', 'compression workers returned the wrong number of pages');
        for (const rep of rs) {
          const s = rep.sizes;
          for (let i = 0; i < s.length; i++, k++) {
            const v = s[i]!;
            if (v === 0) {
              rel[k] = -1;
              size[k] = ps;
              flags[k] = 0;
              zeros++;
            } else if (v > 0) {
              rel[k] = dataBytes;
              size[k] = v;
              flags[k] = flag;
              dataBytes += v;
            } else {
              rel[k] = dataBytes;
              size[k] = -v;
              flags[k] = 0;
              dataBytes -= v;
            }
          }
          if (rep.used > 0) bufs.push(Buffer.from(rep.output, 0, rep.used));
        }
        return {
          pages: nPages,
          zeroPages: zeros,
          rel,
          size,
          flags,
          bufs,
          dataBytes,
          scratch,
          release: () => {
            for (const rep of rs) this.giveBack(rep.input, rep.output, 0);
          },
        };
      },
      (e) => {
        // give back whatever came home
        void Promise.allSettled(replies).then((all) => {
          for (const a of all) if (a.status === 'fulfilled') this.giveBack(a.value.input, a.value.output, 0);
        });
        throw e;
      },
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    this.free.length = 0;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
