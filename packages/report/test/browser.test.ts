/**
 * The HTML report in a real browser. Reports come from real core crash sessions (fixtures.ts) in all
 * three modes plus edge cases; each page is rendered by headless Chromium to a PNG (checked: size,
 * not blank, the timeline's colours present) and to its DOM (checked: the timeline SVG and the key
 * figures are there, hostile guest text stayed text). The vicover-mode screenshot is kept as
 * docs/img/report-vicover.png when VICOVER_UPDATE_DOCS=1.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CrashReport } from '@vicover/core';
import { renderReportHtml, renderReportSvg } from '@vicover/report';
import { runFixture, scaleReport } from './fixtures.js';
import { CHROMIUM, dumpDom, screenshot } from './chromium.js';
import { colourStats, decodePng, pngSize } from './png.js';

const HOSTILE_PANIC = `Kernel panic - not syncing: </code></pre><script>document.title="PWNED"</script><img src=x onerror="document.title='PWNED'"> & "quotes" 'single' \u001b[31mRED\u001b[0m \u0000nul`;
const HOSTILE_NAME = `<b>web&1</b>"'><svg onload=alert(1)>`;

interface Case {
  name: string;
  report: CrashReport;
  /** Texts the rendered DOM must contain. */
  dom: (string | RegExp)[];
  /** Colours the screenshot must show (solid fills of the timeline). */
  colours: string[];
}

const WIDTH = 1400;
const HEIGHT = 1800;
const out = mkdtempSync(path.join(tmpdir(), 'vcv-report-browser-'));
const cases: Case[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`these tests need Chromium at ${CHROMIUM} (Debian package chromium; .ci/run installs it)`);
  const vicover = await runFixture({ mode: 'vicover', simulated: true, bandwidthMiBps: 40, readMiBps: 60 });
  const cdr = await runFixture({ mode: 'coredump-restart', bandwidthMiBps: 60, readMiBps: 80 });
  const ro = await runFixture({ mode: 'restart-only' });
  const noRecovery = await runFixture({ mode: 'vicover', bootMs: null, readMiBps: 120 });
  const failed = await runFixture({ mode: 'vicover', diskFullAfterBytes: 6 * 1024 * 1024, readMiBps: 120 });
  const hostile = await runFixture({ mode: 'vicover', vmName: HOSTILE_NAME, panicLine: HOSTILE_PANIC, lastLines: [HOSTILE_PANIC, '<iframe src="https://example.invalid/">'] });

  expect(vicover.report.state).toBe('done');
  expect(vicover.report.timeline.shares.length).toBeGreaterThan(0);
  expect(vicover.report.timeline.handover.length).toBeGreaterThan(2);
  expect(cdr.report.timeline.handover).toHaveLength(1);
  expect(ro.report.dump.bytesWritten).toBe(0);
  expect(noRecovery.report.serviceDowntimeSeconds).toBeNull();
  expect(failed.report.state).toBe('failed');
  expect(failed.report.error!.code).toBe('VCV_ERR_NO_SPACE');

  const { COLORS } = await import('../src/svg.js');
  cases.push(
    { name: 'vicover', report: vicover.report, dom: ['SIMULATED', 'Service downtime', 'Peak host memory', 'chunk by chunk', 'proportional:1:1'], colours: [COLORS.up, COLORS.dump, COLORS.crashed, COLORS.recovery] },
    { name: 'coredump-restart', report: cdr.report, dom: ['Service downtime', 'at once, when the crashed VM was destroyed', 'coredump-restart'], colours: [COLORS.up, COLORS.dump, COLORS.crashed] },
    { name: 'restart-only', report: ro.report, dom: ['restart-only: no dump is taken', 'Memory handed over'], colours: [COLORS.up, COLORS.crashed] },
    { name: 'no-recovery', report: noRecovery.report, dom: ['not back', 'VCV_ERR_RECOVERY', 'never healthy'], colours: [COLORS.dump, COLORS.crashed] },
    { name: 'failed-dump', report: failed.report, dom: ['VCV_ERR_NO_SPACE', 'INCOMPLETE', 'The session failed'], colours: [COLORS.crashed] },
    { name: 'huge', report: scaleReport(vicover.report), dom: ['PiB', 'trillion', /\d+ min \d+ s/], colours: [COLORS.up, COLORS.dump] },
    { name: 'hostile', report: hostile.report, dom: ['Kernel panic - not syncing: &lt;/code&gt;&lt;/pre&gt;&lt;script&gt;', '\\x1b[31mRED', '&lt;b&gt;web&amp;1&lt;/b&gt;'], colours: [COLORS.up, COLORS.dump] },
  );
  for (const c of cases) writeFileSync(path.join(out, `${c.name}.html`), renderReportHtml(c.report, { source: `${c.name}/report.json` }));
});

