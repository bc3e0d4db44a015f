/**
 * The report as a few lines of text for a terminal (`vicover report`). Untrusted text (panic lines)
 * is sanitized: no terminal escape sequences reach the terminal.
 */
import type { CrashReport } from '@vicover/core';
import { fmtBytes, fmtCount, fmtMs, fmtSeconds, fmtWallClock, pct, sanitizeText as t } from './format.js';
import { reportFigures } from './figures.js';

export function renderReportText(r: CrashReport): string {
  const f = reportFigures(r);
  const line = (k: string, v: string) => `  ${k.padEnd(13)} ${v}`;
  const out: string[] = [];
  out.push(`${r.simulated ? '[SIMULATED] ' : ''}crash of ${t(r.vm.name, 200)} — ${r.mode} — ${r.state}`);
  out.push(line('crashed', `${fmtWallClock(r.crash.at)}: ${t(r.crash.reason, 300)}`));
  out.push(line('panic', r.triage.panicLine ? t(r.triage.panicLine, 1000) : '(unknown)'));
  if (r.error) out.push(line('error', `${t(r.error.code, 80)}: ${t(r.error.message, 1000)}`));
  out.push(
    line(
      'downtime',
      f.serviceDowntimeSeconds !== null
        ? `${fmtSeconds(f.serviceDowntimeSeconds)} (crash → ${t(f.recovery.vm ?? 'recovery VM', 120)} healthy${f.recovery.check ? `, ${t(f.recovery.check, 120)}` : ''})`
        : 'service not back within the session',
    ),
  );
  out.push(line('total', f.totalSeconds !== null ? `${fmtSeconds(f.totalSeconds)} (crash → dump complete and all memory handed over)` : 'n/a'));
  if (f.dump.present) {
    const d = r.dump;
    out.push(
      line(
        'dump',
        `${fmtBytes(d.bytesWritten)} ${d.complete ? 'complete' : 'INCOMPLETE'}${d.format ? `, ${t(d.format)}` : ''}${d.compression && d.compression !== 'none' ? `/${t(d.compression)}` : ''}${d.level !== undefined ? ` level ${d.level}` : ''}, ${fmtCount(d.chunks)} chunk(s)${d.seconds !== undefined ? ` in ${fmtSeconds(d.seconds)}` : ''}${d.file ? ` → ${t(d.file, 500)}` : ''}`,
      ),
    );
    const ex = f.pages.excluded.filter((e) => e.pages > 0);
    out.push(line('pages', `${fmtCount(f.pages.dumped)} of ${fmtCount(f.pages.total)} dumped${f.pages.notWritten ? ` (stopped early: ${fmtCount(f.pages.notWritten)} selected pages not written)` : ''}${ex.length ? `; excluded ${ex.map((e) => `${e.label} ${fmtCount(e.pages)}`).join(', ')}` : ''}`));
    if (d.fallback) out.push(line('fallback', `full dump: ${t(d.fallback.reason, 500)} (${t(d.fallback.code)}, ${t(d.fallback.plugin)})`));
  } else out.push(line('dump', r.mode === 'restart-only' ? 'none (restart-only)' : 'none written'));
  out.push(
    line(
      'memory',
      `handed over ${fmtBytes(f.memory.handedOverBytes)} of ${fmtBytes(f.memory.guestBytes)} (${f.memory.handover === 'chunked' ? `${r.timeline.handover.length} steps` : f.memory.handover === 'at-once' ? 'at once' : 'none'}); peak host ${fmtBytes(f.memory.peakBytes)} of ${fmtBytes(f.memory.budgetBytes)} budget (${pct(f.memory.peakBytes, f.memory.budgetBytes) || 'n/a'})${f.memory.overBudget ? ' OVER BUDGET' : ''}`,
    ),
  );
  if (f.recovery.startedAtMs !== null) {
    out.push(line('recovery VM', `${t(f.recovery.vm ?? '?', 120)} started at ${fmtMs(f.recovery.startedAtMs)}${f.recovery.recoveredAtMs !== null ? `, healthy at ${fmtMs(f.recovery.recoveredAtMs)}` : ', never healthy'}`));
  } else out.push(line('recovery VM', 'none started'));
  const policies = [...new Set(r.timeline.shares.map((s) => s.policy).filter(Boolean))];
  if (policies.length) out.push(line('I/O policy', `${policies.map((p) => t(p, 80)).join(', ')} (${r.timeline.shares.length} share changes)`));
  for (const w of r.warnings.slice(0, 20)) out.push(line('warning', `${t(w.code, 80)}${w.plugin ? ` (${t(w.plugin, 80)})` : ''}: ${t(w.message, 500)}`));
  if (r.warnings.length > 20) out.push(line('', `… ${r.warnings.length - 20} more warning(s)`));
  return out.join('\n') + '\n';
}
