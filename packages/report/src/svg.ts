/**
 * The timeline: one hand-written SVG, every lane on one shared time axis (ms since the crash).
 *
 *   Events        ◆ numbered markers, labels in rows; key events draw a guide line through all lanes
 *   Phases        service DOWN/UP · crashed VM alive · dump writing · recovery VM booting/healthy
 *   Pages dumped  cumulative pages written (timeline.dump)
 *   Memory        host memory of the crashed VM + the recovery VM (stacked, timeline.memory),
 *                 memory handed over (step, timeline.handover), guest RAM and budget lines
 *   I/O shares    the policy's limits for the dump writer and the recovery VM (step; null = unlimited)
 *   Recovery disk the recovery VM's measured read/write rates (timeline.recoveryIo)
 *
 * Nothing depends on colour alone: bands carry words and hatching, lines differ in dash pattern,
 * every lane has a legend, and marks carry <title> tooltips. Empty lanes say why they are empty.
 */
import type { CrashReport } from '@vicover/core';
import { esc, sanitizeText, fmtBps, fmtBytes, fmtCount, fmtMs, fmtSeconds, pct } from './format.js';
import { reportFigures } from './figures.js';
import { bytesAxis, countAxis, timeAxis, type Axis } from './scale.js';

export interface TimelineSvgOptions {
  /** viewBox width (the SVG scales to its container). Default 1200. */
  width?: number;
  /** Prefix of element ids (patterns, title), unique per page. Default "vcv". */
  idPrefix?: string;
  /** A standalone SVG document (with xmlns) rather than an element to inline in HTML. Default true. */
  standalone?: boolean;
}

/** Colours: the Okabe–Ito palette (distinguishable with the common colour-vision deficiencies). */
export const COLORS = {
  ink: '#1f2328',
  muted: '#59636e',
  grid: '#e3e7eb',
  down: '#d55e00',
  downBg: '#fbe1d0',
  up: '#009e73',
  dump: '#0072b2',
  dumpBg: '#cfe3f1',
  crashed: '#56b4e9',
  recovery: '#e69f00',
  recoveryBg: '#fbe9c2',
  handover: '#1f2328',
  budget: '#cc79a7',
  read: '#009e73',
  write: '#cc79a7',
} as const;

const FONT = 12;
/** Rough width of a text in px (DejaVu/Liberation Sans at 12 px average ≈ 0.6 em; errs wide). */
const tw = (s: string, size = FONT) => s.length * size * 0.6;
/** Coordinates with one decimal: short paths, no exponent notation. */
const n = (v: number) => (Number.isFinite(v) ? String(Math.round(v * 10) / 10) : '0');

const FAILURE_EVENTS = new Set(['failed', 'dump-incomplete', 'interrupted']);
const GUIDE_EVENTS = new Set(['recovery-started', 'recovered', 'dump-complete', 'dump-incomplete', 'crashed-vm-destroyed', 'failed', 'interrupted']);

interface Pt {
  tMs: number;
}

/** Finite time stamps only, sorted (stable) by time. */
function clean<T extends Pt>(s: readonly T[] | undefined): T[] {
  return (s ?? []).filter((p) => p && Number.isFinite(p.tMs)).sort((a, b) => a.tMs - b.tMs);
}

/**
 * At most a few points per pixel column: per column keep the first, the last and the extremes of
 * each value, so peaks survive thinning (long sessions sample every 100–250 ms).
 */
export function thin<T extends Pt>(pts: readonly T[], px: (t: number) => number, values: ((p: T) => number | null)[]): T[] {
  if (pts.length <= 2000) return [...pts];
  const keep = new Set<number>();
  let col = NaN;
  let first = 0;
  const flush = (end: number) => {
    if (end <= first) return;
    keep.add(first);
    keep.add(end - 1);
    for (const v of values) {
      let lo = first;
      let hi = first;
      for (let i = first; i < end; i++) {
        const a = v(pts[i]!) ?? Infinity;
        if (a < (v(pts[lo]!) ?? Infinity)) lo = i;
        if (a > (v(pts[hi]!) ?? -Infinity)) hi = i;
      }
      keep.add(lo);
      keep.add(hi);
    }
  };
  for (let i = 0; i < pts.length; i++) {
    const c = Math.round(px(pts[i]!.tMs));
    if (c !== col) {
      flush(i);
      col = c;
      first = i;
    }
  }
  flush(pts.length);
  return [...keep].sort((a, b) => a - b).map((i) => pts[i]!);
}

interface LegendItem {
  label: string;
  swatch: string;
}

const lineSwatch = (cls: string) => `<line x1="0" y1="6" x2="22" y2="6" class="${cls}"/>`;
const boxSwatch = (fill: string, stroke = 'none') => `<rect x="0" y="0" width="22" height="12" fill="${fill}" stroke="${stroke}"/>`;