describe.concurrent('the HTML report in headless Chromium', () => {
  const names = ['vicover', 'coredump-restart', 'restart-only', 'no-recovery', 'failed-dump', 'huge', 'hostile'];

  it.for(names)('%s: self-contained page, no external references, untrusted text escaped', (name, { expect }) => {
    const c = cases.find((x) => x.name === name)!;
    const html = readFileSync(path.join(out, `${name}.html`), 'utf8');
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).toContain('<meta http-equiv="Content-Security-Policy" content="default-src \'none\';');
    // No scripts, no stylesheets or fonts to fetch, no external URLs in any reference attribute.
    expect(html).not.toMatch(/<script|<link\b|<iframe|<img\b|@import|@font-face/i);
    expect(html).not.toMatch(/\b(?:src|href|xlink:href|action|poster|srcset)\s*=\s*["']?\s*(?:[a-z]+:)?\/\//i);
    expect(html).not.toMatch(/url\(\s*['"]?(?!#)/i);
    expect(html).toContain('<svg class="vcv-timeline"');
    if (name === 'hostile') {
      expect(html).not.toContain('<script>document.title');
      expect(html).not.toContain('<img src=x');
      expect(html).not.toContain('<svg onload');
      expect(html).not.toContain('\u001b');
      expect(html).not.toContain('\u0000');
      expect(html).toContain('&lt;script&gt;document.title=&quot;PWNED&quot;&lt;/script&gt;');
    }
    void c;
  });

  it.for(names)(`%s: renders to a ${WIDTH}x${HEIGHT} screenshot that is not blank and shows the timeline`, async (name, { expect }) => {
    const c = cases.find((x) => x.name === name)!;
    const png = path.join(out, `${name}.png`);
    await screenshot(path.join(out, `${name}.html`), png, WIDTH, HEIGHT);
    const buf = readFileSync(png);
    expect(pngSize(buf)).toEqual({ width: WIDTH, height: HEIGHT });
    const img = decodePng(buf);
    const stats = colourStats(img, c.colours);
    // Text antialiasing, the palette and hatching give hundreds of colours; a blank or error page a few.
    expect(stats.distinct).toBeGreaterThan(150);
    expect(stats.dominantShare).toBeLessThan(0.9);
    // The timeline's solid fills are on screen (each at least a few hundred pixels).
    for (const colour of c.colours) expect(stats.counts[colour], `${colour} pixels`).toBeGreaterThan(300);
    if (name === 'vicover' && process.env.VICOVER_UPDATE_DOCS === '1') {
      const docs = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../docs/img/report-vicover.png');
      mkdirSync(path.dirname(docs), { recursive: true });
      copyFileSync(png, docs);
    }
  });

  it.for(names)('%s: the rendered DOM holds the timeline SVG, the key figures, and no injected elements', async (name, { expect }) => {
    const c = cases.find((x) => x.name === name)!;
    const dom = await dumpDom(path.join(out, `${name}.html`));
    expect(dom).toMatch(/<svg class="vcv-timeline" id="vcv-timeline"[^>]*role="img"/);
    expect(dom).toContain('<title id="vcv-title">Timeline of the crash');
    for (const lane of ['Events', 'Phases', 'Pages dumped', 'Memory', 'I/O shares', 'Recovery VM disk']) expect(dom).toContain(`class="vcv-lane-title">${lane}<`);
    for (const fig of ['Key figures', 'Total time', 'Memory handed over', 'Peak host memory']) expect(dom).toContain(fig);
    for (const t of c.dom) typeof t === 'string' ? expect(dom).toContain(t) : expect(dom).toMatch(t);
    // Nothing from the report became an element or an attribute: in the live DOM, text cannot hold a
    // raw "<", so any <script>, <img>, <iframe> or on…= inside a tag was injected.
    expect(dom).not.toMatch(/<(?:script|img|iframe)\b/i);
    expect(dom).not.toMatch(/<[a-z][^<>]*\son[a-z]+\s*=/i);
    expect(dom).not.toContain('PWNED</title>');
  });

  it('the standalone SVG is well-formed XML that Chromium renders', async ({ expect }) => {
    const c = cases.find((x) => x.name === 'hostile')!;
    const file = path.join(out, 'timeline.svg');
    writeFileSync(file, renderReportSvg(c.report));
    const dom = await dumpDom(file);
    expect(dom).not.toContain('parsererror');
    expect(dom).toContain('vcv-timeline');
    expect(statSync(file).size).toBeGreaterThan(1000);
  });
});
