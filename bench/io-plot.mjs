#!/usr/bin/env node
// The bench:io plot: one group of bars per I/O policy — service downtime, dump complete, total — as a
// self-contained SVG (no external fonts, scripts or styles).
//
//   node bench/io-plot.mjs RESULT.json OUT.svg     (RESULT.json: the last stdout line of bench:io --json)
//
// bench/io.mjs calls ioPlotSvg() itself after its runs.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const SERIES = [
  { key: 'serviceDowntimeSeconds', label: 'service downtime (crash → service answers)', color: '#1f77b4' },
  { key: 'dumpSeconds', label: 'dump complete (crash → dump on disk)', color: '#ff7f0e' },
  { key: 'totalSeconds', label: 'total (crash → dump complete, all memory handed over)', color: '#7f7f7f' },
];

function niceStep(max) {
  const raw = max / 6;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

/** @param {{policies: Record<string, Record<string, number|null>>, setup?: Record<string, unknown>}} result */
export function ioPlotSvg(result, title = 'bench:io — I/O policies on one shared disk') {
  const names = Object.keys(result.policies);
  const W = 900;
  const left = 60;
  const right = 20;
  const top = 70;
  const plotH = 300;
  const labelH = 60;
  const legendH = 22 * SERIES.length + 10;
  const H = top + plotH + labelH + legendH;
  const vals = names.flatMap((n) => SERIES.map((s) => result.policies[n][s.key])).filter((v) => typeof v === 'number');
  const max = Math.max(1, ...vals);
  const step = niceStep(max);
  const yMax = Math.ceil(max / step) * step;
  const y = (v) => top + plotH - (v / yMax) * plotH;
  const groupW = (W - left - right) / Math.max(1, names.length);
  const barW = Math.min(40, (groupW * 0.8) / SERIES.length);
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);
  const s = result.setup ?? {};
  const sub = [
    s.memMiB ? `guest ${s.memMiB} MiB` : null,
    s.bandwidthMiBps ? `one disk of ${s.bandwidthMiBps} MiB/s shared by dump and recovery VM` : null,
    s.warm ? `recovery boot reads ${s.warmMiB ?? '?'} MiB (${s.warm})` : null,
    s.reps ? (s.reps === 1 ? 'one run per policy' : `medians of ${s.reps} runs`) : null,
  ].filter(Boolean);
  out.push(`<text x="${W / 2}" y="42" text-anchor="middle" fill="#444">${esc(sub.join(' · '))}</text>`);
  // axis and grid
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    out.push(`<line x1="${left}" x2="${W - right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" fill="#444">${v}</text>`);
  }
  out.push(`<text x="16" y="${top + plotH / 2}" transform="rotate(-90 16 ${top + plotH / 2})" text-anchor="middle" fill="#444">seconds after the crash</text>`);
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotH}" stroke="#888"/>`);
  out.push(`<line x1="${left}" x2="${W - right}" y1="${top + plotH}" y2="${top + plotH}" stroke="#888"/>`);
  names.forEach((n, i) => {
    const gx = left + i * groupW + (groupW - barW * SERIES.length) / 2;
    SERIES.forEach((ser, j) => {
      const v = result.policies[n][ser.key];
      const x = gx + j * barW;
      if (typeof v !== 'number') {
        out.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${top + plotH - 4}" text-anchor="middle" fill="#999">–</text>`);
        return;
      }
      out.push(`<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(top + plotH - y(v)).toFixed(1)}" fill="${ser.color}"><title>${esc(`${n}: ${ser.label} ${v.toFixed(1)} s`)}</title></rect>`);
      out.push(`<text x="${(x + (barW - 2) / 2).toFixed(1)}" y="${(y(v) - 4).toFixed(1)}" text-anchor="middle" font-size="10" fill="#222">${v.toFixed(0)}</text>`);
    });
    // policy label, split on spaces into at most three lines
    const words = n.split(' ');
    const lines = [];
    for (const w of words) {
      if (lines.length && (lines[lines.length - 1] + ' ' + w).length <= 18) lines[lines.length - 1] += ' ' + w;
      else lines.push(w);
    }
    lines.slice(0, 3).forEach((l, k) => {
      out.push(`<text x="${(left + i * groupW + groupW / 2).toFixed(1)}" y="${top + plotH + 16 + k * 14}" text-anchor="middle" fill="#222">${esc(l)}</text>`);
    });
  });
  SERIES.forEach((ser, j) => {
    const ly = top + plotH + labelH + 10 + j * 22;
    out.push(`<rect x="${left}" y="${ly}" width="14" height="14" fill="${ser.color}"/>`);
    out.push(`<text x="${left + 20}" y="${ly + 11}" fill="#222">${esc(ser.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [inFile, outFile] = process.argv.slice(2);
  if (!inFile || !outFile) {
    process.stderr.write('usage: node bench/io-plot.mjs RESULT.json OUT.svg\n');
    process.exit(2);
  }
  const text = readFileSync(inFile, 'utf8').trim().split('\n').pop();
  writeFileSync(outFile, ioPlotSvg(JSON.parse(text)));
}
