/**
 * The simulated host's disk: one device of a given bandwidth shared by streams (the dump writer, each
 * recovery VM). A fluid model: every stream with a request in flight gets a max-min fair share of the
 * bandwidth, capped by its own limit (a recovery VM's throttle); a stream that needs less leaves the
 * rest to the others (work conserving, like a fair-queueing block scheduler). Requests of one stream
 * are served in order. Time is the process clock (`performance.now`, timers), so the time warp
 * (warp.ts) compresses the waits.
 */
import { VcvError } from '@vicover/errors';

interface Req {
  readonly bytes: number;
  remaining: number;
  readonly write: boolean;
  resolve(): void;
  reject(e: Error): void;
  /** Settles when the request is transferred. */
  done?: Promise<void>;
}

interface Stream {
  readonly name: string;
  cap: number;
  rate: number;
  readonly queue: Req[];
  readBytes: number;
  writeBytes: number;
  readOps: number;
  writeOps: number;
  /** Bytes of small requests completed at once and not yet paid for (added to the next request). */
  debt: number;
}

export interface StreamStats {
  /** Bytes transferred so far (including the part of the request in flight). */
  readonly readBytes: number;
  readonly writeBytes: number;
  readonly readOps: number;
  readonly writeOps: number;
}

/** Below this many bytes a request is considered done (floating-point crumbs). */
const EPS = 1e-6;
/** Requests that take less than this at the stream's share are completed at once (and paid later). */
const SMALL_SECONDS = 0.001;

export class ModelledDisk {
  private readonly streams = new Map<string, Stream>();
  private last: number;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private busyMs = 0;

