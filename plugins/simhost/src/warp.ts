/**
 * Modelled time for a whole process: a clock that runs with real time while the process works and
 * skips ahead while it only waits for a timer. The simulated host's disk, boots and crash schedules,
 * the core's token bucket, I/O ticks and timeouts are all timers, so under the warp they take their
 * modelled duration on the process's clock but (almost) no wall time, while CPU work and real I/O
 * (classification, reading and writing pages, journal fsyncs) count exactly as long as they take.
 *
 * How: `performance.now`, `Date.now`, `setTimeout`/`setInterval` (and their clear* functions) are
 * replaced by virtual versions; one real wake-up drives them. When it finds nothing due and the event
 * loop idle — no file-system request, connection, pending write or immediate in flight
 * (`process.getActiveResourcesInfo()`), and some referenced timer waiting — the clock jumps to the
 * next timer (instantly at speed Infinity, or after 1/speed of the gap in wall time). Timers that do
 * not keep the process alive (unref) never cause a jump on their own, so an idle daemon does not spin.
 *
 * Opt-in (the demo and the scale bench install it; the daemon runs in real time). Not re-entrant:
 * one warp per process. Worker threads are not seen: their CPU time is not counted.
 */
import { VcvError } from '@vicover/errors';

/** Active-resource types that exist while nothing is in flight (persistent handles). */
const PERSISTENT = new Set(['Timeout', 'TTYWrap', 'PipeWrap', 'TCPServerWrap', 'PipeServerWrap', 'SignalWrap', 'ProcessWrap', 'MessagePort', 'StatWatcher', 'FSEventWrap', 'UDPWrap', 'Worker']);

export interface RealTimers {
  setTimeout: typeof globalThis.setTimeout;
  clearTimeout: typeof globalThis.clearTimeout;
  setInterval: typeof globalThis.setInterval;
  clearInterval: typeof globalThis.clearInterval;
  /** Real monotonic milliseconds. */
  now(): number;
}

export interface TimeWarp {
  /** Modelled seconds per wall second while idle (Infinity: jump at once). */
  readonly speed: number;
  /** Milliseconds of modelled time skipped so far (modelled − wall). */
  readonly skippedMs: number;
  /** The untouched timers and clock (for progress displays that must tick in wall time). */
  readonly real: RealTimers;
  uninstall(): void;
}

interface VTimer {
  id: number;
  /** Bumped on refresh/cancel: heap entries of an older generation are stale. */
  gen: number;
  fn: (...a: unknown[]) => void;
  args: unknown[];
  interval: number | null;
  refed: boolean;
  active: boolean;
  handle: object;
}

let installed: TimeWarp | null = null;

export function currentWarp(): TimeWarp | null {
  return installed;
}

