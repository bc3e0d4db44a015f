/**
 * A pool of compression workers (worker_threads) for KdumpWriter. One writePages() chunk is split
 * across all workers, so even a caller that awaits every chunk uses every core; the writer's thread
 * only copies pages into the transfer buffers, merges the results and does the I/O.
 *
 * The worker script is the compiled dist/kdump/compress-worker.js, found from wherever this module
 * runs: dist/kdump/pool.js, the package bundle dist/index.bundle.js, or (vitest) the TypeScript
 * sources. When there is none, `CompressPool.create` returns undefined and the writer compresses in
 * its own thread.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { VcvError } from '@vicover/errors';
import { COMPRESSION_FLAG, type Compression } from '../codec/index.js';
import type { ChunkScratch, PackedChunk } from './pack.js';
import type { WorkerJob, WorkerReply } from './compress-worker.js';

export function compressWorkerUrl(): URL | undefined {
  // Compiled: this file is dist/kdump/pool.js, or part of the package bundle dist/index.bundle.js
  // (scripts/bundle-packages.mjs). From TypeScript sources: src/kdump/pool.ts.
  for (const rel of ['./compress-worker.js', './kdump/compress-worker.js', '../../dist/kdump/compress-worker.js']) {
    const url = new URL(rel, import.meta.url);
    if (url.pathname.endsWith('/dist/kdump/compress-worker.js') && existsSync(fileURLToPath(url))) return url;
  }
  return undefined;
}

/** Pages per worker job below which splitting a chunk is not worth a message round trip. */
const MIN_JOB_PAGES = 64;
/** Largest job: 4 MiB of input. */
const JOB_PAGES = 1024;

interface Slot {
  worker: Worker;
  busy: number;
}

interface Pending {
  resolve: (r: WorkerReply) => void;
  reject: (e: Error) => void;
  slot: Slot;
  /** The input buffer of a job that read the caller's shared memory instead (not transferred). */
  home?: ArrayBuffer;
}

