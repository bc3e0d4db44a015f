/**
 * @vicover/report without a browser: recognising reports (coded errors with paths), escaping and
 * sanitizing untrusted text, number and axis formatting, thinning long series, and what each mode's
 * page says. Reports come from real core sessions (fixtures.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { isVcvError, type CrashReport } from '@vicover/core';
import { checkReport, escapeHtml, fmtBytes, fmtSeconds, parseReport, renderReportHtml, renderReportSvg, renderReportText, reportFigures, sanitizeText } from '@vicover/report';
import { thin } from '../src/svg.js';
import { bytesAxis, countAxis, timeAxis } from '../src/scale.js';
import { runFixture, scaleReport } from './fixtures.js';

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (isVcvError(e)) return `${e.code}: ${e.message}`;
    throw e;
  }
  return 'no error';
}

let vicover: CrashReport;
let onDisk: string;
let ro: CrashReport;

beforeAll(async () => {
  const fx = await runFixture({ mode: 'vicover', bandwidthMiBps: 80 });
  vicover = fx.report;
  onDisk = readFileSync(path.join(fx.session.directory!, 'report.json'), 'utf8');
  ro = (await runFixture({ mode: 'restart-only' })).report;
});

describe('recognising a report', () => {
  it('accepts the report.json a real session wrote', () => {
    const r = parseReport(onDisk, 'report.json');
    expect(r.sessionId).toBe(vicover.sessionId);
    expect(checkReport(JSON.parse(JSON.stringify(ro)))).toBeTruthy();
  });

  it('not JSON, or JSON that is not a report → VCV_ERR_FORMAT_UNKNOWN', () => {
    expect(codeOf(() => parseReport('\u0000\u0001KDUMP', 'x.kdump'))).toMatch(/^VCV_ERR_FORMAT_UNKNOWN: x\.kdump is not a Vicover crash report: it is not JSON/);
    expect(codeOf(() => parseReport('{"name":"package"}', 'package.json'))).toMatch(/^VCV_ERR_FORMAT_UNKNOWN: package\.json is not a Vicover crash report/);
    expect(codeOf(() => parseReport('[1,2]'))).toMatch(/^VCV_ERR_FORMAT_UNKNOWN/);
  });

  it('another reportVersion → VCV_ERR_FORMAT_UNSUPPORTED', () => {
    const j = JSON.parse(onDisk);
    j.reportVersion = 2;
    expect(codeOf(() => checkReport(j, 'r.json'))).toBe('VCV_ERR_FORMAT_UNSUPPORTED: r.json is a Vicover crash report of version 2; this Vicover reads version 1');
  });

  it('wrong field types → VCV_ERR_FORMAT_INVALID naming each path', () => {
    const j = JSON.parse(onDisk);
    j.timeline.dump[0].tMs = 'soon';
    j.memory.peakBytes = -1;
    j.mode = 'panic';
    delete j.vm.name;
    const msg = codeOf(() => checkReport(j, 'r.json'));
    expect(msg).toMatch(/^VCV_ERR_FORMAT_INVALID: r\.json is a Vicover crash report \(version 1\) with 4 invalid field\(s\):/);
    expect(msg).toContain('\nmode must be vicover, coredump-restart or restart-only (found "panic")');
    expect(msg).toContain('\nvm.name must be a string (found nothing)');
    expect(msg).toContain('\nmemory.peakBytes must be ≥ 0 (found -1)');
    expect(msg).toContain('\ntimeline.dump[0].tMs must be a number (found "soon")');
    try {
      checkReport(j, 'r.json');
    } catch (e) {
      expect(isVcvError(e) && e.details.path).toBe('mode');
    }
  });
});

describe('untrusted text', () => {
  it('escapes HTML and makes control characters and broken surrogates visible', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
    expect(sanitizeText('a\u001b[2Jb\u0000c\u009bd\ud800e')).toBe('a\\x1b[2Jb\\x00c\\x9bd\\ud800e');
    expect(sanitizeText('tab\tand\nnewline stay')).toBe('tab\tand\nnewline stay');
    expect(sanitizeText('😀 pairs stay')).toBe('😀 pairs stay');
    expect(sanitizeText('x'.repeat(20), 5)).toBe('xxxxx… (cut at 5 characters)');
  });

  it('the terminal summary carries no escape sequences from guest text', () => {
    const r = structuredClone(vicover);
    r.triage.panicLine = 'Kernel panic\u001b]0;owned\u0007\u001b[2J';
    const text = renderReportText(r);
    expect(text).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
    expect(text).toContain('Kernel panic\\x1b]0;owned\\x07\\x1b[2J');
  });
});

describe('numbers and axes', () => {
  it('formats bytes, durations', () => {
    expect(fmtBytes(0)).toBe('0 B');
    expect(fmtBytes(1536)).toBe('1.50 KiB');
    expect(fmtBytes(48 * 2 ** 20)).toBe('48.0 MiB');
    expect(fmtBytes(2 ** 60 * 3)).toBe('3.00 EiB');
    expect(fmtBytes(2 ** 80)).toMatch(/EiB$/);
    expect(fmtSeconds(0.4)).toBe('400 ms');
    expect(fmtSeconds(1.834)).toBe('1.83 s');
    expect(fmtSeconds(245)).toBe('4 min 05 s');
    expect(fmtSeconds(7384)).toBe('2 h 03 min');
    expect(fmtSeconds(null)).toBe('n/a');
  });

  it('time axes step in round units from milliseconds to days', () => {
    expect(timeAxis(1830).ticks.slice(0, 3)).toEqual([0, 200, 400]);
    expect(timeAxis(1830).max).toBe(2000);
    expect(timeAxis(2_084_400).label(300_000)).toBe('5 min');
    expect(timeAxis(0).max).toBeGreaterThan(0);
    expect(timeAxis(40 * 86_400_000).ticks.length).toBeLessThan(20);
    expect(bytesAxis(56 * 2 ** 20).label(20 * 2 ** 20)).toBe('20 MiB');
    expect(bytesAxis(3 * 2 ** 50, '/s').ticks.every(Number.isFinite)).toBe(true);
    expect(countAxis(26_388_279_066_624).label(10e12)).toBe('10T');
  });

  it('thinning keeps every pixel column’s extremes', () => {
    const pts = Array.from({ length: 100_000 }, (_, i) => ({ tMs: i, v: i === 54_321 ? 1e9 : i % 7 }));
    const t = thin(pts, (ms) => ms / 100, [(p) => p.v]);
    expect(t.length).toBeLessThan(5000);
    expect(t.some((p) => p.v === 1e9)).toBe(true);
    expect(t[0]).toBe(pts[0]);
    expect(t.at(-1)).toBe(pts.at(-1));
  });
});

describe('the page', () => {
  it('is deterministic, says what each mode did, and holds no NaN or undefined', () => {
    const a = renderReportHtml(vicover);
    expect(renderReportHtml(vicover)).toBe(a);
    for (const r of [vicover, ro, scaleReport(vicover)]) {
      const html = renderReportHtml(r);
      expect(html).not.toMatch(/NaN|Infinity|undefined|\[object /);
    }
    expect(a).toContain('chunk by chunk');
    const p = renderReportHtml(ro);
    expect(p).toContain('restart-only: no dump is taken');
    expect(p).not.toContain('Pages by class');
  });

  it('key figures agree with the report', () => {
    const f = reportFigures(vicover);
    expect(f.serviceDowntimeSeconds).toBe(vicover.serviceDowntimeSeconds);
    expect(f.pages.dumped).toBe(vicover.pages.dumped);
    expect(f.pages.selected).toBe(vicover.pages.dumped + vicover.pages.excluded.zero);
    expect(f.memory.handover).toBe('chunked');
    expect(reportFigures(ro).memory.handover).toBe('at-once');
    expect(reportFigures(ro).dump.present).toBe(false);
  });

  it('the standalone SVG declares its namespace; the inline one does not need to', () => {
    expect(renderReportSvg(vicover)).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" class="vcv-timeline"/);
    expect(renderReportSvg(vicover, { standalone: false, idPrefix: 'x1' })).toMatch(/^<svg class="vcv-timeline" id="x1-timeline"/);
  });
});