export function installTimeWarp(opts: { speed?: number } = {}): TimeWarp {
  if (installed) throw new VcvError('VCV_ERR_INTERNAL', 'a time warp is already installed in this process');
  const speed = opts.speed ?? Infinity;
  if (!(speed >= 1)) throw new VcvError('VCV_ERR_USAGE', `time warp speed ${speed} must be ≥ 1`);
  const g = globalThis as unknown as Record<string, unknown>;
  const orig = {
    setTimeout: globalThis.setTimeout,
    clearTimeout: globalThis.clearTimeout,
    setInterval: globalThis.setInterval,
    clearInterval: globalThis.clearInterval,
    setImmediate: globalThis.setImmediate,
    clearImmediate: globalThis.clearImmediate,
    perfNow: performance.now.bind(performance),
    perfNowDesc: Object.getOwnPropertyDescriptor(performance, 'now'),
    dateNow: Date.now,
  };
  let offset = 0;
  const vnow = () => orig.perfNow() + offset;
  let seq = 0;
  let nextId = 1;
  interface Entry {
    t: VTimer;
    gen: number;
    due: number;
    seq: number;
  }
  const heap: Entry[] = [];
  let refCount = 0;
  let wake: { kind: 'immediate' | 'timeout'; h: NodeJS.Immediate | NodeJS.Timeout } | null = null;

  const less = (a: Entry, b: Entry) => a.due < b.due || (a.due === b.due && a.seq < b.seq);
  const push = (t: VTimer, due: number) => {
    heap.push({ t, gen: t.gen, due, seq: seq++ });
    let i = heap.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(heap[i]!, heap[p]!)) break;
      [heap[i], heap[p]] = [heap[p]!, heap[i]!];
      i = p;
    }
  };
  const pop = (): Entry | undefined => {
    const top = heap[0];
    const last = heap.pop();
    if (heap.length && last) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  };
  /** Drop cancelled timers from the top. */
  const peek = (): Entry | undefined => {
    while (heap.length && (!heap[0]!.t.active || heap[0]!.gen !== heap[0]!.t.gen)) pop();
    return heap[0];
  };

  /** 0: idle; 1: only immediates are queued (they run this turn); 2: I/O in flight. */
  const busy = (): 0 | 1 | 2 => {
    let b: 0 | 1 | 2 = 0;
    for (const r of process.getActiveResourcesInfo()) {
      if (r === 'Immediate') b = 1;
      else if (!PERSISTENT.has(r)) return 2;
    }
    return b;
  };
  /** Consecutive turns spent waiting for I/O: poll at once a few times, then every millisecond. */
  let ioStreak = 0;

  const clearWake = () => {
    if (!wake) return;
    if (wake.kind === 'immediate') orig.clearImmediate(wake.h as NodeJS.Immediate);
    else orig.clearTimeout(wake.h as NodeJS.Timeout);
    wake = null;
  };
  /** The wake-up keeps the process alive exactly while a referenced timer waits. */
  const syncRef = () => {
    if (!wake) return;
    if (refCount > 0) wake.h.ref();
    else wake.h.unref();
  };
  const arm = (kind: 'immediate' | 'timeout', ms = 0) => {
    clearWake();
    const h = kind === 'immediate' ? orig.setImmediate(pump) : orig.setTimeout(pump, ms);
    if (refCount === 0) h.unref();
    wake = { kind, h };
  };

  let idleSince = -1;
  function pump(): void {
    wake = null;
    const e = peek();
    if (!e) return;
    const t = e.t;
    const now = vnow();
    if (e.due <= now) {
      idleSince = -1;
      pop();
      if (t.interval !== null) {
        push(t, Math.max(e.due + t.interval, now));
      } else {
        t.active = false;
        if (t.refed) refCount--;
      }
      // One timer per turn: microtasks and I/O callbacks run between timers, as with Node's timers.
      arm('immediate');
      try {
        t.fn(...t.args);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
      return;
    }
    const gap = e.due - now;
    const b = refCount === 0 ? 0 : busy();
    if (refCount === 0 || b !== 0) {
      // Real time: let queued immediates run, wait for the I/O in flight (poll), or, with only unref'd
      // timers, wait for the timer itself.
      idleSince = -1;
      if (refCount === 0) arm('timeout', Math.ceil(gap));
      else if (b === 1 || ioStreak++ < 64) arm('immediate');
      else arm('timeout', Math.min(Math.ceil(gap), 1));
      return;
    }
    ioStreak = 0;
    if (speed === Infinity) {
      offset += gap;
      arm('immediate');
      return;
    }
    // Time-lapse: the gap takes gap/speed of wall time.
    const real = orig.perfNow();
    if (idleSince < 0) idleSince = real;
    const stepMs = Math.min(gap / speed, 50);
    const slept = real - idleSince;
    if (slept > 0) {
      offset += Math.min(gap, slept * (speed - 1));
      idleSince = real;
    }
    arm('timeout', Math.max(1, Math.ceil(stepMs)));
  }

  const schedule = (fn: unknown, ms: unknown, args: unknown[], interval: boolean): object => {
    if (typeof fn !== 'function') throw new TypeError('callback must be a function');
    // Node turns delays below 1 ms into 1 ms; modelled time keeps fractions (a disk request of 0.3 ms
    // takes 0.3 ms), and only 0 or nothing means "next turn" (1 ms, as in Node).
    const d = Number(ms);
    const delay = d > 0 ? d : 1;
    const t: VTimer = { id: nextId++, gen: 0, fn: fn as VTimer['fn'], args, interval: interval ? delay : null, refed: true, active: true, handle: {} };
    refCount++;
    const handle = {
      ref() {
        if (t.active && !t.refed) {
          t.refed = true;
          refCount++;
          syncRef();
        }
        return handle;
      },
      unref() {
        if (t.active && t.refed) {
          t.refed = false;
          refCount--;
          syncRef();
        }
        return handle;
      },
      hasRef: () => t.refed,
      refresh() {
        if (t.active) {
          t.gen++;
          push(t, vnow() + delay);
          if (!wake || wake.kind === 'timeout') arm('immediate');
        }
        return handle;
      },
      close() {
        cancel(t);
        return handle;
      },
      [Symbol.toPrimitive]: () => t.id,
      __vtimer: t,
    };
    t.handle = handle;
    push(t, vnow() + delay);
    if (!wake || wake.kind === 'timeout') arm('immediate');
    else syncRef();
    return handle;
  };
  const cancel = (t: VTimer) => {
    if (!t.active) return;
    t.active = false;
    t.gen++;
    if (t.refed) refCount--;
    syncRef();
  };
  const clear = (h: unknown, real: (h: never) => void) => {
    if (h && typeof h === 'object' && '__vtimer' in h) cancel((h as { __vtimer: VTimer }).__vtimer);
    else if (h !== undefined && h !== null) real(h as never);
  };

  g.setTimeout = (fn: unknown, ms?: unknown, ...args: unknown[]) => schedule(fn, ms, args, false);
  g.setInterval = (fn: unknown, ms?: unknown, ...args: unknown[]) => schedule(fn, ms, args, true);
  g.clearTimeout = (h: unknown) => clear(h, orig.clearTimeout as (h: never) => void);
  g.clearInterval = (h: unknown) => clear(h, orig.clearInterval as (h: never) => void);
  Object.defineProperty(performance, 'now', { value: vnow, configurable: true, writable: true });
  Date.now = () => orig.dateNow() + offset;

  const warp: TimeWarp = {
    speed,
    get skippedMs() {
      return offset;
    },
    real: {
      setTimeout: orig.setTimeout,
      clearTimeout: orig.clearTimeout,
      setInterval: orig.setInterval,
      clearInterval: orig.clearInterval,
      now: orig.perfNow,
    },
    uninstall() {
      if (installed !== warp) return;
      clearWake();
      g.setTimeout = orig.setTimeout;
      g.setInterval = orig.setInterval;
      g.clearTimeout = orig.clearTimeout;
      g.clearInterval = orig.clearInterval;
      if (orig.perfNowDesc) Object.defineProperty(performance, 'now', orig.perfNowDesc);
      else delete (performance as unknown as Record<string, unknown>).now;
      Date.now = orig.dateNow;
      // Timers still pending continue in real time, with their remaining modelled delay.
      const left = heap.filter((e) => e.t.active && e.gen === e.t.gen);
      heap.length = 0;
      const base = vnow();
      for (const { t, due } of left) {
        const h = t.interval !== null ? orig.setInterval(t.fn, t.interval, ...t.args) : orig.setTimeout(t.fn, Math.max(0, due - base), ...t.args);
        if (!t.refed) h.unref();
      }
      installed = null;
    },
  };
  installed = warp;
  return warp;
}
