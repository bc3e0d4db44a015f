/**
 * The crash report as one self-contained HTML page: inline CSS and SVG, no script, no external
 * resource, no web font. A Content-Security-Policy that allows nothing but inline styles backs up the
 * escaping (report text comes partly from guest memory and is untrusted).
 */
import type { CrashReport } from '@vicover/core';
import { esc, fmtBps, fmtBytes, fmtCount, fmtMs, fmtSeconds, fmtWallClock, pct, sanitizeText } from './format.js';
import { PAGE_CLASSES, PAGE_SIZE, reportFigures, type ReportFigures } from './figures.js';
import { renderReportSvg, timelineSummary, COLORS } from './svg.js';

export interface HtmlOptions {
  /** Where the report came from (shown in the footer), e.g. the report.json path. */
  source?: string;
  /** When the page was rendered (shown in the footer). Default: not shown (output is deterministic). */
  renderedAt?: Date;
}

/** Rows shown per series in the data tables; longer series are sampled evenly (report.json has all). */
const MAX_TABLE_ROWS = 400;

const PAGE_COLORS: Record<string, string> = {
  dumped: COLORS.dump,
  notWritten: COLORS.down,
  zero: '#bbbbbb',
  cache: COLORS.crashed,
  privateCache: '#9ad0ec',
  user: COLORS.recovery,
  free: COLORS.up,
  offline: COLORS.budget,
};
const OTHER_COLORS = ['#f0e442', '#8c959f', '#6e7781', '#afb8c1'];

const STATE_LABEL: Record<string, string> = { done: '✓ done', failed: '✗ failed', interrupted: '⏸ interrupted (resumable)', running: '… running (session did not finish)' };
const MODE_LABEL: Record<string, string> = {
  vicover: 'selective dump while the recovery VM takes memory over chunk by chunk',
  'coredump-restart': 'full dump first, then restart with all memory',
  'restart-only': 'restart only, no dump',
};

/** Counts for a big figure: exact below a billion, then "12.09 billion" (the exact number goes beside it). */
function bigCount(v: number): string {
  if (!(Math.abs(v) >= 1e9)) return fmtCount(v);
  return Math.abs(v) >= 1e12 ? `${(v / 1e12).toFixed(2)} trillion` : `${(v / 1e9).toFixed(2)} billion`;
}

function card(term: string, value: string, sub: string, extra = ''): string {
  return `<div class="card"><dt>${term}</dt><dd class="big">${value}</dd>${sub ? `<dd class="sub">${sub}</dd>` : ''}${extra}</div>`;
}

/** A small horizontal meter (inline SVG): value of max, with a budget mark. Text says the same. */
function meter(value: number, max: number, label: string): string {
  const frac = max > 0 ? Math.min(1, value / max) : 0;
  const over = value > max;
  return `<dd class="meter"><svg viewBox="0 0 200 12" preserveAspectRatio="none" width="100%" height="12" role="img" aria-label="${esc(label)}"><title>${esc(label)}</title><rect width="200" height="12" rx="3" fill="#e6eaef"/><rect width="${(200 * frac).toFixed(1)}" height="12" rx="3" fill="${over ? COLORS.down : COLORS.dump}"/></svg></dd>`;
}