/** A prose description of the whole timeline, plain text (the SVG's <desc>, the page's caption; escape it for HTML). */
export function timelineSummary(r: CrashReport): string {
  const f = reportFigures(r);
  const s: string[] = [];
  s.push(
    f.recovery.recoveredAtMs !== null
      ? `The service was down from the crash until ${fmtMs(f.recovery.recoveredAtMs)}, when the recovery VM ${sanitizeText(f.recovery.vm ?? '')} passed its health check${f.recovery.check ? ` (${sanitizeText(f.recovery.check, 200)})` : ''}.`
      : 'The service did not come back within the session.',
  );
  if (f.dump.present) {
    s.push(
      `The dump wrote ${fmtCount(f.pages.dumped)} of ${fmtCount(f.pages.total)} pages (${fmtBytes(f.dump.bytesWritten)}) from ${fmtMs(r.dump.startedAtMs)} to ${fmtMs(r.dump.finishedAtMs)} and is ${f.dump.complete ? 'complete' : 'INCOMPLETE'}.`,
    );
  } else s.push(r.mode === 'restart-only' ? 'No dump was taken (restart-only).' : 'No dump was written.');
  const last = clean(r.timeline.handover).at(-1);
  if (last)
    s.push(
      `${fmtBytes(f.memory.handedOverBytes)} of ${fmtBytes(f.memory.guestBytes)} guest memory ${f.memory.handover === 'chunked' ? `was handed over to the recovery VM chunk by chunk in ${r.timeline.handover.length} steps, the last` : 'was handed over at once'} at ${fmtMs(last.tMs)}.`,
    );
  else s.push('No memory was handed over.');
  s.push(`Peak host memory ${fmtBytes(f.memory.peakBytes)} against a budget of ${fmtBytes(f.memory.budgetBytes)}${f.memory.overBudget ? ' (OVER BUDGET)' : ''}.`);
  const shares = r.timeline.shares;
  if (shares.length) {
    const policies = [...new Set(shares.map((p) => p.policy).filter(Boolean))];
    s.push(`The I/O policy ${sanitizeText(policies.join(', ') || '(unnamed)', 200)} changed the shares ${shares.length} time(s).`);
  }
  return s.join(' ');
}

