/**
 * The figures a person looks at first, derived once from a report so that the HTML page, the text
 * summary and `vicover report --json` agree.
 */
import type { CrashReport } from '@vicover/core';

export const PAGE_SIZE = 4096;

/** Page classes in display order: what was dumped, then why the rest was left out. */
export const PAGE_CLASSES: readonly { key: string; label: string; what: string }[] = [
  { key: 'dumped', label: 'dumped', what: 'pages written to the dump' },
  { key: 'zero', label: 'zero', what: 'all-zero pages (found while writing)' },
  { key: 'cache', label: 'page cache', what: 'page cache pages (clean file data)' },
  { key: 'privateCache', label: 'private cache', what: 'private page cache pages' },
  { key: 'user', label: 'user', what: 'user-space process pages' },
  { key: 'free', label: 'free', what: 'free pages (buddy allocator)' },
  { key: 'offline', label: 'offline', what: 'offline / hwpoisoned pages' },
];

export interface ReportFigures {
  vm: string;
  mode: CrashReport['mode'];
  simulated: boolean;
  state: CrashReport['state'];
  crashedAt: string;
  panicLine: string | null;
  /** Crash → health check passed, seconds (null: never within the session). */
  serviceDowntimeSeconds: number | null;
  /** Crash → dump complete and all memory handed over, seconds. */
  totalSeconds: number | null;
  dump: { present: boolean; complete: boolean; bytesWritten: number; seconds: number | null; chunks: number };
  pages: {
    /** RAM pages of the guest. */
    total: number;
    /** Pages in the dump: for a complete dump `pages.dumped`; for an incomplete one, those in durable chunks. */
    dumped: number;
    /** Pages the selection chose (all-zero ones included: they are found only while writing). */
    selected: number;
    /** Selected pages the dump never reached (it stopped early); 0 for a complete dump. */
    notWritten: number;
    excluded: { key: string; label: string; pages: number }[];
  };
  memory: {
    guestBytes: number;
    handedOverBytes: number;
    /** Handover style: chunk by chunk (vicover), all at once, or none (no backend / failed early). */
    handover: 'chunked' | 'at-once' | 'none';
    peakBytes: number;
    budgetBytes: number;
    marginBytes: number;
    overBudget: boolean;
  };
  recovery: { vm: string | null; startedAtMs: number | null; recoveredAtMs: number | null; check: string | null };
  /** Last time stamp anywhere in the report (ms since the crash): the right end of the time axis. */
  endMs: number;
  warnings: number;
  error: { code: string; message: string } | null;
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Last time stamp of the report (0 when there is none). */
export function reportEndMs(r: CrashReport): number {
  let end = 0;
  const see = (v: unknown) => {
    if (finite(v) && v > end) end = v;
  };
  const tl = r.timeline;
  for (const s of [tl.dump, tl.handover, tl.shares, tl.memory, tl.recoveryIo, tl.events] as { tMs: number }[][]) {
    for (const p of s ?? []) see(p.tMs);
  }
  see(r.recovery.recoveredAtMs);
  see(r.recovery.startedAtMs);
  see(r.dump.finishedAtMs);
  see(r.triage.atMs);
  if (finite(r.totalSeconds)) see(r.totalSeconds * 1000);
  if (finite(r.serviceDowntimeSeconds)) see(r.serviceDowntimeSeconds * 1000);
  return end;
}

/**
 * The core counts `pages.dumped` as the selection minus the all-zero pages found while writing, and
 * `timeline.dump[].pagesWritten` as selected pages processed (all-zero ones included). For a dump that
 * stopped early, the pages really in the file are the last durable count minus the zero pages.
 */
function pageFigures(r: CrashReport, excluded: ReportFigures['pages']['excluded']): ReportFigures['pages'] {
  const zero = finite(r.pages.excluded?.zero) ? r.pages.excluded.zero : 0;
  const selected = r.pages.dumped + zero;
  if (r.dump.complete || r.mode === 'restart-only') return { total: r.pages.total, dumped: r.pages.dumped, selected, notWritten: 0, excluded };
  const processed = Math.max(0, ...(r.timeline.dump ?? []).map((p) => p.pagesWritten));
  const dumped = Math.max(0, processed - zero);
  return { total: r.pages.total, dumped, selected, notWritten: Math.max(0, selected - processed), excluded };
}

export function reportFigures(r: CrashReport): ReportFigures {
  const excluded = Object.entries(r.pages.excluded ?? {})
    .filter(([, v]) => finite(v))
    .map(([key, pages]) => ({ key, label: PAGE_CLASSES.find((c) => c.key === key)?.label ?? key, pages }));
  const handover = r.timeline.handover ?? [];
  const dumpPresent = r.mode !== 'restart-only' && (r.dump.chunks > 0 || r.dump.bytesWritten > 0 || r.dump.startedAtMs !== undefined);
  return {
    vm: r.vm.name,
    mode: r.mode,
    simulated: r.simulated,
    state: r.state,
    crashedAt: r.crash.at,
    panicLine: r.triage.panicLine ?? null,
    serviceDowntimeSeconds: r.serviceDowntimeSeconds,
    totalSeconds: r.totalSeconds,
    dump: { present: dumpPresent, complete: r.dump.complete, bytesWritten: r.dump.bytesWritten, seconds: r.dump.seconds ?? null, chunks: r.dump.chunks },
    pages: pageFigures(r, excluded),
    memory: {
      guestBytes: r.memory.totalBytes,
      handedOverBytes: r.memory.handedOverBytes,
      handover: handover.length > 1 ? 'chunked' : handover.length === 1 ? 'at-once' : 'none',
      peakBytes: r.memory.peakBytes,
      budgetBytes: r.memory.budgetBytes,
      marginBytes: r.memory.marginBytes,
      overBudget: r.memory.peakBytes > r.memory.budgetBytes,
    },
    recovery: {
      vm: r.recovery.vm ?? null,
      startedAtMs: r.recovery.startedAtMs ?? null,
      recoveredAtMs: r.recovery.recoveredAtMs ?? null,
      check: r.recovery.check ?? null,
    },
    endMs: reportEndMs(r),
    warnings: r.warnings.length,
    error: r.error ?? null,
  };
}