function keyFigures(r: CrashReport, f: ReportFigures): string {
  const cards: string[] = [];
  const rec = f.recovery;
  cards.push(
    card(
      'Service downtime',
      f.serviceDowntimeSeconds !== null ? esc(fmtSeconds(f.serviceDowntimeSeconds)) : '<span class="bad">not back</span>',
      f.serviceDowntimeSeconds !== null ? `crash → health check passed${rec.check ? ` (${esc(rec.check, 120)})` : ''}` : 'the recovery VM did not pass its health check within the session',
    ),
  );
  cards.push(card('Total time', f.totalSeconds !== null ? esc(fmtSeconds(f.totalSeconds)) : 'n/a', 'crash → dump complete and all memory handed over'));
  if (f.dump.present) {
    const d = r.dump;
    const fmt = [d.format, d.compression && d.compression !== 'none' ? d.compression : null, d.level !== undefined ? `level ${d.level}` : null].filter(Boolean).map((s) => esc(s)).join(' · ');
    cards.push(
      card(
        'Dump size',
        esc(fmtBytes(d.bytesWritten)),
        `${d.complete ? '✓ complete' : '<span class="bad">✗ INCOMPLETE</span>'} · ${fmt}${f.dump.seconds !== null ? ` · written in ${esc(fmtSeconds(f.dump.seconds))}` : ''}`,
      ),
    );
    const ex = f.pages.excluded.filter((e) => e.pages > 0).sort((a, b) => b.pages - a.pages);
    const exact = f.pages.total >= 1e9 ? `${esc(fmtCount(f.pages.dumped))} of ${esc(fmtCount(f.pages.total))}; ` : '';
    const stopped = f.pages.notWritten > 0 ? `<span class="bad">dump stopped early:</span> ${esc(fmtCount(f.pages.notWritten))} of ${esc(fmtCount(f.pages.selected))} selected pages not written; ` : '';
    cards.push(
      card(
        'Pages dumped',
        `${esc(bigCount(f.pages.dumped))} <small>of ${esc(bigCount(f.pages.total))}</small>`,
        exact + stopped + (ex.length ? `excluded: ${ex.map((e) => `${esc(e.label)} ${esc(fmtCount(e.pages))}`).join(', ')}` : 'nothing excluded'),
      ),
    );
  } else {
    cards.push(card('Dump', 'none', r.mode === 'restart-only' ? 'restart-only: no dump is taken' : 'no dump was written'));
  }
  const how = f.memory.handover === 'chunked' ? `chunk by chunk, ${r.timeline.handover.length} steps` : f.memory.handover === 'at-once' ? 'at once, when the crashed VM was destroyed' : 'nothing handed over';
  cards.push(card('Memory handed over', `${esc(fmtBytes(f.memory.handedOverBytes))} <small>of ${esc(fmtBytes(f.memory.guestBytes))}</small>`, `${pct(f.memory.handedOverBytes, f.memory.guestBytes)} · ${how}`));
  const peakLabel = `peak host memory ${fmtBytes(f.memory.peakBytes)} of a ${fmtBytes(f.memory.budgetBytes)} budget (${pct(f.memory.peakBytes, f.memory.budgetBytes)})`;
  cards.push(
    card(
      'Peak host memory',
      `${esc(fmtBytes(f.memory.peakBytes))} <small>of ${esc(fmtBytes(f.memory.budgetBytes))}</small>`,
      `${f.memory.overBudget ? '<span class="bad">OVER BUDGET</span> · ' : `${pct(f.memory.peakBytes, f.memory.budgetBytes)} of budget · `}budget = guest RAM + ${esc(fmtBytes(f.memory.marginBytes))} margin`,
      meter(f.memory.peakBytes, f.memory.budgetBytes, peakLabel),
    ),
  );
  cards.push(
    card(
      'Recovery VM',
      rec.vm ? (rec.vm.length > 22 ? `<span class="long">${esc(rec.vm, 120)}</span>` : esc(rec.vm, 80)) : 'none',
      rec.startedAtMs !== null ? `started at ${esc(fmtMs(rec.startedAtMs))}${rec.recoveredAtMs !== null ? `, healthy at ${esc(fmtMs(rec.recoveredAtMs))}` : ', never healthy'}` : 'no recovery VM was started',
    ),
  );
  return `<section aria-labelledby="figures-h"><h2 id="figures-h">Key figures</h2><dl class="cards">${cards.join('')}</dl></section>`;
}

