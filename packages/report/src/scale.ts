/** Axis arithmetic for the hand-written SVG: round tick steps for time, bytes, rates and counts. */
import { fmtCompact, fmtTick } from './format.js';

/** 1, 2 or 5 × 10^n, the smallest not below `raw`. */
export function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const e = 10 ** Math.floor(Math.log10(raw));
  const m = raw / e;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * e;
}

const S = 1000;
const MIN = 60 * S;
const H = 60 * MIN;
const D = 24 * H;
/** Round time steps (ms): decimal below a second, then what clocks use. */
const TIME_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 250, 500, S, 2 * S, 5 * S, 10 * S, 15 * S, 30 * S, MIN, 2 * MIN, 5 * MIN, 10 * MIN, 15 * MIN, 30 * MIN, H, 2 * H, 3 * H, 6 * H, 12 * H, D];

export interface Axis {
  /** Domain end (the domain starts at 0). */
  max: number;
  ticks: number[];
  label(v: number): string;
}

/** Time axis from 0 to at least `endMs`, about `target` ticks. */
export function timeAxis(endMs: number, target = 10): Axis {
  const end = endMs > 0 && Number.isFinite(endMs) ? endMs : 1;
  const raw = end / target;
  const step = TIME_STEPS.find((s) => s >= raw) ?? niceStep(raw / D) * D;
  const max = Math.max(step, Math.ceil(end / step - 1e-9) * step);
  return { max, ticks: ticks(max, step), label: fmtTick };
}

function ticks(max: number, step: number): number[] {
  const out: number[] = [];
  const n = Math.min(1000, Math.round(max / step));
  for (let i = 0; i <= n; i++) out.push(i * step);
  return out;
}

const BIN = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** Bytes (or bytes/s with `suffix` "/s") from 0 to at least `maxValue`, labelled in one IEC unit. */
export function bytesAxis(maxValue: number, suffix = '', target = 4): Axis {
  const m = maxValue > 0 && Number.isFinite(maxValue) ? maxValue : 1024 * 1024;
  let k = 0;
  while (k < BIN.length - 1 && m / 1024 ** (k + 1) >= 1) k++;
  const unit = 1024 ** k;
  const step = niceStep(m / unit / target) * unit;
  const max = Math.max(step, Math.ceil(m / step - 1e-9) * step);
  const label = (v: number) => (v === 0 ? '0' : `${fmtCompact(v / unit)} ${BIN[k]}${suffix}`);
  return { max, ticks: ticks(max, step), label };
}

/** Plain counts (pages). */
export function countAxis(maxValue: number, target = 4): Axis {
  const m = maxValue > 0 && Number.isFinite(maxValue) ? maxValue : 1;
  const step = Math.max(1, niceStep(m / target));
  const max = Math.max(step, Math.ceil(m / step - 1e-9) * step);
  return { max, ticks: ticks(max, step), label: (v) => fmtCompact(v) };
}
