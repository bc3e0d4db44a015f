/**
 * The crash report: one JSON document per crash (written next to the dump, 0600) and a summary log
 * line. Time stamps in the timeline are milliseconds since the crash.
 */
import type { Mode } from './schema.js';

export interface TimelinePoint {
  readonly tMs: number;
}

export interface CrashReport {
  readonly reportVersion: 1;
  readonly simulated: boolean;
  readonly sessionId: string;
  readonly mode: Mode;
  readonly backend: string;
  readonly vm: { readonly id: string; readonly name: string; readonly memoryBytes: number };
  readonly crash: { readonly at: string; readonly reason: string };
  triage: { panicLine?: string; lastLines?: string[]; source?: string; atMs?: number; [k: string]: unknown };
  pages: {
    total: number;
    dumped: number;
    excluded: { zero: number; cache: number; privateCache: number; user: number; free: number; offline: number; [k: string]: number };
  };
  dump: {
    file?: string;
    format?: string;
    compression?: string;
    level?: number;
    bytesWritten: number;
    complete: boolean;
    startedAtMs?: number;
    finishedAtMs?: number;
    seconds?: number;
    chunks: number;
    chunkBytes?: number;
    fallback?: { plugin: string; code: string; reason: string };
    /** Bytes the session could not write to disk (a counting sink, e.g. simulated guests beyond the disk). */
    sink?: string;
  };
  recovery: { vm?: string; startedAtMs?: number; recoveredAtMs?: number; check?: string; initialBytes?: number; backend?: Record<string, unknown> };
  /** Crash → the service answered again (null if it never did within the timeout). */
  serviceDowntimeSeconds: number | null;
  /** Crash → dump complete and all memory handed over. */
  totalSeconds: number | null;
  memory: {
    totalBytes: number;
    budgetBytes: number;
    marginBytes: number;
    peakBytes: number;
    handedOverBytes: number;
    releasesImmediately: boolean;
  };
  /** The I/O setup: configured device bandwidth (bytes/s, null = not configured) and scheduler tick. */
  io: { deviceBps: number | null; tickMs: number };
  /** Guest page size in bytes. */
  pageSize: number;
  timeline: {
    dump: (TimelinePoint & { pagesWritten: number; bytesWritten: number })[];
    handover: (TimelinePoint & { handedOverBytes: number })[];
    shares: (TimelinePoint & { dumpBps: number | null; recoveryBps: number | null; policy?: string; reason?: string })[];
    memory: (TimelinePoint & { crashedBytes: number; recoveryBytes: number })[];
    recoveryIo: (TimelinePoint & { readBps: number; writeBps: number })[];
    /** The dump writer's achieved rate per scheduler tick (bytes/s to disk). */
    dumpIo: (TimelinePoint & { writeBps: number })[];
    events: (TimelinePoint & { event: string; detail?: string })[];
  };
  warnings: { code: string; message: string; plugin?: string }[];
  extra: Record<string, unknown>;
  state: 'running' | 'done' | 'failed' | 'interrupted';
  error?: { code: string; message: string };
}

export function emptyExcluded(): CrashReport['pages']['excluded'] {
  return { zero: 0, cache: 0, privateCache: 0, user: 0, free: 0, offline: 0 };
}

/** JSON cannot hold Infinity: unlimited rates become null. */
export function finiteOrNull(n: number): number | null {
  return Number.isFinite(n) ? n : null;
}

/** One line for logs: the figures an operator looks at first. */
export function summaryLine(r: CrashReport): string {
  const gib = (b: number) => (b / 2 ** 30).toFixed(2) + ' GiB';
  const s = (x: number | null) => (x === null ? 'n/a' : x.toFixed(1) + ' s');
  return [
    `${r.simulated ? '[SIMULATED] ' : ''}crash of ${r.vm.name} (${r.mode})`,
    r.triage.panicLine ? `panic: "${r.triage.panicLine}"` : 'panic line unknown',
    `dumped ${r.pages.dumped}/${r.pages.total} pages (${gib(r.dump.bytesWritten)} written${r.dump.complete ? '' : ', INCOMPLETE'})`,
    `service downtime ${s(r.serviceDowntimeSeconds)}`,
    `total ${s(r.totalSeconds)}`,
    `memory handed over ${gib(r.memory.handedOverBytes)} of ${gib(r.memory.totalBytes)}`,
  ].join('; ');
}