function pagesSection(r: CrashReport, f: ReportFigures): string {
  if (!(f.pages.total > 0)) return '';
  const parts = [
    { key: 'dumped', label: f.pages.notWritten > 0 ? 'dumped (durable)' : 'dumped', pages: f.pages.dumped },
    ...(f.pages.notWritten > 0 ? [{ key: 'notWritten', label: 'not written (dump stopped)', pages: f.pages.notWritten }] : []),
    ...f.pages.excluded,
  ];
  let other = 0;
  const color = (key: string) => PAGE_COLORS[key] ?? OTHER_COLORS[other++ % OTHER_COLORS.length]!;
  const rows = parts.map((p) => ({ ...p, color: color(p.key), what: p.key === 'notWritten' ? 'selected for the dump, never written: the dump stopped early' : (PAGE_CLASSES.find((c) => c.key === p.key)?.what ?? 'excluded by a filter plugin') }));
  const total = f.pages.total;
  let x = 0;
  const segs = rows
    .filter((p) => p.pages > 0)
    .map((p) => {
      const w = (1000 * p.pages) / total;
      const s = `<rect x="${x.toFixed(2)}" y="0" width="${Math.max(0, w).toFixed(2)}" height="28" fill="${p.color}" stroke="#fff" stroke-width="1"><title>${esc(p.label)}: ${esc(fmtCount(p.pages))} pages (${pct(p.pages, total)})</title></rect>`;
      x += w;
      return s;
    });
  const accounted = parts.reduce((s, p) => s + p.pages, 0);
  const table = rows
    .map(
      (p) =>
        `<tr><th scope="row"><span class="sw" aria-hidden="true"><svg width="14" height="14"><rect width="14" height="14" fill="${p.color}"/></svg></span> ${esc(p.label)}</th><td class="num">${esc(fmtCount(p.pages))}</td><td class="num">${esc(fmtBytes(p.pages * PAGE_SIZE))}</td><td class="num">${pct(p.pages, total) || '0%'}</td><td>${esc(p.what)}</td></tr>`,
    )
    .join('');
  const note =
    accounted === total
      ? `The classes add up to the guest's ${esc(fmtCount(total))} RAM pages (4 KiB each).`
      : `<span class="bad">The classes add up to ${esc(fmtCount(accounted))}, not to the ${esc(fmtCount(total))} RAM pages</span> (a filter plugin did not account for all the pages it excluded).`;
  return `<section aria-labelledby="pages-h"><h2 id="pages-h">Pages by class</h2>
<svg class="pagebar" viewBox="0 0 1000 28" preserveAspectRatio="none" width="100%" height="28" role="img" aria-label="${esc(`pages: ${rows.map((p) => `${p.label} ${fmtCount(p.pages)}`).join(', ')}`)}">${segs.join('')}</svg>
<table class="data"><thead><tr><th scope="col">class</th><th scope="col" class="num">pages</th><th scope="col" class="num">bytes</th><th scope="col" class="num">share</th><th scope="col">what</th></tr></thead><tbody>${table}</tbody></table>
<p class="note">${note}</p></section>`;
}

function eventsSection(r: CrashReport): string {
  const ev = [...r.timeline.events].filter((e) => Number.isFinite(e.tMs)).sort((a, b) => a.tMs - b.tMs);
  if (!ev.length) return '';
  const rows = ev
    .slice(0, 400)
    .map((e, i) => `<tr${e.event === 'failed' || e.event === 'dump-incomplete' ? ' class="bad-row"' : ''}><td class="num">${i + 1}</td><td class="num">${esc(fmtCount(e.tMs))} ms</td><td><code>${esc(e.event, 80)}</code></td><td class="wrap">${esc(e.detail ?? '', 1000)}</td></tr>`)
    .join('');
  return `<section aria-labelledby="events-h"><h2 id="events-h">Events</h2><table class="data events"><thead><tr><th scope="col" class="num">#</th><th scope="col" class="num">time since crash</th><th scope="col">event</th><th scope="col">detail</th></tr></thead><tbody>${rows}</tbody></table></section>`;
}

function kv(rows: [string, string | null | undefined][]): string {
  return `<table class="kv"><tbody>${rows
    .filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => `<tr><th scope="row">${k}</th><td>${v}</td></tr>`)
    .join('')}</tbody></table>`;
}

