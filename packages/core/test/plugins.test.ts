import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, Vicover, isVcvError, silentLogger, STAGE, type VcvError } from '@vicover/core';

/** A third-party plugin package outside the workspace (no access to our node_modules). */
function thirdParty(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'vcv-3rd-'));
  mkdirSync(path.join(d, 'vicover-plugin-audit'));
  writeFileSync(path.join(d, 'vicover-plugin-audit/package.json'), JSON.stringify({ name: 'vicover-plugin-audit', type: 'module', main: 'index.js' }));
  writeFileSync(
    path.join(d, 'vicover-plugin-audit/index.js'),
    `export default class AuditPlugin {
       static optionsSchema = { type: 'object', properties: { tag: { type: 'string', default: 'audit' } }, additionalProperties: false };
       static coreVersion = '>=0.1.0 <1';
       constructor(options) { this.name = 'audit'; this.options = options; }
       apply(core) {
         core.hooks.onCrash.tapPromise({ name: 'audit', stage: -500 }, async (session) => { session.seen.push(this.options.tag + ':onCrash'); });
         core.hooks.scheduleIo.tap('audit', (shares) => ({ ...shares, dumpBps: 42, policy: this.options.tag }));
       }
     }`,
  );
  writeFileSync(path.join(d, 'vicover.config.yaml'), 'plugins:\n  - ["./vicover-plugin-audit", { tag: "site-a" }]\n');
  return d;
}