  constructor(
    readonly bandwidthBps: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(bandwidthBps > 0) || !Number.isFinite(bandwidthBps)) throw new VcvError('VCV_ERR_USAGE', `simhost: disk bandwidth ${bandwidthBps} B/s must be a positive number`);
    this.last = this.now();
  }

  private stream(name: string): Stream {
    let s = this.streams.get(name);
    if (!s) {
      s = { name, cap: Infinity, rate: 0, queue: [], readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0, debt: 0 };
      this.streams.set(name, s);
    }
    return s;
  }

  /** Move a request of `bytes` through the device; resolves when the model has transferred it. */
  transfer(stream: string, bytes: number, write = true): Promise<void> {
    if (!(bytes > 0)) return Promise.resolve();
    this.advance();
    const s = this.stream(stream);
    if (write) s.writeOps++;
    else s.readOps++;
    // A request shorter than the timer resolution (1 ms) completes at once; the stream pays for it
    // with its next request, so the average rate stays exact.
    if (s.queue.length === 0 && bytes + s.debt < this.shareOf(s) * SMALL_SECONDS) {
      s.debt += bytes;
      if (write) s.writeBytes += bytes;
      else s.readBytes += bytes;
      return Promise.resolve();
    }
    const remaining = bytes + s.debt;
    s.debt = 0;
    let req!: Req;
    const p = new Promise<void>((resolve, reject) => {
      req = { bytes, remaining, write, resolve, reject };
      s.queue.push(req);
    });
    req.done = p;
    this.reschedule();
    return p;
  }

  /**
   * A write-back write, as through a page cache: queued for the device at once; resolves at once
   * unless the stream then has more than `limitBytes` queued (dirty), and then when it is back under
   * the limit. `drain()` is the fsync.
   */
  async writeBack(stream: string, bytes: number, limitBytes: number): Promise<void> {
    const p = this.transfer(stream, bytes, true);
    p.catch(() => undefined);
    const s = this.streams.get(stream);
    if (!s) return p;
    // Wait for the oldest queued request after whose completion at most limitBytes remain.
    let after = 0;
    for (let i = s.queue.length - 1; i >= 0; i--) {
      const r = s.queue[i]!;
      if (after + r.remaining > limitBytes) {
        await r.done;
        return;
      }
      after += r.remaining;
    }
  }

  /** Resolves when every request of the stream queued so far is transferred (its fsync). */
  async drain(stream: string): Promise<void> {
    this.advance();
    const last = this.streams.get(stream)?.queue.at(-1);
    if (last) await last.done;
  }

  /** Bytes a stream still has queued. */
  queuedBytes(stream: string): number {
    this.advance();
    let n = 0;
    for (const r of this.streams.get(stream)?.queue ?? []) n += r.remaining;
    return n;
  }

  /** Limit a stream (bytes per second; Infinity: no limit). */
  setCap(stream: string, bps: number): void {
    this.advance();
    this.stream(stream).cap = bps > 0 ? bps : 1;
    this.reschedule();
  }

  cap(stream: string): number {
    return this.streams.get(stream)?.cap ?? Infinity;
  }

  stats(stream: string): StreamStats {
    this.advance();
    this.reschedule();
    const s = this.streams.get(stream);
    if (!s) return { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 };
    const head = s.queue[0];
    const partial = head ? head.bytes - head.remaining : 0;
    return {
      readBytes: s.readBytes + (head && !head.write ? partial : 0),
      writeBytes: s.writeBytes + (head && head.write ? partial : 0),
      readOps: s.readOps,
      writeOps: s.writeOps,
    };
  }

  /** Current rate of each active stream (bytes/s), for progress displays. */
  rates(): Record<string, number> {
    this.advance();
    this.reschedule();
    const out: Record<string, number> = {};
    for (const s of this.streams.values()) out[s.name] = s.queue.length ? s.rate : 0;
    return out;
  }

  /** Seconds the device has been busy (any stream in flight). */
  get busySeconds(): number {
    this.advance();
    return this.busyMs / 1000;
  }

  /** Fail every request of a stream (its VM stopped). */
  drop(stream: string, why: string): void {
    this.advance();
    const s = this.streams.get(stream);
    if (s) for (const r of s.queue.splice(0)) r.reject(new VcvError('VCV_ERR_ABORTED', why));
    this.streams.delete(stream);
    this.reschedule();
  }

  /** The rate `s` would get now if it had a request in flight. */
  private shareOf(s: Stream): number {
    let active = 1;
    for (const o of this.streams.values()) if (o !== s && o.queue.length > 0) active++;
    return Math.min(s.cap, this.bandwidthBps / active);
  }

  /** Water-filling: max-min fair shares with per-stream caps. */
  private assignRates(): void {
    const active = [...this.streams.values()].filter((s) => s.queue.length > 0);
    for (const s of this.streams.values()) s.rate = 0;
    active.sort((a, b) => a.cap - b.cap);
    let left = this.bandwidthBps;
    for (let i = 0; i < active.length; i++) {
      const share = left / (active.length - i);
      const s = active[i]!;
      s.rate = Math.min(s.cap, share);
      left -= s.rate;
    }
  }

  /** Assign the current rates; seconds until the first request in flight completes (Infinity: none). */
  private nextCompletion(): number {
    this.assignRates();
    let next = Infinity;
    for (const s of this.streams.values()) {
      const h = s.queue[0];
      if (h && s.rate > 0) next = Math.min(next, h.remaining / s.rate);
    }
    return next;
  }

  /** Progress every active request up to now (exactly, completing requests as they finish). */
  private advance(): void {
    const now = this.now();
    let dt = (now - this.last) / 1000;
    this.last = now;
    while (dt > 0) {
      const next = this.nextCompletion();
      if (next === Infinity) return;
      const step = Math.min(dt, next);
      this.busyMs += step * 1000;
      for (const s of this.streams.values()) {
        const h = s.queue[0];
        if (!h || s.rate <= 0) continue;
        h.remaining -= s.rate * step;
        if (h.remaining <= EPS) {
          s.queue.shift();
          if (h.write) s.writeBytes += h.bytes;
          else s.readBytes += h.bytes;
          h.resolve();
        }
      }
      dt -= step;
    }
  }

  private reschedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const next = this.nextCompletion();
    if (next === Infinity) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.advance();
      this.reschedule();
    }, next * 1000);
  }
}