function detailsSection(r: CrashReport): string {
  const d = r.dump;
  const present = reportFigures(r).dump.present;
  const dump = !present
    ? kv([['dump', r.mode === 'restart-only' ? 'none: restart-only takes no dump' : 'none written'], ['fallback', d.fallback ? esc(d.fallback.reason, 500) : null]])
    : kv([
    ['file', d.file ? `<code>${esc(d.file, 500)}</code>` : null],
    ['format', d.format ? esc(d.format) : null],
    ['compression', d.compression ? esc(d.compression) : null],
    ['dump level', d.level !== undefined ? String(d.level) : null],
    ['bytes written', `${esc(fmtBytes(d.bytesWritten))} (${esc(fmtCount(d.bytesWritten))} B)`],
    ['complete', d.complete ? 'yes' : '<span class="bad">no</span>'],
    ['chunks', `${esc(fmtCount(d.chunks))}${d.chunkBytes ? ` of ${esc(fmtBytes(d.chunkBytes))}` : ''}`],
    ['started', d.startedAtMs !== undefined ? `${esc(fmtCount(d.startedAtMs))} ms after the crash` : null],
    ['finished', d.finishedAtMs !== undefined ? `${esc(fmtCount(d.finishedAtMs))} ms after the crash` : null],
    ['duration', d.seconds !== undefined ? esc(fmtSeconds(d.seconds)) : null],
    ['output', d.sink ? esc(d.sink, 300) : null],
    ['fallback', d.fallback ? `<span class="bad">full dump</span>: ${esc(d.fallback.reason, 500)} (<code>${esc(d.fallback.code)}</code>, plugin ${esc(d.fallback.plugin)})` : null],
  ]);
  const rc = r.recovery;
  const recovery = kv([
    ['recovery VM', rc.vm ? esc(rc.vm, 200) : 'none'],
    ['started', rc.startedAtMs !== undefined ? `${esc(fmtCount(rc.startedAtMs))} ms after the crash` : null],
    ['initial memory', rc.initialBytes !== undefined ? esc(fmtBytes(rc.initialBytes)) : null],
    ['healthy', rc.recoveredAtMs !== undefined ? `${esc(fmtCount(rc.recoveredAtMs))} ms after the crash` : 'not within the session'],
    ['health check', rc.check ? esc(rc.check, 300) : null],
    ['memory released at once', r.memory.releasesImmediately ? 'yes (release() frees host memory immediately)' : 'no (freed when the crashed VM is destroyed)'],
  ]);
  const session = kv([
    ['session', `<code>${esc(r.sessionId, 200)}</code>`],
    ['VM', `${esc(r.vm.name, 200)} (id <code>${esc(r.vm.id, 200)}</code>, ${esc(fmtBytes(r.vm.memoryBytes))} RAM)`],
    ['backend', `${esc(r.backend, 100)}${r.simulated ? ' <span class="badge sim small">SIMULATED</span>' : ''}`],
    ['mode', `${esc(r.mode)} — ${esc(MODE_LABEL[r.mode] ?? '')}`],
    ['crash', `${esc(fmtWallClock(r.crash.at))}: ${esc(r.crash.reason, 500)}`],
    ['state', esc(STATE_LABEL[r.state] ?? r.state)],
  ]);
  return `<section aria-labelledby="details-h"><h2 id="details-h">Details</h2><div class="cols">
<div><h3>Session</h3>${session}</div><div><h3>Dump</h3>${dump}</div><div><h3>Recovery</h3>${recovery}</div></div></section>`;
}

function warningsSection(r: CrashReport): string {
  if (!r.warnings.length) return '';
  const items = r.warnings
    .slice(0, 200)
    .map((w) => `<li><code>${esc(w.code, 80)}</code>${w.plugin ? ` <span class="muted">(${esc(w.plugin, 80)})</span>` : ''} ${esc(w.message, 2000)}</li>`)
    .join('');
  return `<section aria-labelledby="warnings-h"><h2 id="warnings-h">Warnings <small>(${r.warnings.length})</small></h2><ul class="warnings">${items}</ul></section>`;
}

/** Evenly sampled rows of a long series (first and last always kept). */
function sample<T>(s: readonly T[], max: number): T[] {
  if (s.length <= max) return [...s];
  const out: T[] = [];
  for (let i = 0; i < max; i++) out.push(s[Math.round((i * (s.length - 1)) / (max - 1))]!);
  return out;
}