describe('plugins', () => {
  it('loads a third-party plugin from a path outside the workspace and runs its taps', async () => {
    const d = thirdParty();
    const cfg = await loadConfig({ cwd: d });
    const core = await Vicover.create({ config: cfg.config, plugins: cfg.plugins, logger: silentLogger() });
    const info = core.plugins();
    expect(info.map((p) => p.name)).toEqual(['audit']);
    expect(info[0]!.hooks).toEqual(['onCrash', 'scheduleIo']);
    expect(info[0]!.source).toBe(path.join(d, 'vicover-plugin-audit/index.js'));
    const session = { seen: [] as string[] };
    await core.hooks.onCrash.promise(session as never);
    expect(session.seen).toEqual(['site-a:onCrash']);
    const shares = core.hooks.scheduleIo.call({ dumpBps: 1, recoveryBps: 2 }, {} as never);
    expect(shares).toEqual({ dumpBps: 42, recoveryBps: 2, policy: 'site-a' });
  });

  it('accepts objects, classes and factories, with [name, options] pairs', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'vcv-kinds-'));
    writeFileSync(path.join(d, 'obj.mjs'), `export default { name: 'obj', apply(core, o) { core.hooks.shutdown.tap('obj', () => { globalThis.__vcv.push('obj:' + o.x); }); } };`);
    writeFileSync(path.join(d, 'cls.mjs'), `export default class { constructor(o) { this.name = 'cls'; this.o = o; } apply(core) { core.hooks.shutdown.tap('cls', () => { globalThis.__vcv.push('cls:' + this.o.x); }); } };`);
    writeFileSync(path.join(d, 'fac.cjs'), `module.exports = (o) => ({ name: 'fac', apply(core) { core.hooks.shutdown.tap('fac', () => { globalThis.__vcv.push('fac:' + o.x); }); } });`);
    writeFileSync(path.join(d, 'vicover.config.json'), JSON.stringify({ plugins: [['./obj.mjs', { x: 1 }], ['./cls.mjs', { x: 2 }], ['./fac.cjs', { x: 3 }]] }));
    (globalThis as { __vcv?: string[] }).__vcv = [];
    const cfg = await loadConfig({ cwd: d });
    const core = await Vicover.create({ config: cfg.config, plugins: cfg.plugins, logger: silentLogger() });
    await core.hooks.shutdown.promise({ reason: 'test' });
    expect((globalThis as { __vcv?: string[] }).__vcv).toEqual(['obj:1', 'cls:2', 'fac:3']);
  });

  it('rejects a plugin whose core version range does not fit', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'vcv-range-'));
    writeFileSync(path.join(d, 'old.mjs'), `export default { name: 'old', coreVersion: '^7.0.0', apply() {} };`);
    writeFileSync(path.join(d, 'vicover.config.yaml'), 'plugins: ["./old.mjs"]\n');
    const e = (await loadConfig({ cwd: d }).catch((x) => x)) as VcvError;
    expect(e.code).toBe('VCV_ERR_PLUGIN_VERSION');
    expect(e.details.plugin).toBe('old');
    expect(e.message).toMatch(/plugins\[0\] "old": supports @vicover\/core \^7\.0\.0, but this is \d+\.\d+\.\d+/);
  });

  it('rejects a module that does not export a plugin', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'vcv-bad-'));
    writeFileSync(path.join(d, 'bad.mjs'), `export default 42;`);
    writeFileSync(path.join(d, 'vicover.config.yaml'), 'plugins: ["./bad.mjs"]\n');
    const e = (await loadConfig({ cwd: d }).catch((x) => x)) as VcvError;
    expect(e.code).toBe('VCV_ERR_PLUGIN_INVALID');
    expect(e.message).toContain('plugins[0] "./bad.mjs"');
  });

  it('wraps an exception in any tap so the error names the plugin and the hook', async () => {
    const core = new Vicover({ logger: silentLogger() });
    await core.use({
      name: 'flaky',
      apply(c) {
        c.hooks.onCrash.tapPromise({ name: 'flaky', stage: STAGE.TRIAGE }, async () => {
          throw new Error('boom');
        });
        c.hooks.scheduleIo.tap('flaky', () => {
          throw new TypeError('bad math');
        });
        c.hooks.onChunkDumped.tapAsync('flaky', (_chunk, _s, cb) => cb(new Error('late')));
      },
    });
    const e1 = (await core.hooks.onCrash.promise({} as never).catch((x) => x)) as VcvError;
    expect(isVcvError(e1)).toBe(true);
    expect(e1.code).toBe('VCV_ERR_HOOK_FAILED');
    expect(e1.details).toMatchObject({ plugin: 'flaky', hook: 'onCrash' });
    expect(e1.message).toBe('plugin "flaky" failed in hook onCrash: boom');
    let e2: unknown;
    try {
      core.hooks.scheduleIo.call({ dumpBps: 1, recoveryBps: 1 }, {} as never);
    } catch (e) {
      e2 = e;
    }
    expect((e2 as VcvError).details).toMatchObject({ plugin: 'flaky', hook: 'scheduleIo' });
    const e3 = (await core.hooks.onChunkDumped.promise({} as never, {} as never).catch((x) => x)) as VcvError;
    expect(e3.details).toMatchObject({ plugin: 'flaky', hook: 'onChunkDumped' });
  });

  it('a tap that throws a Vicover error keeps its code and gains plugin and hook', async () => {
    const core = new Vicover({ logger: silentLogger() });
    const { VcvError } = await import('@vicover/core');
    await core.use({ name: 'disk', apply: (c) => c.hooks.onChunkDumped.tapPromise('disk', async () => { throw new VcvError('VCV_ERR_NO_SPACE', 'disk full'); }) });
    const e = (await core.hooks.onChunkDumped.promise({} as never, {} as never).catch((x) => x)) as VcvError;
    expect(e.code).toBe('VCV_ERR_NO_SPACE');
    expect(e.details).toMatchObject({ plugin: 'disk', hook: 'onChunkDumped' });
  });

  it('an apply() that throws names the plugin', async () => {
    const core = new Vicover({ logger: silentLogger() });
    const e = (await core.use({ name: 'broken', apply() { throw new Error('nope'); } }).catch((x) => x)) as VcvError;
    expect(e.code).toBe('VCV_ERR_PLUGIN_APPLY');
    expect(e.message).toBe('plugin "broken": apply() threw: nope');
  });
});
