/**
 * Is this a Vicover crash report? `parseReport` reads report.json text and checks every field the
 * renderers use, so a foreign or damaged file gives one coded error naming the first problems (with
 * their JSON paths) rather than a broken page:
 *
 *   not JSON, or JSON without `reportVersion`/`sessionId`/`timeline` → VCV_ERR_FORMAT_UNKNOWN
 *   `reportVersion` other than 1                                      → VCV_ERR_FORMAT_UNSUPPORTED
 *   version 1, but a field has the wrong type (`timeline.dump[3].tMs`) → VCV_ERR_FORMAT_INVALID
 */
import { VcvError, type CrashReport } from '@vicover/core';

export const REPORT_VERSION = 1;

type Problems = string[];
type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function num(o: Obj, key: string, at: string, p: Problems, opts: { optional?: boolean; nullable?: boolean; min?: number } = {}): void {
  const v = o[key];
  if (v === undefined && opts.optional) return;
  if (v === null && opts.nullable) return;
  if (!isNum(v)) p.push(`${at}${key} must be a number${opts.nullable ? ' or null' : ''} (found ${describe(v)})`);
  else if (opts.min !== undefined && v < opts.min) p.push(`${at}${key} must be ≥ ${opts.min} (found ${v})`);
}

function str(o: Obj, key: string, at: string, p: Problems, optional = false): void {
  const v = o[key];
  if (v === undefined && optional) return;
  if (typeof v !== 'string') p.push(`${at}${key} must be a string (found ${describe(v)})`);
}

function bool(o: Obj, key: string, at: string, p: Problems, optional = false): void {
  const v = o[key];
  if (v === undefined && optional) return;
  if (typeof v !== 'boolean') p.push(`${at}${key} must be true or false (found ${describe(v)})`);
}

function obj(o: Obj, key: string, at: string, p: Problems): Obj | null {
  const v = o[key];
  if (!isObj(v)) {
    p.push(`${at}${key} must be an object (found ${describe(v)})`);
    return null;
  }
  return v;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `"${v.length > 24 ? v.slice(0, 24) + '…' : v}"`.replace(/[\u0000-\u001f\u007f]/g, '?');
  if (typeof v === 'number') return String(v);
  return `a ${typeof v}`;
}

/** timeline.<key>: an array of objects with a numeric tMs and the given numeric (or nullable) fields. */
function series(tl: Obj, key: string, fields: Record<string, 'num' | 'nullable' | 'str?'>, p: Problems): void {
  const v = tl[key];
  if (!Array.isArray(v)) {
    p.push(`timeline.${key} must be an array (found ${describe(v)})`);
    return;
  }
  for (let i = 0; i < v.length && p.length < 20; i++) {
    const at = `timeline.${key}[${i}].`;
    const e = v[i];
    if (!isObj(e)) {
      p.push(`timeline.${key}[${i}] must be an object (found ${describe(e)})`);
      continue;
    }
    num(e, 'tMs', at, p);
    for (const [f, kind] of Object.entries(fields)) {
      if (kind === 'str?') str(e, f, at, p, true);
      else num(e, f, at, p, { nullable: kind === 'nullable' });
    }
  }
}