function dataTable(caption: string, heads: string[], rows: string[][], total: number): string {
  if (!total) return '';
  const note = rows.length < total ? ` <small>(${rows.length} of ${fmtCount(total)} samples, evenly spaced; report.json has all)</small>` : '';
  return `<details><summary>${esc(caption)} <small>(${fmtCount(total)})</small></summary><table class="data"><caption>${esc(caption)}${note}</caption><thead><tr>${heads.map((h) => `<th scope="col" class="num">${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td class="num">${c}</td>`).join('')}</tr>`).join('')}</tbody></table></details>`;
}

function dataSection(r: CrashReport): string {
  const tl = r.timeline;
  const ms = (t: number) => esc(fmtCount(t));
  const parts = [
    dataTable('Pages dumped over time', ['ms', 'pages written', 'bytes written'], sample(tl.dump, MAX_TABLE_ROWS).map((p) => [ms(p.tMs), esc(fmtCount(p.pagesWritten)), esc(fmtBytes(p.bytesWritten))]), tl.dump.length),
    dataTable('Memory handed over', ['ms', 'handed over'], sample(tl.handover, MAX_TABLE_ROWS).map((p) => [ms(p.tMs), esc(fmtBytes(p.handedOverBytes))]), tl.handover.length),
    dataTable('Host memory per VM', ['ms', 'crashed VM', 'recovery VM', 'sum'], sample(tl.memory, MAX_TABLE_ROWS).map((p) => [ms(p.tMs), esc(fmtBytes(p.crashedBytes)), esc(fmtBytes(p.recoveryBytes)), esc(fmtBytes(p.crashedBytes + p.recoveryBytes))]), tl.memory.length),
    dataTable(
      'I/O shares',
      ['ms', 'dump writer', 'recovery VM', 'policy', 'reason'],
      sample(tl.shares, MAX_TABLE_ROWS).map((p) => [ms(p.tMs), esc(fmtBps(p.dumpBps)), esc(fmtBps(p.recoveryBps)), esc(p.policy ?? '', 80), esc(p.reason ?? '', 300)]),
      tl.shares.length,
    ),
    dataTable('Recovery VM disk rates', ['ms', 'read', 'write'], sample(tl.recoveryIo, MAX_TABLE_ROWS).map((p) => [ms(p.tMs), esc(fmtBps(p.readBps)), esc(fmtBps(p.writeBps))]), tl.recoveryIo.length),
  ].filter(Boolean);
  if (!parts.length) return '';
  return `<section aria-labelledby="data-h"><h2 id="data-h">Timeline data</h2><p class="note">The numbers behind the timeline, for screen readers and for copying.</p>${parts.join('')}</section>`;
}

function triageSection(r: CrashReport): string {
  const out: string[] = [];
  const lines = r.triage.lastLines;
  if (Array.isArray(lines) && lines.length) {
    const shown = lines.slice(-200).map((l) => esc(l, 1000)).join('\n');
    out.push(`<details><summary>Last console lines of the crashed guest <small>(${lines.length})</small></summary><pre class="console"><code>${shown}</code></pre></details>`);
  }
  const extra = r.extra && Object.keys(r.extra).length ? JSON.stringify(r.extra, null, 2) : '';
  if (extra) out.push(`<details><summary>Backend and plugin details (<code>extra</code>)</summary><pre class="console"><code>${esc(extra, 20000)}</code></pre></details>`);
  const triageRest = Object.entries(r.triage).filter(([k]) => !['panicLine', 'lastLines', 'source', 'atMs'].includes(k));
  if (triageRest.length) out.push(`<details><summary>Other triage findings</summary><pre class="console"><code>${esc(JSON.stringify(Object.fromEntries(triageRest), null, 2), 20000)}</code></pre></details>`);
  if (!out.length) return '';
  return `<section aria-labelledby="more-h"><h2 id="more-h">More</h2>${out.join('')}</section>`;
}

const CSS = `
:root{--ink:#1f2328;--muted:#59636e;--bg:#f6f8fa;--card:#fff;--line:#d0d7de;--bad:#b53f00;--sim:#7d4e00;--simbg:#fff1c2;--accent:${COLORS.dump}}
@media (prefers-color-scheme:dark){:root{--ink:#e6edf3;--muted:#9198a1;--bg:#0d1117;--card:#161b22;--line:#30363d;--bad:#ff8a4c;--sim:#ffd666;--simbg:#3b2e00;--accent:#58a6ff}}
*{box-sizing:border-box}
html{background:var(--bg);color:var(--ink)}
body{margin:0;font:15px/1.45 system-ui,"DejaVu Sans","Liberation Sans",Arial,sans-serif}
main{max-width:1280px;margin:0 auto;padding:20px 28px 40px}
h1{font-size:28px;margin:6px 0 4px;line-height:1.2}
h2{font-size:19px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:0 0 6px}
small{font-weight:normal;color:var(--muted)}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono","Liberation Mono",monospace;font-size:13px}
.muted,.note{color:var(--muted)}
.note{font-size:13px;margin:6px 0}
.bad{color:var(--bad);font-weight:700}
.badges{display:flex;gap:8px;flex-wrap:wrap}
.badge{display:inline-block;border:1px solid var(--line);border-radius:999px;padding:2px 10px;font-size:13px;font-weight:600;background:var(--card)}
.badge.sim{background:repeating-linear-gradient(45deg,var(--simbg),var(--simbg) 8px,transparent 8px,transparent 14px);color:var(--sim);border:2px solid var(--sim);letter-spacing:.08em}
.badge.small{font-size:11px;padding:0 6px}
.badge.state-failed,.badge.state-interrupted,.badge.state-running{color:var(--bad);border-color:var(--bad)}
.meta{color:var(--muted);margin:2px 0 10px}
.meta span+span::before{content:" · "}
.banner{border:2px dashed var(--sim);background:var(--simbg);color:var(--ink);border-radius:6px;padding:8px 12px;margin:10px 0}
.alert{border:2px solid var(--bad);border-radius:6px;padding:8px 12px;margin:10px 0;background:var(--card)}
.panic{border:1px solid var(--line);border-left:5px solid ${COLORS.down};border-radius:6px;background:var(--card);padding:8px 12px;margin:10px 0}
.panic-h{font-size:13px;color:var(--muted);font-weight:600}
.panic pre{margin:4px 0 0;white-space:pre-wrap;overflow-wrap:anywhere;font-size:14px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:12px;margin:0}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:0}
.card dt{font-size:13px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.card dd{margin:0}
.card .big{font-size:26px;font-weight:700;line-height:1.25;overflow-wrap:anywhere}
.card .big small{font-size:14px}
.card .big .long{font-size:17px;line-height:1.3;display:inline-block}
.card .sub{font-size:13px;color:var(--muted);overflow-wrap:anywhere}
.card .meter{margin-top:6px}
figure{margin:0}
.timeline{background:#fff;border:1px solid var(--line);border-radius:8px;padding:8px;overflow-x:auto}
.timeline svg{display:block;width:100%;height:auto;min-width:900px}
.timeline figcaption{color:#59636e;font-size:13px;padding:4px 6px 2px}
.pagebar{display:block;border-radius:4px;margin:4px 0 8px}
table{border-collapse:collapse}
.data{width:100%;font-size:13px;background:var(--card)}
.data caption{text-align:left;color:var(--muted);padding:4px 0}
.data th,.data td{border-bottom:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
.data .num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.data .wrap{overflow-wrap:anywhere}
.data.events th:nth-child(-n+3),.data.events td:nth-child(-n+3){width:1%;white-space:nowrap}
.bad-row td{color:var(--bad)}
.sw svg{vertical-align:-2px}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:18px}
.kv{font-size:13px;width:100%}
.kv th{text-align:left;color:var(--muted);font-weight:600;padding:2px 12px 2px 0;white-space:nowrap;vertical-align:top}
.kv td{padding:2px 0;overflow-wrap:anywhere}
.warnings{padding-left:20px;font-size:14px}
details{margin:6px 0;background:var(--card);border:1px solid var(--line);border-radius:6px;padding:6px 10px}
summary{cursor:pointer;font-weight:600}
.console{white-space:pre-wrap;overflow-wrap:anywhere;max-height:480px;overflow:auto;margin:6px 0 0}
footer{color:var(--muted);font-size:12px;margin-top:30px;border-top:1px solid var(--line);padding-top:8px}
@media print{html{background:#fff}.card,.timeline,section{break-inside:avoid}details{border:none}}
`;

/** Render a crash report as a self-contained HTML page. */
export function renderReportHtml(r: CrashReport, o: HtmlOptions = {}): string {
  const f = reportFigures(r);
  const title = `${r.simulated ? '[SIMULATED] ' : ''}Crash of ${sanitizeText(r.vm.name, 120)} — Vicover report`;
  const panic = r.triage.panicLine
    ? `<div class="panic" role="note" aria-label="panic line"><div class="panic-h">Panic line${r.triage.source ? ` <small>(from ${esc(r.triage.source, 120)}${r.triage.atMs !== undefined ? `, found ${esc(fmtMs(r.triage.atMs))} after the crash` : ''})</small>` : ''}</div><pre><code>${esc(r.triage.panicLine, 4000)}</code></pre></div>`
    : `<div class="panic" role="note"><div class="panic-h">Panic line</div><p class="muted">unknown${r.mode === 'restart-only' ? ' (restart-only: no triage)' : ' (triage found none)'}</p></div>`;
  const banner = r.simulated
    ? `<p class="banner" role="note"><strong>SIMULATED.</strong> This crash ran on Vicover's simulated host: the VMs, their memory and disk are modelled, and the times and rates below come from the model, not from a hypervisor.</p>`
    : '';
  const alert = r.error
    ? `<div class="alert" role="alert"><strong>The session failed: <code>${esc(r.error.code, 80)}</code></strong><br>${esc(r.error.message, 4000)}</div>`
    : r.state === 'interrupted'
      ? `<div class="alert" role="status"><strong>The session was interrupted</strong> (daemon stopped); its journal lets the next daemon resume it.</div>`
      : '';
  const svg = renderReportSvg(r, { standalone: false, idPrefix: 'vcv' });
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'">
<meta name="referrer" content="no-referrer">
<meta name="generator" content="@vicover/report">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<header>
<div class="badges">${r.simulated ? '<span class="badge sim">SIMULATED</span>' : ''}<span class="badge">mode: ${esc(r.mode)}</span><span class="badge state-${esc(r.state)}">${esc(STATE_LABEL[r.state] ?? r.state)}</span><span class="badge">backend: ${esc(r.backend, 60)}</span></div>
<h1>Crash of ${esc(r.vm.name, 200)}</h1>
<p class="meta"><span>crashed <time datetime="${esc(r.crash.at, 64)}">${esc(fmtWallClock(r.crash.at))}</time></span><span>${esc(r.crash.reason, 300)}</span><span>${esc(fmtBytes(r.vm.memoryBytes))} guest RAM</span><span>${esc(MODE_LABEL[r.mode] ?? r.mode)}</span></p>
${banner}${alert}${panic}
</header>
${keyFigures(r, f)}
<section aria-labelledby="timeline-h"><h2 id="timeline-h">Timeline <small>(time since the crash; hover for details)</small></h2>
<figure class="timeline">${svg}<figcaption>${esc(timelineSummary(r), 8000)}</figcaption></figure></section>
${pagesSection(r, f)}
${eventsSection(r)}
${warningsSection(r)}
${detailsSection(r)}
${dataSection(r)}
${triageSection(r)}
<footer>Rendered by Vicover (@vicover/report) from ${o.source ? `<code>${esc(o.source, 500)}</code>` : 'a crash report'} (reportVersion ${esc(String(r.reportVersion))}, session <code>${esc(r.sessionId, 200)}</code>)${o.renderedAt ? ` on ${esc(o.renderedAt.toISOString())}` : ''}. Times are milliseconds since the crash; sizes in IEC units (1 MiB = 1,048,576 bytes).</footer>
</main>
</body>
</html>
`;
}
