/**
 * The daemon's hook-up: after each crash session, render report.html next to report.json. Rendering
 * never fails a session — a problem is logged as a warning (report.json is the record; the page is a
 * view of it).
 */
import * as path from 'node:path';
import type { CrashReport, CrashSession } from '@vicover/core';
import { writeReportHtml } from './write.js';

export interface HtmlReportWriter {
  /** Give it to `new Daemon({ onReport })` (or call it from yours). */
  onReport(report: CrashReport, session: Pick<CrashSession, 'directory' | 'log'>): void;
  /** Resolves when every page started so far is written (await before the process exits). */
  settled(): Promise<void>;
}

export function htmlReportWriter(o: { enabled: boolean }): HtmlReportWriter {
  const pending = new Set<Promise<void>>();
  return {
    onReport(report, session) {
      const dir = session.directory;
      if (!o.enabled || !dir) return;
      const p: Promise<void> = writeReportHtml(path.join(dir, 'report.html'), report, { source: path.join(dir, 'report.json') })
        .then((file) => session.log.info({ reportHtml: file }, 'crash report page written'))
        .catch((e) => session.log.warn({ err: e, code: (e as { code?: string }).code }, `cannot write report.html: ${(e as Error).message}`))
        .finally(() => pending.delete(p));
      pending.add(p);
    },
    async settled() {
      while (pending.size) await Promise.allSettled([...pending]);
    },
  };
}