/** Render the timeline as SVG markup. */
export function renderReportSvg(r: CrashReport, o: TimelineSvgOptions = {}): string {
  const W = Math.max(600, o.width ?? 1200);
  const P = (o.idPrefix ?? 'vcv').replace(/[^A-Za-z0-9_-]/g, '') || 'vcv';
  const L = 112; // gutter for row names and y-axis labels
  const R = 24;
  const PW = W - L - R;
  const f = reportFigures(r);
  const endMs = f.endMs;
  const ax = timeAxis(endMs * 1.015);
  const x = (t: number) => L + (Math.min(Math.max(t, 0), ax.max) / ax.max) * PW;
  const xEnd = x(endMs);
  const xMax = L + PW;

  const body: string[] = [];
  const guides: { x: number; label: string; bad: boolean }[] = [];
  let y = 6;
  let plotTop = 0;

  const header = (title: string, items: LegendItem[], note?: string) => {
    const ty = y + 14;
    body.push(`<text x="${L}" y="${ty}" class="vcv-lane-title">${esc(title)}</text>`);
    let lx = L + tw(title, 13) + 18;
    for (const it of items) {
      const w = 28 + tw(it.label, 11);
      if (lx + w > xMax + 8) break; // legends that do not fit are in the page's data tables
      body.push(`<g transform="translate(${n(lx)},${ty - 10})">${it.swatch}<text x="28" y="10" class="vcv-legend">${esc(it.label)}</text></g>`);
      lx += w + 14;
    }
    if (note && lx + tw(note, 11) < xMax) body.push(`<text x="${xMax}" y="${ty}" text-anchor="end" class="vcv-note">${esc(note, 300)}</text>`);
    y += 22;
  };

  const emptyLane = (message: string) => {
    body.push(`<rect x="${L}" y="${y}" width="${n(PW)}" height="28" class="vcv-empty"/>`);
    body.push(`<text x="${L + 10}" y="${y + 18}" class="vcv-note">${esc(message, 300)}</text>`);
    y += 28 + 16;
  };

  const yAxis = (top: number, h: number, a: Axis) => {
    const out: string[] = [];
    for (const v of a.ticks) {
      const yy = top + h - (v / a.max) * h;
      out.push(`<line x1="${L}" x2="${n(xMax)}" y1="${n(yy)}" y2="${n(yy)}" class="vcv-hgrid"/>`);
      out.push(`<text x="${L - 6}" y="${n(yy + 4)}" text-anchor="end" class="vcv-tick">${esc(a.label(v))}</text>`);
    }
    out.push(`<rect x="${L}" y="${top}" width="${n(PW)}" height="${h}" class="vcv-frame"/>`);
    return out.join('');
  };

  // ── events ────────────────────────────────────────────────────────────────
  const events = clean(r.timeline.events).slice(0, 400);
  {
    const MAX_ROWS = 6;
    const rowEnds: number[] = [];
    const placed: { xi: number; row: number; text: string; i: number }[] = [];
    events.forEach((e, i) => {
      const xi = x(e.tMs);
      const tryPlace = (text: string): boolean => {
        const w = tw(text, 11) + 6;
        if (xi + 3 + w > xMax + R) return tryLeft(text, w);
        let row = rowEnds.findIndex((end) => end <= xi);
        if (row < 0 && rowEnds.length < MAX_ROWS) row = rowEnds.push(0) - 1;
        if (row < 0) return false;
        rowEnds[row] = xi + 3 + w;
        placed.push({ xi, row, text, i });
        return true;
      };
      // Near the right edge, the label goes left of the marker (text-anchor end).
      const tryLeft = (text: string, w: number): boolean => {
        let row = rowEnds.findIndex((end) => end <= xi - w);
        if (row < 0 && rowEnds.length < MAX_ROWS) row = rowEnds.push(0) - 1;
        if (row < 0) return false;
        rowEnds[row] = xi + 1;
        placed.push({ xi: -xi, row, text, i });
        return true;
      };
      if (!tryPlace(`${i + 1} ${e.event}`)) tryPlace(`${i + 1}`);
      if (GUIDE_EVENTS.has(e.event)) guides.push({ x: xi, label: `${i + 1}`, bad: FAILURE_EVENTS.has(e.event) });
    });
    header('Events', [], events.length ? 'numbers refer to the event table' : undefined);
    const rows = Math.max(1, rowEnds.length);
    const axisY = y + rows * 15 + 8;
    for (const p of placed) {
      const left = p.xi < 0;
      const xi = Math.abs(p.xi);
      const ly = axisY - 10 - p.row * 15;
      body.push(`<line x1="${n(xi)}" x2="${n(xi)}" y1="${axisY}" y2="${ly - 9}" class="vcv-leader"/>`);
      body.push(`<text x="${n(left ? xi - 3 : xi + 3)}" y="${ly}" ${left ? 'text-anchor="end" ' : ''}class="vcv-ev-label vcv-halo">${esc(p.text, 80)}</text>`);
    }
    body.push(`<line x1="${L}" x2="${n(xMax)}" y1="${axisY}" y2="${axisY}" class="vcv-axis"/>`);
    events.forEach((e, i) => {
      const xi = x(e.tMs);
      const title = `<title>${i + 1}. ${fmtMs(e.tMs)}: ${esc(e.event, 80)}${e.detail ? ` — ${esc(e.detail, 300)}` : ''}</title>`;
      if (FAILURE_EVENTS.has(e.event)) body.push(`<path d="M${n(xi - 5)},${axisY - 5}l10,10m0,-10l-10,10" class="vcv-ev-bad">${title}</path>`);
      else if (e.event === 'recovered') body.push(`<circle cx="${n(xi)}" cy="${axisY}" r="5" class="vcv-ev-good">${title}</circle>`);
      else body.push(`<path d="M${n(xi)},${axisY - 5}l5,5l-5,5l-5,-5z" class="vcv-ev">${title}</path>`);
    });
    if (!events.length) body.push(`<text x="${L + 10}" y="${axisY - 6}" class="vcv-note">no events recorded</text>`);
    plotTop = axisY;
    y = axisY + 18;
  }

  // ── phases ────────────────────────────────────────────────────────────────
  {
    header('Phases', [
      { label: 'service down', swatch: boxSwatch(`url(#${P}-hatch-down)`, COLORS.down) },
      { label: 'service up', swatch: boxSwatch(COLORS.up) },
      { label: 'dump writing', swatch: boxSwatch(COLORS.dump) },
      { label: 'recovery VM booting', swatch: boxSwatch(`url(#${P}-hatch-boot)`, COLORS.recovery) },
      { label: 'healthy', swatch: boxSwatch(COLORS.recovery) },
    ]);
    const RH = 20;
    const row = (name: string, draw: (top: number) => string) => {
      body.push(`<text x="${L - 8}" y="${y + 14}" text-anchor="end" class="vcv-row-name">${esc(name)}</text>`);
      body.push(`<rect x="${L}" y="${y}" width="${n(PW)}" height="${RH}" class="vcv-track"/>`);
      body.push(draw(y));
      y += RH + 6;
    };
    /**
     * A bar with the first of `labels` that fits inside it; when none fits and the track is free to
     * the right (`beside`), the first label goes there. Otherwise the bar keeps only its tooltip.
     */
    const bar = (x0: number, x1: number, top: number, fill: string, labels: string[], title: string, light: boolean, beside = false) => {
      const w = Math.max(1.5, x1 - x0);
      const out = [`<rect x="${n(x0)}" y="${top}" width="${n(w)}" height="${RH}" fill="${fill}"><title>${esc(title, 400)}</title></rect>`];
      const inside = labels.find((l) => tw(l) + 10 <= w);
      if (inside !== undefined) out.push(`<text x="${n(x0 + w / 2)}" y="${top + 14}" text-anchor="middle" class="${light ? 'vcv-bar-label vcv-halo' : 'vcv-bar-label-inv'}">${esc(inside, 200)}</text>`);
      else if (beside && labels[0] && x0 + w + 6 + tw(labels[0]) <= xMax) out.push(`<text x="${n(x0 + w + 6)}" y="${top + 14}" class="vcv-bar-label vcv-halo">${esc(labels[0], 200)}</text>`);
      return out.join('');
    };
    const rec = f.recovery.recoveredAtMs;
    row('Service', (top) => {
      const downEnd = rec ?? endMs;
      let s = bar(x(0), x(downEnd), top, `url(#${P}-hatch-down)`, rec !== null ? [`DOWN ${fmtMs(rec)}`, 'DOWN'] : ['DOWN — not back within the session', 'DOWN'], rec !== null ? `service down from the crash to ${fmtMs(rec)}` : 'service down: not back within the session', true, rec === null);
      if (rec !== null) s += bar(x(rec), xMax, top, COLORS.up, ['UP'], `service up from ${fmtMs(rec)} (health check: ${f.recovery.check ?? 'n/a'})`, false);
      return s;
    });
    row('Crashed VM', (top) => {
      const destroyed = events.find((e) => e.event === 'crashed-vm-destroyed');
      const memEnd = clean(r.timeline.memory).filter((m) => m.crashedBytes > 0).at(-1)?.tMs;
      const end = destroyed?.tMs ?? memEnd ?? endMs;
      const how = r.mode === 'vicover' && f.memory.handover === 'chunked' ? 'gives memory back chunk by chunk' : 'holds all its memory';
      const label = destroyed ? `${how}; destroyed at ${fmtMs(destroyed.tMs)}` : r.backend === 'offline' ? 'offline dump: no VM' : `${how}; not destroyed`;
      return bar(x(0), x(end), top, COLORS.crashed, [label, destroyed ? `destroyed at ${fmtMs(destroyed.tMs)}` : how], `crashed VM ${r.vm.name}: ${label}`, true, true);
    });
    row('Dump', (top) => {
      if (!f.dump.present) return `<text x="${L + 8}" y="${top + 14}" class="vcv-note">${r.mode === 'restart-only' ? 'no dump (restart-only)' : 'no dump written'}</text>`;
      const s = r.dump.startedAtMs ?? clean(r.timeline.dump)[0]?.tMs ?? 0;
      const e = r.dump.finishedAtMs ?? endMs;
      const dur = fmtSeconds(r.dump.seconds ?? (e - s) / 1000);
      return r.dump.complete
        ? bar(x(s), x(e), top, COLORS.dump, [`writing ${dur} — complete ✓`, `${dur} ✓`, '✓'], `dump written from ${fmtMs(s)} to ${fmtMs(e)}: complete`, false, true)
        : bar(x(s), x(e), top, `url(#${P}-hatch-down)`, [`writing ${dur} — INCOMPLETE ✗`, `${dur} INCOMPLETE ✗`, '✗'], `dump written from ${fmtMs(s)} to ${fmtMs(e)}: INCOMPLETE`, true, true);
    });
    row('Recovery VM', (top) => {
      const st = f.recovery.startedAtMs;
      if (st === null) return `<text x="${L + 8}" y="${top + 14}" class="vcv-note">no recovery VM started</text>`;
      const name = f.recovery.vm ?? 'recovery VM';
      let s = bar(x(st), x(rec ?? endMs), top, `url(#${P}-hatch-boot)`, rec !== null ? ['booting', 'boot'] : ['booting — never healthy', 'booting'], `${name} started at ${fmtMs(st)}`, true, rec === null);
      if (rec !== null) s += bar(x(rec), xMax, top, COLORS.recovery, [`healthy${f.recovery.check ? ` (${f.recovery.check})` : ''}`, 'healthy', '✓'], `${name} healthy at ${fmtMs(rec)}`, true);
      return s;
    });
    y += 10;
  }

  // ── pages dumped ──────────────────────────────────────────────────────────
  {
    const pts = clean(r.timeline.dump);
    const zero = r.pages.excluded.zero ?? 0;
    // timeline.dump counts selected pages processed, all-zero ones included; the core drops those
    // from pages.dumped (and adds them to excluded.zero) — so the selection is dumped + zero.
    const selected = f.pages.selected;
    const lastWritten = pts.at(-1)?.pagesWritten ?? 0;
    header(
      'Pages dumped',
      [
        {
          label: pts.length
            ? `pages processed: ${fmtCount(lastWritten)} of ${fmtCount(selected)} selected${zero > 0 ? ` (${fmtCount(zero)} all-zero pages dropped)` : ''}${r.dump.complete ? '' : ' — the dump stopped early'}`
            : 'pages processed',
          swatch: boxSwatch(COLORS.dumpBg, COLORS.dump),
        },
      ],
      pts.length ? `${fmtBytes(r.dump.bytesWritten)} written` : undefined,
    );
    if (!pts.length) {
      emptyLane(r.mode === 'restart-only' ? 'restart-only: no dump is taken' : f.dump.present ? 'no chunk of the dump became durable' : 'no dump was written');
    } else {
      const h = 96;
      const a = countAxis(Math.max(selected, ...pts.map((p) => p.pagesWritten)));
      const yv = (v: number) => y + h - (Math.max(0, v) / a.max) * h;
      body.push(yAxis(y, h, a));
      const start = r.dump.startedAtMs ?? pts[0]!.tMs;
      const hold = Math.max(pts.at(-1)!.tMs, r.dump.finishedAtMs ?? 0);
      const line = [`M${n(x(start))},${n(yv(0))}`, ...thin(pts, x, [(p) => p.pagesWritten]).map((p) => `L${n(x(p.tMs))},${n(yv(p.pagesWritten))}`), `L${n(x(hold))},${n(yv(pts.at(-1)!.pagesWritten))}`].join('');
      body.push(`<path d="${line}L${n(x(hold))},${n(yv(0))}Z" fill="${COLORS.dumpBg}" stroke="none"/>`);
      body.push(`<path d="${line}" class="vcv-line-dump"><title>pages written over time: ${fmtCount(pts.at(-1)!.pagesWritten)} by ${fmtMs(pts.at(-1)!.tMs)}</title></path>`);
      y += h + 16;
    }
  }

  // ── memory ────────────────────────────────────────────────────────────────
  {
    const mem = clean(r.timeline.memory);
    const hand = clean(r.timeline.handover);
    const peakLabel = `peak ${fmtBytes(f.memory.peakBytes)} = ${pct(f.memory.peakBytes, f.memory.budgetBytes)} of budget${f.memory.overBudget ? ' — OVER BUDGET' : ''} ▼`;
    header('Memory', [
      { label: 'crashed VM (host)', swatch: boxSwatch(COLORS.crashed) },
      { label: 'recovery VM (host)', swatch: boxSwatch(`url(#${P}-hatch-rec)`, COLORS.recovery) },
      { label: 'handed over', swatch: lineSwatch('vcv-line-handover') },
      { label: 'guest RAM', swatch: lineSwatch('vcv-line-guest') },
      { label: 'budget', swatch: lineSwatch('vcv-line-budget') },
    ], f.memory.peakBytes > 0 ? peakLabel : undefined);
    const h = 130;
    const maxStack = Math.max(0, ...mem.map((m) => m.crashedBytes + m.recoveryBytes));
    const a = bytesAxis(Math.max(f.memory.budgetBytes, f.memory.peakBytes, f.memory.guestBytes, maxStack, f.memory.handedOverBytes) * 1.04);
    const yv = (v: number) => y + h - (Math.min(Math.max(0, v), a.max) / a.max) * h;
    body.push(yAxis(y, h, a));
    if (mem.length) {
      // Samples are drawn as sample-and-hold steps (the value as last measured). The crashed VM holds
      // nothing once it is destroyed (an event, not a guess), so its area ends there.
      const destroyedAt = events.find((e) => e.event === 'crashed-vm-destroyed')?.tMs;
      const held = thin(mem, x, [(m) => m.crashedBytes, (m) => m.recoveryBytes]).map((m) => ({ ...m }));
      if (destroyedAt !== undefined) {
        for (const m of held) if (m.tMs >= destroyedAt) m.crashedBytes = 0;
        const i = held.findIndex((m) => m.tMs > destroyedAt);
        if (i > 0) held.splice(i, 0, { tMs: destroyedAt, crashedBytes: 0, recoveryBytes: held[i - 1]!.recoveryBytes });
      }
      // The last measurement holds until the session's end (sampling stops with the session).
      const last = held.at(-1)!;
      if (last.tMs < endMs) held.push({ ...last, tMs: endMs, crashedBytes: destroyedAt !== undefined && endMs >= destroyedAt ? 0 : last.crashedBytes });
      const stepPts = (v: (m: (typeof held)[number]) => number) => held.flatMap((m, i) => (i === 0 ? [`${n(x(m.tMs))},${n(yv(v(m)))}`] : [`${n(x(m.tMs))},${n(yv(v(held[i - 1]!)))}`, `${n(x(m.tMs))},${n(yv(v(m)))}`]));
      const top1 = stepPts((m) => m.crashedBytes);
      const top2 = stepPts((m) => m.crashedBytes + m.recoveryBytes);
      const x0 = n(x(held[0]!.tMs));
      const x1 = n(x(held.at(-1)!.tMs));
      body.push(`<path d="M${x0},${n(yv(0))}L${top1.join('L')}L${x1},${n(yv(0))}Z" fill="${COLORS.crashed}" fill-opacity="0.75"><title>host memory the crashed VM holds (sampled ${mem.length} times)</title></path>`);
      body.push(`<path d="M${top2.join('L')}L${[...top1].reverse().join('L')}Z" fill="url(#${P}-hatch-rec)"><title>host memory the recovery VM holds, stacked on the crashed VM's</title></path>`);
      body.push(`<path d="M${top2.join('L')}" class="vcv-line-stack"/>`);
    }
    const hline = (v: number, cls: string, label: string, left: boolean) => {
      const yy = yv(v);
      body.push(`<line x1="${L}" x2="${n(xMax)}" y1="${n(yy)}" y2="${n(yy)}" class="${cls}"/>`);
      body.push(`<text x="${left ? L + 6 : xMax - 6}" y="${n(Math.max(y + 11, yy - 4))}" ${left ? '' : 'text-anchor="end" '}class="vcv-note vcv-halo">${esc(label)}</text>`);
    };
    hline(f.memory.budgetBytes, 'vcv-line-budget', `budget ${fmtBytes(f.memory.budgetBytes)} (guest RAM + ${fmtBytes(f.memory.marginBytes)} margin)`, false);
    const close = Math.abs(yv(f.memory.budgetBytes) - yv(f.memory.guestBytes)) < 14;
    hline(f.memory.guestBytes, 'vcv-line-guest', `guest RAM ${fmtBytes(f.memory.guestBytes)}`, close);
    if (hand.length) {
      const d = [`M${n(x(0))},${n(yv(0))}`];
      let prev = 0;
      for (const p of thin(hand, x, [(q) => q.handedOverBytes])) {
        d.push(`H${n(x(p.tMs))}V${n(yv(p.handedOverBytes))}`);
        prev = p.handedOverBytes;
      }
      d.push(`H${n(xEnd)}`);
      body.push(`<path d="${d.join('')}" class="vcv-line-handover"><title>memory handed over to the recovery VM: ${fmtBytes(prev)} of ${fmtBytes(f.memory.guestBytes)} (${hand.length} step(s))</title></path>`);
    }
    if (!mem.length && !hand.length) body.push(`<text x="${L + 10}" y="${y + h / 2}" class="vcv-note vcv-halo">no host memory samples and no handover recorded</text>`);
    else if (!mem.length) body.push(`<text x="${L + 10}" y="${y + 16}" class="vcv-note vcv-halo">no host memory samples (the backend did not report allocations)</text>`);
    if (f.memory.peakBytes > 0) {
      // The peak's words are in the lane's header; in the plot, a ▼ marks the sample it was measured at.
      const at = mem.find((m) => m.crashedBytes + m.recoveryBytes === f.memory.peakBytes);
      if (at) {
        const yy = yv(f.memory.peakBytes);
        body.push(`<path d="M${n(x(at.tMs) - 5)},${n(yy - 9)}h10l-5,7z" class="${f.memory.overBudget ? 'vcv-ev-bad' : 'vcv-peak'}"><title>${esc(peakLabel)} at ${fmtMs(at.tMs)}</title></path>`);
      }
    }
    y += h + 16;
  }

  // ── I/O shares ────────────────────────────────────────────────────────────
  {
    const sh = clean(r.timeline.shares);
    const policies = [...new Set(sh.map((s) => s.policy).filter((p): p is string => !!p))];
    header(
      'I/O shares',
      [
        { label: 'dump writer limit', swatch: lineSwatch('vcv-line-dump') },
        { label: 'recovery VM limit', swatch: lineSwatch('vcv-line-recovery') },
      ],
      policies.length ? `policy: ${policies.slice(0, 3).join(', ')}${policies.length > 3 ? ', …' : ''}` : undefined,
    );
    if (!sh.length) {
      emptyLane('no I/O shares recorded: no I/O policy ran (io.bandwidthMiBps unset, no policy plugin, or no dump)');
    } else {
      const strip = 18;
      const h = 84;
      const finite = sh.flatMap((s) => [s.dumpBps, s.recoveryBps]).filter((v): v is number => v !== null);
      const a = bytesAxis(Math.max(0, ...finite) * 1.05, '/s', 3);
      const gap = 8;
      const top = y + strip + gap;
      const yv = (v: number | null, off: number) => (v === null ? y + strip / 2 + off : top + h - (Math.max(0, v) / a.max) * h);
      body.push(`<rect x="${L}" y="${y}" width="${n(PW)}" height="${strip}" class="vcv-unlimited"/>`);
      body.push(`<text x="${L - 6}" y="${y + 13}" text-anchor="end" class="vcv-tick">unlimited</text>`);
      body.push(yAxis(top, h, a));
      const holdTo = Math.max(sh.at(-1)!.tMs, endMs);
      const step = (get: (s: (typeof sh)[number]) => number | null, off: number) => {
        const pts = thin(sh, x, [get]);
        const d: string[] = [];
        pts.forEach((p, i) => {
          const yy = n(yv(get(p), off));
          d.push(i === 0 ? `M${n(x(p.tMs))},${yy}` : `V${yy}`);
          d.push(`H${n(x(pts[i + 1]?.tMs ?? holdTo))}`);
        });
        return d.join('');
      };
      body.push(`<path d="${step((s) => s.dumpBps, -3)}" class="vcv-line-dump"/>`);
      body.push(`<path d="${step((s) => s.recoveryBps, 3)}" class="vcv-line-recovery"/>`);
      // Hover targets: one per interval, saying what the policy decided and why.
      sh.slice(0, 600).forEach((s, i) => {
        const x0 = x(s.tMs);
        const x1 = x(sh[i + 1]?.tMs ?? holdTo);
        if (x1 - x0 < 0.5) return;
        body.push(`<rect x="${n(x0)}" y="${y}" width="${n(x1 - x0)}" height="${strip + gap + h}" class="vcv-hit"><title>from ${fmtMs(s.tMs)}: dump ${fmtBps(s.dumpBps)}, recovery VM ${fmtBps(s.recoveryBps)}${s.policy ? ` — ${esc(s.policy, 80)}` : ''}${s.reason ? `: ${esc(s.reason, 300)}` : ''}</title></rect>`);
      });
      y += strip + gap + h + 16;
    }
  }

  // ── recovery VM disk ──────────────────────────────────────────────────────
  {
    const io = clean(r.timeline.recoveryIo);
    header('Recovery VM disk', [
      { label: 'read', swatch: lineSwatch('vcv-line-read') },
      { label: 'write', swatch: lineSwatch('vcv-line-write') },
    ]);
    if (!io.length) {
      emptyLane('no disk rates of the recovery VM recorded (they are measured while an I/O policy runs)');
    } else {
      const h = 84;
      const a = bytesAxis(Math.max(0, ...io.flatMap((p) => [p.readBps, p.writeBps])) * 1.05, '/s', 3);
      const yv = (v: number) => y + h - (Math.max(0, v) / a.max) * h;
      body.push(yAxis(y, h, a));
      const t = thin(io, x, [(p) => p.readBps, (p) => p.writeBps]);
      body.push(`<path d="M${t.map((p) => `${n(x(p.tMs))},${n(yv(p.readBps))}`).join('L')}" class="vcv-line-read"><title>recovery VM disk reads (peak ${fmtBps(Math.max(...io.map((p) => p.readBps)))})</title></path>`);
      body.push(`<path d="M${t.map((p) => `${n(x(p.tMs))},${n(yv(p.writeBps))}`).join('L')}" class="vcv-line-write"><title>recovery VM disk writes (peak ${fmtBps(Math.max(...io.map((p) => p.writeBps)))})</title></path>`);
      y += h + 16;
    }
  }

  // ── time axis, grid, guides ───────────────────────────────────────────────
  const axisY = y;
  const back: string[] = [];
  for (const t of ax.ticks) back.push(`<line x1="${n(x(t))}" x2="${n(x(t))}" y1="${plotTop}" y2="${axisY}" class="vcv-vgrid"/>`);
  for (const g of guides) back.push(`<line x1="${n(g.x)}" x2="${n(g.x)}" y1="${plotTop}" y2="${axisY}" class="${g.bad ? 'vcv-guide-bad' : 'vcv-guide'}"/>`);
  const axis: string[] = [`<line x1="${L}" x2="${n(xMax)}" y1="${axisY}" y2="${axisY}" class="vcv-axis"/>`];
  for (const t of ax.ticks) {
    axis.push(`<line x1="${n(x(t))}" x2="${n(x(t))}" y1="${axisY}" y2="${axisY + 5}" class="vcv-axis"/>`);
    axis.push(`<text x="${n(x(t))}" y="${axisY + 18}" text-anchor="middle" class="vcv-tick">${esc(ax.label(t))}</text>`);
  }
  axis.push(`<text x="${n(xMax)}" y="${axisY + 36}" text-anchor="end" class="vcv-axis-title">time since the crash (0 = crash at ${esc(r.crash.at, 40)})</text>`);
  const H = axisY + 46;

  const title = `Timeline of the crash of ${r.vm.name} (${r.mode})${r.simulated ? ' — SIMULATED' : ''}`;
  const defs = `<defs>
<pattern id="${P}-hatch-down" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(45)"><rect width="8" height="8" fill="${COLORS.downBg}"/><rect width="3" height="8" fill="${COLORS.down}"/></pattern>
<pattern id="${P}-hatch-boot" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(-45)"><rect width="8" height="8" fill="${COLORS.recoveryBg}"/><rect width="2" height="8" fill="${COLORS.recovery}"/></pattern>
<pattern id="${P}-hatch-rec" patternUnits="userSpaceOnUse" width="7" height="7" patternTransform="rotate(-45)"><rect width="7" height="7" fill="${COLORS.recoveryBg}"/><rect width="2.5" height="7" fill="${COLORS.recovery}"/></pattern>
</defs>`;
  const style = `<style>
.vcv-timeline{font-family:system-ui,"DejaVu Sans","Liberation Sans",Arial,sans-serif;font-size:${FONT}px;background:#fff}
.vcv-timeline text{fill:${COLORS.ink}}
.vcv-timeline .vcv-lane-title{font-size:13px;font-weight:700}
.vcv-timeline .vcv-legend,.vcv-timeline .vcv-note,.vcv-timeline .vcv-tick,.vcv-timeline .vcv-ev-label{font-size:11px}
.vcv-timeline .vcv-note,.vcv-timeline .vcv-tick,.vcv-timeline .vcv-axis-title{fill:${COLORS.muted}}
.vcv-timeline .vcv-row-name{font-weight:600}
.vcv-timeline .vcv-bar-label{font-weight:600}
.vcv-timeline .vcv-bar-label-inv{font-weight:700;fill:#fff}
.vcv-timeline .vcv-halo{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
.vcv-timeline .vcv-axis{stroke:${COLORS.muted};stroke-width:1}
.vcv-timeline .vcv-frame{fill:none;stroke:#c9d1d9}
.vcv-timeline .vcv-track{fill:#f3f5f7}
.vcv-timeline .vcv-empty{fill:#f6f8fa;stroke:#d0d7de;stroke-dasharray:4 3}
.vcv-timeline .vcv-unlimited{fill:#f3f5f7;stroke:#d0d7de}
.vcv-timeline .vcv-hgrid{stroke:${COLORS.grid}}
.vcv-timeline .vcv-vgrid{stroke:${COLORS.grid}}
.vcv-timeline .vcv-guide{stroke:#8c959f;stroke-dasharray:2 3}
.vcv-timeline .vcv-guide-bad{stroke:${COLORS.down};stroke-dasharray:2 3}
.vcv-timeline .vcv-leader{stroke:#afb8c1}
.vcv-timeline .vcv-ev{fill:${COLORS.ink}}
.vcv-timeline .vcv-ev-good{fill:${COLORS.up};stroke:#fff}
.vcv-timeline .vcv-ev-bad{stroke:${COLORS.down};stroke-width:3;fill:none}
.vcv-timeline .vcv-hit{fill:transparent}
.vcv-timeline .vcv-peak{fill:${COLORS.ink}}
.vcv-timeline path[class^="vcv-line"],.vcv-timeline line[class^="vcv-line"]{fill:none;stroke-width:2.25}
.vcv-timeline .vcv-line-dump{stroke:${COLORS.dump}}
.vcv-timeline .vcv-line-recovery{stroke:${COLORS.recovery};stroke-dasharray:7 4}
.vcv-timeline .vcv-line-handover{stroke:${COLORS.handover};stroke-width:2.75}
.vcv-timeline .vcv-line-stack{stroke:${COLORS.recovery};stroke-width:1.25}
.vcv-timeline .vcv-line-guest{stroke:${COLORS.muted};stroke-dasharray:1.5 3;stroke-width:1.75}
.vcv-timeline .vcv-line-budget{stroke:${COLORS.budget};stroke-dasharray:8 4}
.vcv-timeline .vcv-line-read{stroke:${COLORS.read}}
.vcv-timeline .vcv-line-write{stroke:${COLORS.write};stroke-dasharray:7 4}
</style>`;
  const ns = o.standalone === false ? '' : ' xmlns="http://www.w3.org/2000/svg"';
  return [
    `<svg${ns} class="vcv-timeline" id="${P}-timeline" viewBox="0 0 ${W} ${n(H)}" width="${W}" height="${n(H)}" role="img" aria-labelledby="${P}-title ${P}-desc">`,
    `<title id="${P}-title">${esc(title)}</title>`,
    `<desc id="${P}-desc">${esc(timelineSummary(r), 8000)}</desc>`,
    defs,
    style,
    `<rect width="${W}" height="${n(H)}" fill="#fff"/>`,
    `<g class="vcv-back">${back.join('')}</g>`,
    `<g class="vcv-lanes">${body.join('\n')}</g>`,
    `<g class="vcv-time-axis">${axis.join('')}</g>`,
    '</svg>',
  ].join('\n');
}
