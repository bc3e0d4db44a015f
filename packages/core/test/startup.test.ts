/**
 * What the CLI's start-up leaves out, and that leaving it out changes nothing: pino is loaded only
 * when a log line is written (lazyLogger), and a `^X.Y.Z` coreVersion is decided without semver.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { caretSatisfies } from '../src/plugin.js';

const require = createRequire(import.meta.url);
const semver = { satisfies: require('semver/functions/satisfies') as (v: string, r: string, o?: object) => boolean, validRange: require('semver/ranges/valid') as (r: string) => string | null };
const DIST = fileURLToPath(new URL('../dist/index.bundle.js', import.meta.url));

/** Run a script against the built core in a fresh process; returns its stdout. */
function fresh(script: string): string {
  // Imports first: an ES module's import declarations must be at its top level.
  const lines = script.split('\n');
  const imports = lines.filter((l) => /^\s*import /.test(l));
  const body = lines.filter((l) => !/^\s*import /.test(l));
  return execFileSync(process.execPath, ['--input-type=module', '-e', [`import * as core from ${JSON.stringify(DIST)};`, ...imports, ...body].join('\n')], { encoding: 'utf8' });
}

describe('lazy logger (createLogger)', () => {
  it('below its level nothing loads pino; the first line that is written does, and is pino JSON with its bindings', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vcv-log-'));
    const file = path.join(dir, 'log.jsonl');
    const out = fresh(`
      import * as fs from 'node:fs';
      import { createRequire } from 'node:module';
      const pinoLoaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('/pino/'));
      const fd = fs.openSync(${JSON.stringify(file)}, 'w');
      const log = core.createLogger({ level: 'warn', format: 'json', fd, base: { simulated: true } });
      const child = log.child({ plugin: 'p1' });
      const grandchild = child.child({ vm: 'web1' });
      log.info('dropped'); child.debug({ x: 1 }, 'dropped'); grandchild.trace('dropped');
      const before = pinoLoaded();
      const enabled = [log.isLevelEnabled('info'), log.isLevelEnabled('warn'), child.level];
      grandchild.warn({ n: 7 }, 'kept');
      log.error('also kept');
      fs.closeSync(fd);
      console.log(JSON.stringify({ before, after: pinoLoaded(), enabled }));
    `);
    const r = JSON.parse(out) as { before: boolean; after: boolean; enabled: unknown[] };
    expect(r.before).toBe(false);
    expect(r.after).toBe(true);
    expect(r.enabled).toEqual([false, true, 'warn']);
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 40, msg: 'kept', n: 7, plugin: 'p1', vm: 'web1', simulated: true });
    expect(typeof lines[0]!.time).toBe('string'); // isoTime
    expect(lines[1]).toMatchObject({ level: 50, msg: 'also kept', simulated: true });
    expect(lines[1]!.plugin).toBeUndefined();
  });

  it('a level set later reaches children made before it (as in pino); a child with options keeps its own', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vcv-log-'));
    const file = path.join(dir, 'log.jsonl');
    fresh(`
      import * as fs from 'node:fs';
      const fd = fs.openSync(${JSON.stringify(file)}, 'w');
      const log = core.createLogger({ level: 'warn', format: 'json', fd });
      const early = log.child({ c: 'early' });
      log.level = 'debug';
      log.debug('root debug');
      early.debug('early debug');
      early.warn('early warn');
      log.child({ c: 'late' }).debug('late debug');
      log.child({ c: 'opts' }, { level: 'error' }).warn('dropped by its own level');
      core.silentLogger().fatal('never');
      fs.closeSync(fd);
    `);
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { msg: string });
    expect(lines.map((l) => l.msg)).toEqual(['root debug', 'early debug', 'early warn', 'late debug']);
  });

  it('is not a thenable: awaiting it does not load pino', () => {
    const out = fresh(`
      const log = await (async () => core.createLogger({ level: 'warn', format: 'json' }))();
      const { createRequire } = await import('node:module');
      console.log(Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('/pino/')), typeof log.warn);
    `);
    expect(out.trim()).toBe('false function');
  });
});

describe('caretSatisfies (coreVersion without semver)', () => {
  it('decides exactly as semver does for ^X.Y.Z against X.Y.Z, and leaves other forms to semver', () => {
    const nums = [0, 1, 2, 3, 10];
    const versions: string[] = [];
    for (const a of nums) for (const b of nums) for (const c of nums) versions.push(`${a}.${b}.${c}`);
    const ranges = versions.filter((_, i) => i % 3 === 0).map((v) => `^${v}`);
    let checked = 0;
    for (const v of versions) {
      for (const r of ranges) {
        expect(caretSatisfies(v, r), `${v} ${r}`).toBe(semver.satisfies(v, r, { includePrerelease: true }));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(2000);
    for (const [v, r] of [
      ['0.1.0', '>=0.1.0 <1'],
      ['0.1.0', '~0.1.0'],
      ['0.1.0', '^0.1'],
      ['0.1.0', '^0.1.0-rc.1'],
      ['0.1.0-rc.1', '^0.1.0'],
      ['0.1.0', '^01.0.0'],
      ['0.1.0', '^0.1.0 || ^1.0.0'],
      ['0.1.0', 'not a range'],
    ] as const) {
      expect(caretSatisfies(v, r), `${v} ${r}`).toBeNull();
    }
    expect(caretSatisfies('0.1.0', ' ^0.1.0 ')).toBe(true);
    expect(semver.validRange(' ^0.1.0 ')).not.toBeNull();
  });
});
