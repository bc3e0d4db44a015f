/**
 * Text for people: escaping (report text can come from guest memory — panic lines, console lines —
 * so it is untrusted) and number formatting (bytes in IEC units, counts with separators, durations).
 */

/** Control characters (C0 except tab/newline, DEL, C1) and lone surrogates become visible escapes. */
const CONTROL = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Make untrusted text printable: control characters (terminal escape sequences, NUL) and broken
 * surrogates are shown as `\xNN` / `\uNNNN`, and the text is cut at `max` characters.
 */
export function sanitizeText(s: unknown, max = 4096): string {
  let t = typeof s === 'string' ? s : s === undefined || s === null ? '' : String(s);
  let cut = false;
  if (t.length > max) {
    t = t.slice(0, max);
    cut = true;
  }
  t = t.replace(CONTROL, (c) => {
    const n = c.charCodeAt(0);
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
  return cut ? `${t}… (cut at ${max} characters)` : t;
}

/** Escape for HTML/SVG text and attribute values (after sanitizing). */
export function esc(s: unknown, max = 4096): string {
  return sanitizeText(s, max).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** 1536 → "1.50 KiB"; binary units; three significant digits. */
export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return 'n/a';
  const neg = n < 0;
  let x = Math.abs(n);
  let i = 0;
  while (x >= 1024 && i < UNITS.length - 1) {
    x /= 1024;
    i++;
  }
  const digits = i === 0 ? 0 : x < 10 ? 2 : x < 100 ? 1 : 0;
  return `${neg ? '-' : ''}${x.toFixed(digits)} ${UNITS[i]}`;
}

export function fmtBps(n: number | null | undefined): string {
  if (n === null) return 'unlimited';
  return `${fmtBytes(n)}/s`;
}

const countFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** 1234567 → "1,234,567". */
export function fmtCount(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return 'n/a';
  return countFmt.format(n);
}

/** 1234567 → "1.23M" (axis labels). */
export function fmtCompact(n: number): string {
  const a = Math.abs(n);
  for (const [div, suf] of [
    [1e15, 'P'],
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ] as const) {
    if (a >= div) return `${trim(n / div)}${suf}`;
  }
  return trim(n);
}

function trim(x: number): string {
  const a = Math.abs(x);
  return String(Number(x.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2)));
}

/** Seconds for people: "850 ms", "1.23 s", "4 min 05 s", "2 h 03 min", "3 d 04 h". */
export function fmtSeconds(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return 'n/a';
  if (s < 0) return `-${fmtSeconds(-s)}`;
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 10) return `${s.toFixed(2)} s`;
  if (s < 120) return `${s.toFixed(1)} s`;
  const p2 = (n: number) => String(Math.floor(n)).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)} min ${p2(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${p2((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${p2((s % 86400) / 3600)} h`;
}

/** A time stamp of the timeline (ms since the crash) for people. */
export function fmtMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return 'n/a';
  return fmtSeconds(ms / 1000);
}

/** An axis label at a round time: "0", "250 ms", "2 s", "5 min", "2 h", "3 d". */
export function fmtTick(ms: number): string {
  if (ms === 0) return '0';
  if (ms < 1000) return `${trim(ms)} ms`;
  if (ms < 120_000) return `${trim(ms / 1000)} s`;
  if (ms < 7_200_000) return `${trim(ms / 60_000)} min`;
  if (ms < 172_800_000) return `${trim(ms / 3_600_000)} h`;
  return `${trim(ms / 86_400_000)} d`;
}

export function pct(part: number, whole: number): string {
  if (!(whole > 0) || !Number.isFinite(part)) return '';
  const p = (100 * part) / whole;
  return `${p >= 99.95 || p === 0 ? p.toFixed(0) : p < 0.1 ? '<0.1' : p.toFixed(1)}%`;
}

/** Crash time as "2025-01-02 03:04:05.678 UTC" (the report stores ISO 8601). */
export function fmtWallClock(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return sanitizeText(iso, 64);
  return d.toISOString().replace('T', ' ').replace('Z', ' UTC');
}