/** The problems of a parsed value that claims to be a version-1 report (empty: it is one). */
export function reportProblems(r: Obj): string[] {
  const p: Problems = [];
  bool(r, 'simulated', '', p);
  str(r, 'sessionId', '', p);
  if (!['vicover', 'coredump-restart', 'restart-only'].includes(r.mode as string)) p.push(`mode must be vicover, coredump-restart or restart-only (found ${describe(r.mode)})`);
  str(r, 'backend', '', p);
  const vm = obj(r, 'vm', '', p);
  if (vm) {
    str(vm, 'id', 'vm.', p);
    str(vm, 'name', 'vm.', p);
    num(vm, 'memoryBytes', 'vm.', p, { min: 0 });
  }
  const crash = obj(r, 'crash', '', p);
  if (crash) {
    str(crash, 'at', 'crash.', p);
    str(crash, 'reason', 'crash.', p);
  }
  const triage = obj(r, 'triage', '', p);
  if (triage) {
    str(triage, 'panicLine', 'triage.', p, true);
    str(triage, 'source', 'triage.', p, true);
    num(triage, 'atMs', 'triage.', p, { optional: true });
    if (triage.lastLines !== undefined && !(Array.isArray(triage.lastLines) && triage.lastLines.every((l) => typeof l === 'string'))) p.push('triage.lastLines must be an array of strings');
  }
  const pages = obj(r, 'pages', '', p);
  if (pages) {
    num(pages, 'total', 'pages.', p, { min: 0 });
    num(pages, 'dumped', 'pages.', p);
    const ex = obj(pages, 'excluded', 'pages.', p);
    if (ex) for (const k of Object.keys(ex)) num(ex, k, 'pages.excluded.', p);
  }
  const dump = obj(r, 'dump', '', p);
  if (dump) {
    for (const k of ['file', 'format', 'compression', 'sink']) str(dump, k, 'dump.', p, true);
    for (const k of ['level', 'startedAtMs', 'finishedAtMs', 'seconds', 'chunkBytes']) num(dump, k, 'dump.', p, { optional: true });
    num(dump, 'bytesWritten', 'dump.', p, { min: 0 });
    num(dump, 'chunks', 'dump.', p, { min: 0 });
    bool(dump, 'complete', 'dump.', p);
    if (dump.fallback !== undefined) {
      const fb = obj(dump, 'fallback', 'dump.', p);
      if (fb) for (const k of ['plugin', 'code', 'reason']) str(fb, k, 'dump.fallback.', p);
    }
  }
  const rec = obj(r, 'recovery', '', p);
  if (rec) {
    str(rec, 'vm', 'recovery.', p, true);
    str(rec, 'check', 'recovery.', p, true);
    for (const k of ['startedAtMs', 'recoveredAtMs', 'initialBytes']) num(rec, k, 'recovery.', p, { optional: true });
  }
  num(r, 'serviceDowntimeSeconds', '', p, { nullable: true });
  num(r, 'totalSeconds', '', p, { nullable: true });
  const mem = obj(r, 'memory', '', p);
  if (mem) {
    for (const k of ['totalBytes', 'budgetBytes', 'marginBytes', 'peakBytes', 'handedOverBytes']) num(mem, k, 'memory.', p, { min: 0 });
    bool(mem, 'releasesImmediately', 'memory.', p);
  }
  const tl = obj(r, 'timeline', '', p);
  if (tl) {
    series(tl, 'dump', { pagesWritten: 'num', bytesWritten: 'num' }, p);
    series(tl, 'handover', { handedOverBytes: 'num' }, p);
    series(tl, 'shares', { dumpBps: 'nullable', recoveryBps: 'nullable', policy: 'str?', reason: 'str?' }, p);
    series(tl, 'memory', { crashedBytes: 'num', recoveryBytes: 'num' }, p);
    series(tl, 'recoveryIo', { readBps: 'num', writeBps: 'num' }, p);
    series(tl, 'events', { detail: 'str?' }, p);
    if (Array.isArray(tl.events)) tl.events.forEach((e, i) => isObj(e) && str(e, 'event', `timeline.events[${i}].`, p));
  }
  if (!Array.isArray(r.warnings)) p.push(`warnings must be an array (found ${describe(r.warnings)})`);
  else
    r.warnings.forEach((w, i) => {
      if (!isObj(w)) p.push(`warnings[${i}] must be an object`);
      else {
        str(w, 'code', `warnings[${i}].`, p);
        str(w, 'message', `warnings[${i}].`, p);
        str(w, 'plugin', `warnings[${i}].`, p, true);
      }
    });
  if (r.extra !== undefined && !isObj(r.extra)) p.push('extra must be an object');
  if (!['running', 'done', 'failed', 'interrupted'].includes(r.state as string)) p.push(`state must be running, done, failed or interrupted (found ${describe(r.state)})`);
  if (r.error !== undefined) {
    const e = obj(r, 'error', '', p);
    if (e) {
      str(e, 'code', 'error.', p);
      str(e, 'message', 'error.', p);
    }
  }
  return p;
}

/**
 * Check a parsed value and return it typed. Throws VcvError VCV_ERR_FORMAT_UNKNOWN (not a report),
 * VCV_ERR_FORMAT_UNSUPPORTED (another reportVersion) or VCV_ERR_FORMAT_INVALID (wrong field types).
 */
export function checkReport(value: unknown, file = 'the report'): CrashReport {
  if (!isObj(value) || !('reportVersion' in value) || !('sessionId' in value) || !('timeline' in value)) {
    throw new VcvError('VCV_ERR_FORMAT_UNKNOWN', `${file} is not a Vicover crash report (no reportVersion, sessionId and timeline: expected the report.json a crash session writes)`, { file });
  }
  if (value.reportVersion !== REPORT_VERSION) {
    throw new VcvError('VCV_ERR_FORMAT_UNSUPPORTED', `${file} is a Vicover crash report of version ${describe(value.reportVersion)}; this Vicover reads version ${REPORT_VERSION}`, { file });
  }
  const problems = reportProblems(value);
  if (problems.length) {
    const shown = problems.slice(0, 8);
    const more = problems.length > shown.length ? [`… and ${problems.length - shown.length} more`] : [];
    throw new VcvError('VCV_ERR_FORMAT_INVALID', [`${file} is a Vicover crash report (version 1) with ${problems.length} invalid field(s):`, ...shown, ...more].join('\n'), { file, path: problems[0]!.split(' ')[0] });
  }
  return value as unknown as CrashReport;
}

/** Parse report.json text (see checkReport for the errors). */
export function parseReport(text: string, file = 'the report'): CrashReport {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new VcvError('VCV_ERR_FORMAT_UNKNOWN', `${file} is not a Vicover crash report: it is not JSON (${(e as Error).message})`, { file });
  }
  return checkReport(value, file);
}
