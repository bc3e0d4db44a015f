/**
 * The lifecycle hooks — declared once, here, in one frozen object (webpack `Compiler` style). The tuple
 * generics keep each hook's TypeScript type and its runtime tapable class together.
 *
 * Why each kind (see docs/plugins.md for the full table):
 * - onCrash            AsyncSeriesHook — taps run in stage order (triage before recovery start), each
 *                      awaited; nothing to combine.
 * - selectPages        AsyncSeriesWaterfallHook — each filter receives the page set and returns it
 *                      narrowed; order matters (stages), results chain.
 * - onChunkDumped      AsyncSeriesHook — awaited before the chunk is released: a slow tap is
 *                      backpressure on the dump, never a release ahead of its consumers.
 * - onMemoryReclaimed  AsyncSeriesHook — the recovery strategy grows the recovery VM; awaited so grows
 *                      do not overlap.
 * - scheduleIo         SyncWaterfallHook — on the hot path every I/O tick; no awaits; each policy may
 *                      adjust the shares the previous one returned.
 * - onRecovered        AsyncSeriesHook — the service is back; report and notify.
 * - failed             AsyncSeriesHook — a session (or the daemon) failed; taps clean up and report.
 * - shutdown           AsyncSeriesHook — the daemon is stopping; plugins close sockets and children.
 */
import { createRequire } from 'node:module';
import type * as Tapable from 'tapable';
import type { PhysRange } from './memory.js';
import type { PageSet, VmHandle } from './contracts.js';
import type { CrashSession } from './session.js';

// The three hook classes from their own files: tapable's index loads all fourteen (16 modules, ~9 ms
// of every start). tapable 2.x has no "exports" map, so these paths are public; its version is pinned.
const require = createRequire(import.meta.url);
const AsyncSeriesHook = require('tapable/lib/AsyncSeriesHook.js') as typeof Tapable.AsyncSeriesHook;
const AsyncSeriesWaterfallHook = require('tapable/lib/AsyncSeriesWaterfallHook.js') as typeof Tapable.AsyncSeriesWaterfallHook;
const SyncWaterfallHook = require('tapable/lib/SyncWaterfallHook.js') as typeof Tapable.SyncWaterfallHook;

/** Named stages for ordering taps within a hook (lower runs first). Never use magic numbers. */
export const STAGE = Object.freeze({
  /** onCrash: learn about the guest (triage: panic line, kernel log). */
  TRIAGE: -100,
  DEFAULT: 0,
  /** onCrash: start the recovery VM (after triage, which is fast and worth having first). */
  RECOVERY: 100,
  /** selectPages: filters that narrow the set by guest knowledge. */
  FILTER: 0,
  /** selectPages: last-word adjustments (e.g. site rules that force pages back in). */
  ADJUST: 100,
  /** After everything else: reporting, metrics. */
  REPORT: 1000,
});

export interface ChunkInfo {
  /** Position in the dump order (0 = dumped first). */
  readonly seq: number;
  /** Index in address order. */
  readonly index: number;
  readonly range: PhysRange;
  /** Pages of the chunk in the dump set. */
  readonly selectedPages: number;
  /** Pages written (including shared zero pages) and zero pages among them. */
  readonly writtenPages: number;
  readonly zeroPages: number;
  readonly bytesWritten: number;
  /** ms since the crash when the chunk became durable (fsync returned). */
  readonly durableAtMs: number;
}

export interface ReclaimInfo {
  /** The chunk whose memory was handed over (null when all memory is handed over at once). */
  readonly chunk: ChunkInfo | null;
  readonly range: PhysRange | null;
  /** Host memory the backend reports it freed for this step (measured). */
  readonly freedBytes: number;
  /** Guest memory handed over so far, and the total to hand over (the crashed VM's size). */
  readonly handedOverBytes: number;
  readonly totalBytes: number;
  /** True on the last step: all memory of the crashed VM is now available. */
  readonly final: boolean;
}

/** A bandwidth split for one tick: bytes per second for each side (Infinity = unlimited). */
export interface IoShares {
  dumpBps: number;
  recoveryBps: number;
  /** Which policy set these shares and why (for reports and logs). */
  policy?: string;
  reason?: string;
  /** Something the operator must know (e.g. "the deadline cannot be met"); logged once per text. */
  warning?: string;
}

/** What a policy sees every tick. Rates are bytes/s averaged over the last tick. */
export interface IoState {
  readonly sessionId: string;
  readonly elapsedMs: number;
  readonly tickMs: number;
  /** Configured device bandwidth (bytes/s) and IOPS (0 = not configured). */
  readonly deviceBps: number;
  readonly deviceIops: number;
  readonly dump: {
    readonly active: boolean;
    readonly bytesDone: number;
    /** Estimated bytes left to write (upper bound: uncompressed selected pages left). */
    readonly bytesLeft: number;
    readonly rateBps: number;
    /** True when the dump writer used less than its share last tick (it had nothing more to write). */
    readonly idle: boolean;
  };
  readonly memory: { readonly handedOverBytes: number; readonly totalBytes: number };
  readonly recovery: {
    readonly started: boolean;
    readonly healthy: boolean;
    readonly readBps: number;
    readonly writeBps: number;
    readonly readIops: number;
    readonly writeIops: number;
  };
  /** The shares in force during the last tick. */
  readonly previous: Readonly<IoShares>;
}

export interface RecoveryInfo {
  readonly vm: VmHandle;
  /** ms since the crash when the health check first passed (= service downtime). */
  readonly atMs: number;
  /** What was checked, e.g. `http://127.0.0.1:8080/` or `serial:READY`. */
  readonly check: string;
}

export interface ShutdownInfo {
  readonly reason: string;
  readonly signal?: string;
}

export function createHooks() {
  return Object.freeze({
    onCrash: new AsyncSeriesHook<[CrashSession]>(['session'], 'onCrash'),
    selectPages: new AsyncSeriesWaterfallHook<[PageSet, CrashSession]>(['pages', 'session'], 'selectPages'),
    onChunkDumped: new AsyncSeriesHook<[ChunkInfo, CrashSession]>(['chunk', 'session'], 'onChunkDumped'),
    onMemoryReclaimed: new AsyncSeriesHook<[ReclaimInfo, CrashSession]>(['reclaim', 'session'], 'onMemoryReclaimed'),
    scheduleIo: new SyncWaterfallHook<[IoShares, IoState]>(['shares', 'state'], 'scheduleIo'),
    onRecovered: new AsyncSeriesHook<[RecoveryInfo, CrashSession]>(['recovery', 'session'], 'onRecovered'),
    failed: new AsyncSeriesHook<[Error, CrashSession | null]>(['error', 'session'], 'failed'),
    shutdown: new AsyncSeriesHook<[ShutdownInfo]>(['info'], 'shutdown'),
  });
}

export type Hooks = ReturnType<typeof createHooks>;
export type HookName = keyof Hooks;
export const HOOK_NAMES = Object.freeze([
  'onCrash',
  'selectPages',
  'onChunkDumped',
  'onMemoryReclaimed',
  'scheduleIo',
  'onRecovered',
  'failed',
  'shutdown',
] as const satisfies readonly HookName[]);