/** A job's reply with its input buffer back in hand (transferred back, or never sent). */
type Reply = WorkerReply & { input: ArrayBuffer };

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

  /** True once a worker died or failed to start; the writer then compresses in its own thread. */
  get isBroken(): boolean {
    return this.broken !== undefined;
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
    const input = r.input ?? p.home!;
    if (r.error) {
      this.giveBack(input, r.output);
      p.reject(new VcvError('VCV_ERR_INTERNAL', `compression worker: ${r.error}`));
    } else p.resolve({ ...r, input });
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

  private giveBack(input: ArrayBuffer, output: ArrayBuffer): void {
    if (this.closed) return;
    this.free.push({ pages: input.byteLength / this.ps, input, output });
    // keep a bounded number of idle pairs (a few windows' worth)
    const keep = 6 * this.slots.length;
    if (this.free.length > keep) {
      let min = 0;
      for (let i = 1; i < this.free.length; i++) if (this.free[i]!.pages < this.free[min]!.pages) min = i;
      this.free.splice(min, 1);
    }
  }

  private run(job: Omit<WorkerJob, 'id'>, home?: ArrayBuffer): Promise<Reply> {
    if (this.broken) return Promise.reject(new VcvError('VCV_ERR_INTERNAL', `compression pool is broken: ${this.broken.message}`));
    // least busy worker
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.busy < slot.busy) slot = s;
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (r: WorkerReply) => void, reject, slot, home });
      if (slot.busy++ === 0) slot.worker.ref();
      slot.worker.postMessage({ ...job, id }, job.input ? [job.input, job.output] : [job.output]);
    });
  }

  /**
   * Pack the dumpable pages of a chunk (same result as packChunk) using the workers. The chunk is cut
   * into jobs of at most JOB_PAGES pages; at most two jobs per worker are in flight, so the transfer
   * buffers stay few and small (and warm: fresh memory costs a page fault per 4 KiB on first touch).
   * Results are copied into `scratch.packed`, so the chunk is written with one write. `data` must stay
   * unchanged until the returned promise settles. When `data` lies in a SharedArrayBuffer the workers
   * read the pages where they are; otherwise they are copied into the job's transfer buffer.
   */
  pack(data: Buffer, base: number, runs: ArrayLike<number>, nPages: number, scratch: ChunkScratch): Promise<PackedChunk> {
    const ps = this.ps;
    const jobPages = Math.max(MIN_JOB_PAGES, Math.min(JOB_PAGES, Math.ceil(nPages / this.slots.length)));
    const nJobs = Math.ceil(nPages / jobPages);
    const window = 2 * this.slots.length;
    const { rel, size, flags } = scratch;
    const packed = scratch.packed!;
    const flag = COMPRESSION_FLAG[this.codec];
    // cursor over the runs: pages are copied into job inputs in order
    let r = 0;
    let pfn = runs.length ? runs[0]! : 0;
    const shared = data.buffer instanceof SharedArrayBuffer ? data.buffer : undefined;
    /** Copy the job's next `pages` pages into `dst`, or (shared memory) list where they are. */
    const fill = (pages: number, dst: Buffer | null, segs: number[]): void => {
      let filled = 0;
      while (filled < pages) {
        const runEnd = runs[r + 1]!;
        const n = Math.min(pages - filled, runEnd - pfn);
        if (dst) data.copy(dst, filled * ps, (pfn - base) * ps, (pfn - base + n) * ps);
        else segs.push(data.byteOffset + (pfn - base) * ps, n);
        filled += n;
        pfn += n;
        if (pfn >= runEnd) {
          r += 2;
          if (r < runs.length) pfn = runs[r]!;
        }
      }
    };
    // results are merged in job order as they become available
    const replies: (Reply | undefined)[] = new Array(nJobs);
    let merged = 0; // jobs merged so far
    let k = 0; // descriptor index
    let dataBytes = 0;
    let zeros = 0;
    const mergeReady = (): void => {
      while (merged < nJobs && replies[merged]) {
        const rep = replies[merged]!;
        replies[merged] = undefined;
        const sz = rep.sizes;
        for (let i = 0; i < sz.length; i++, k++) {
          const v = sz[i]!;
          if (v === 0) {
            rel[k] = -1;
            size[k] = ps;
            flags[k] = 0;
            zeros++;
          } else {
            rel[k] = dataBytes;
            size[k] = v > 0 ? v : -v;
            flags[k] = v > 0 ? flag : 0;
            dataBytes += v > 0 ? v : -v;
          }
        }
        Buffer.from(rep.output, 0, rep.used).copy(packed, dataBytes - rep.used);
        this.giveBack(rep.input, rep.output);
        merged++;
      }
    };
    return new Promise<PackedChunk>((resolve, reject) => {
      let next = 0;
      let inflight = 0;
      let failed = false;
      const launch = (): void => {
        while (!failed && next < nJobs && inflight < window) {
          const j = next++;
          const pages = Math.min(jobPages, nPages - j * jobPages);
          const bufs = this.take(pages);
          const segs: number[] = [];
          fill(pages, shared ? null : Buffer.from(bufs.input), segs);
          inflight++;
          const job = { codec: this.codec, excludeZero: this.excludeZero, ps, pages, output: bufs.output };
          (shared ? this.run({ ...job, shared, segs }, bufs.input) : this.run({ ...job, input: bufs.input })).then(
            (rep) => {
              inflight--;
              if (failed) return this.giveBack(rep.input, rep.output);
              if (rep.sizes.length !== pages) {
                failed = true;
                return reject(new VcvError('VCV_ERR_INTERNAL', 'a compression worker returned the wrong number of pages'));
              }
              replies[j] = rep;
              mergeReady();
              if (merged === nJobs) {
                resolve({ pages: nPages, zeroPages: zeros, rel, size, flags, bufs: dataBytes ? [packed.subarray(0, dataBytes)] : [], dataBytes, scratch });
              } else launch();
            },
            (e: Error) => {
              inflight--;
              failed = true;
              reject(e);
            },
          );
        }
      };
      try {
        launch();
      } catch (e) {
        failed = true;
        reject(e);
      }
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.free.length = 0;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
