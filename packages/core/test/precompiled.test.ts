import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Validators precompiled by `npm run build` (scripts/precompile-schemas.mjs): the same answers as ajv
// compiling at run time, without loading ajv. Each case runs in a fresh Node process so that what the
// process loaded can be seen.
const CORE = fileURLToPath(new URL('../', import.meta.url));
const ROOT = path.resolve(CORE, '../..');

interface Run {
  results: { problems: { path: string; message: string }[]; data: unknown }[];
  ajvLoaded: boolean;
}

function run(cases: { schema: 'core' | string; data: unknown; tweak?: boolean }[], precompiled: boolean): Run {
  const script = `
    import { createRequire } from 'node:module';
    const core = await import(${JSON.stringify(path.join(CORE, 'dist/index.bundle.js'))});
    const cases = JSON.parse(process.argv[1]);
    const results = [];
    for (const c of cases) {
      let schema;
      if (c.schema === 'core') schema = core.coreSchema;
      else schema = (await import(c.schema)).default.optionsSchema;
      if (c.tweak) schema = { ...schema, description: 'changed since the build' };
      const data = structuredClone(c.data);
      results.push({ problems: core.validate(schema, data).map((p) => ({ path: p.path, message: p.message })), data });
    }
    const cache = createRequire(import.meta.url).cache;
    console.log(JSON.stringify({ results, ajvLoaded: Object.keys(cache).some((k) => k.includes('/ajv/dist/ajv.js')) }));
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(cases)], {
    cwd: ROOT,
    env: { ...process.env, VICOVER_PRECOMPILED: precompiled ? '1' : '0' },
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').pop()!) as Run;
}

const linux = path.join(ROOT, 'plugins/linux/dist/index.bundle.js');
const CASES = [
  { schema: 'core', data: { mode: 'vicover', dump: { level: 31 } } },
  { schema: 'core', data: { mode: 'vicover', dump: { chunkMb: 64, level: 40 }, plugins: [['linux', {}], 7] } },
  { schema: 'core', data: { io: { policy: 3 }, recovery: 'yes' } },
  { schema: linux, data: { freeRule: 'refcount-zero' } },
  { schema: linux, data: { freeRule: 'refcount', vmcoreinfoFile: 5, nope: true } },
];

describe('precompiled validators', () => {
  it('npm run build left one per schema of the repository', () => {
    const dir = path.join(CORE, 'dist/precompiled');
    expect(existsSync(dir)).toBe(true);
    // core configuration + one options schema per plugin package
    const plugins = readdirSync(path.join(ROOT, 'plugins')).filter((p) => existsSync(path.join(ROOT, 'plugins', p, 'package.json')));
    expect(readdirSync(dir).filter((f) => f.endsWith('.cjs')).length).toBe(1 + plugins.length);
  });

  it('give the same problems and defaults as ajv at run time, and ajv is never loaded', () => {
    const pre = run(CASES, true);
    const rt = run(CASES, false);
    expect(pre.ajvLoaded).toBe(false);
    expect(rt.ajvLoaded).toBe(true);
    expect(pre.results).toEqual(rt.results);
    // the cases do exercise both answers: valid with defaults filled in, and invalid with messages
    expect(pre.results[0]!.problems).toEqual([]);
    expect((pre.results[0]!.data as { dump: { chunkMiB?: number } }).dump.chunkMiB).toBeGreaterThan(0);
    expect(pre.results[1]!.problems.map((p) => p.message).join('\n')).toMatch(/did you mean "chunkMiB"/);
    expect(pre.results[4]!.problems.length).toBeGreaterThanOrEqual(3);
  });

  it('a schema changed since the build is compiled at run time, not matched with a stale validator', () => {
    const r = run([{ schema: 'core', data: { dump: { level: 99 } }, tweak: true }], true);
    expect(r.ajvLoaded).toBe(true);
    expect(r.results[0]!.problems[0]!.message).toMatch(/dump\.level must be ≤ 31/);
  });
});
