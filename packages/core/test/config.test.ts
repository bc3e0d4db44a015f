import { mkdtempSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfig, isVcvError, type VcvError } from '@vicover/core';

function dir(files: Record<string, string>): string {
  const d = mkdtempSync(path.join(tmpdir(), 'vcv-cfg-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(d, name)), { recursive: true });
    writeFileSync(path.join(d, name), text);
  }
  return d;
}

async function configError(files: Record<string, string>, opts: { file?: string } = {}): Promise<VcvError> {
  const d = dir(files);
  try {
    await loadConfig({ cwd: d, file: opts.file });
  } catch (e) {
    if (isVcvError(e)) return e;
    throw e;
  }
  throw new Error('expected a configuration error');
}

describe('configuration errors are for people', () => {
  it('misspelled key: file:line:column, path, did you mean', async () => {
    const e = await configError({ 'vicover.config.yaml': 'mode: vicover\ndump:\n  chunkMb: 64\n' });
    expect(e.code).toBe('VCV_ERR_CONFIG_INVALID');
    expect(e.message).toMatch(/vicover\.config\.yaml:3:3: dump\.chunkMb is not a known key — did you mean "chunkMiB"\?$/);
    expect(e.exitCode).toBe(78);
  });

  it('wrong type: what was expected, what was found, the description', async () => {
    const e = await configError({ 'vicover.config.json': '{\n  "dump": {\n    "level": "high"\n  }\n}\n' });
    expect(e.code).toBe('VCV_ERR_CONFIG_INVALID');
    expect(e.message).toMatch(/vicover\.config\.json:3:14: dump\.level must be integer, got string "high" \(makedumpfile dump level: 1 zero, 2 cache, 4 private cache, 8 user data, 16 free pages\)$/);
  });

  it('unknown plugin: names it, says what was tried', async () => {
    const e = await configError({ 'vicover.config.yaml': 'plugins:\n  - linux-typo\n' });
    expect(e.code).toBe('VCV_ERR_PLUGIN_NOT_FOUND');
    expect(e.details.plugin).toBe('linux-typo');
    expect(e.message).toMatch(/vicover\.config\.yaml:2:5: plugins\[0\] "linux-typo": plugin not found \(tried @vicover\/plugin-linux-typo, vicover-plugin-linux-typo from /);
  });

  it('wrong enum value lists the choices', async () => {
    const e = await configError({ '.vicoverrc.yml': 'mode: fast\n' });
    expect(e.message).toMatch(/\.vicoverrc\.yml:1:7: mode must be one of "vicover", "coredump-restart", "restart-only", got string "fast"/);
  });

  it('bad plugin options name the plugin and the path inside its options', async () => {
    const d = dir({
      'p/plugin.mjs': `export default { name: 'picky', optionsSchema: { type: 'object', additionalProperties: false, properties: { rateMiBps: { type: 'number', minimum: 1 } } }, apply() {} };`,
      'vicover.config.yaml': 'plugins:\n  - ["./p/plugin.mjs", { rateMiBps: 0, ratMiBps: 3 }]\n',
    });
    const e = await loadConfig({ cwd: d }).catch((x: VcvError) => x);
    expect(isVcvError(e)).toBe(true);
    const err = e as VcvError;
    expect(err.code).toBe('VCV_ERR_PLUGIN_OPTIONS');
    expect(err.details.plugin).toBe('picky');
    expect(err.message).toContain('plugins[0] "picky": rateMiBps must be ≥ 1, got number 0');
    expect(err.message).toContain('plugins[0] "picky": ratMiBps is not a known key — did you mean "rateMiBps"?');
    expect(err.message).toMatch(/vicover\.config\.yaml:2:\d+: plugins\[0\] "picky"/);
  });

  it('a YAML syntax error gives the position', async () => {
    const e = await configError({ 'vicover.config.yaml': 'dump:\n  level: [1,\n' });
    expect(e.code).toBe('VCV_ERR_CONFIG_PARSE');
    expect(e.message).toMatch(/vicover\.config\.yaml:\d+:\d+: cannot parse/);
  });

  it('--config naming a missing file', async () => {
    const e = await configError({}, { file: 'nope.yaml' });
    expect(e.code).toBe('VCV_ERR_CONFIG_NOT_FOUND');
  });
});

describe('configuration discovery, defaults and freezing', () => {
  const cases: Record<string, string> = {
    'vicover.config.json': '{"mode":"restart-only"}',
    'vicover.config.yaml': 'mode: restart-only\n',
    'vicover.config.yml': 'mode: restart-only\n',
    'vicover.config.mjs': 'export default { mode: "restart-only" };',
    'vicover.config.cjs': 'module.exports = { mode: "restart-only" };',
    'vicover.config.js': 'export default { mode: "restart-only" };',
    '.vicoverrc': 'mode: restart-only\n',
    '.vicoverrc.json': '{"mode":"restart-only"}',
    '.vicoverrc.yaml': 'mode: restart-only\n',
    'package.json': '{"name":"x","type":"module","vicover":{"mode":"restart-only"}}',
  };
  for (const [name, text] of Object.entries(cases)) {
    it(`finds ${name}`, async () => {
      const files: Record<string, string> = { [name]: text };
      if (name.endsWith('.js') && name !== 'package.json') files['package.json'] = '{"type":"module"}';
      const d = dir(files);
      const c = await loadConfig({ cwd: d });
      expect(c.file).toBe(path.join(d, name));
      expect(c.config.mode).toBe('restart-only');
    });
  }

  it('applies defaults and freezes the result', async () => {
    const c = await loadConfig({ cwd: dir({ 'vicover.config.yaml': 'dump:\n  chunkMiB: 64\n' }) });
    expect(c.config.dump.chunkMiB).toBe(64);
    expect(c.config.dump.level).toBe(31);
    expect(c.config.dump.format).toBe('kdump');
    expect(c.config.io.tickMs).toBe(100);
    expect(Object.isFrozen(c.config)).toBe(true);
    expect(Object.isFrozen(c.config.dump)).toBe(true);
    expect(() => {
      (c.config.dump as { level: number }).level = 1;
    }).toThrow();
  });

  it('--config loads an explicit file from anywhere', async () => {
    const d = dir({ 'elsewhere/site.yaml': 'mode: coredump-restart\n' });
    const c = await loadConfig({ cwd: tmpdir(), file: path.join(d, 'elsewhere/site.yaml') });
    expect(c.config.mode).toBe('coredump-restart');
  });
});

describe('example configs in config/', () => {
  const root = fileURLToPath(new URL('../../../config/', import.meta.url));
  const files = readdirSync(root).filter((f) => /\.(ya?ml|json)$/.test(f));
  it('has examples', () => expect(files.length).toBeGreaterThan(0));
  for (const f of files) {
    it(`${f} validates (core schema and every plugin's options)`, async () => {
      const c = await loadConfig({ file: path.join(root, f) });
      expect(c.file).toBe(path.join(root, f));
    });
  }
});
