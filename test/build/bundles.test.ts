/**
 * The per-package bundles of `npm run build` (scripts/bundle-packages.mjs, docs/plugins.md): what the
 * packages' exports name, that each package is still one module shared by its importers, and that the
 * paths a bundle makes from import.meta.url still lead to the files they name.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(path.join(ROOT, 'package.json'));

function workspacePackages(): { name: string; dir: string; exportsDefault: string }[] {
  const out = [];
  for (const group of ['packages', 'plugins']) {
    for (const name of fs.readdirSync(path.join(ROOT, group)).sort()) {
      const pj = path.join(ROOT, group, name, 'package.json');
      if (!fs.existsSync(pj)) continue;
      const pkg = JSON.parse(fs.readFileSync(pj, 'utf8')) as { name: string; exports: Record<string, { default: string }> };
      out.push({ name: pkg.name, dir: path.join(ROOT, group, name), exportsDefault: pkg.exports['.']!.default });
    }
  }
  return out;
}

let probes = 0;
/** Run an ESM script in a fresh Node process; its last stdout line as JSON. The script lives in this
 * directory for the run, so that its bare specifiers resolve through the repository's node_modules. */
function runFresh(script: string): unknown {
  const file = path.join(ROOT, 'test/build', `.probe-${process.pid}-${probes++}.mjs`);
  fs.writeFileSync(file, script);
  let r;
  try {
    r = spawnSync(process.execPath, [file], { cwd: ROOT, encoding: 'utf8' });
  } finally {
    fs.rmSync(file, { force: true });
  }
  if (r.status !== 0) throw new Error(`probe failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

describe('per-package bundles', () => {
  it('every package but the CLI resolves to its dist/index.bundle.js, and the bundles are up to date', () => {
    const pkgs = workspacePackages();
    expect(pkgs.length).toBeGreaterThan(10);
    for (const p of pkgs) {
      const resolved = require.resolve(p.name);
      if (p.name === '@vicover/cli') {
        expect(resolved).toBe(path.join(p.dir, 'dist/index.js'));
        continue;
      }
      expect(p.exportsDefault, p.name).toBe('./dist/index.bundle.js');
      expect(resolved, p.name).toBe(path.join(p.dir, 'dist/index.bundle.js'));
      expect(fs.existsSync(resolved), `${resolved} (run npm run build)`).toBe(true);
    }
    const check = spawnSync(process.execPath, [path.join(ROOT, 'scripts/bundle-packages.mjs'), '--check'], { encoding: 'utf8' });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  it('bundles only a package’s own files: each package is loaded once and shared by its importers', () => {
    const r = runFresh(`
      const errors = await import('@vicover/errors');
      const core = await import('@vicover/core');
      const linux = await import('@vicover/plugin-linux');
      const image = await import('@vicover/image');
      console.log(JSON.stringify({
        sameVcvError: core.VcvError === errors.VcvError,
        linuxPlugin: typeof linux.default,
        imageOpen: typeof image.openImage,
      }));
    `) as Record<string, unknown>;
    expect(r.sameVcvError).toBe(true);
    expect(r.linuxPlugin).not.toBe('undefined');
    expect(r.imageOpen).toBe('function');
    // esbuild marks each bundled file with a "// <path>" line: all of them are the package's own.
    for (const p of workspacePackages().filter((q) => q.name !== '@vicover/cli')) {
      const own = path.relative(ROOT, p.dir) + '/';
      const text = fs.readFileSync(path.join(p.dir, 'dist/index.bundle.js'), 'utf8');
      const files = [...text.matchAll(/^\/\/ ((?:packages|plugins|node_modules)\/\S+\.js)$/gm)].map((m) => m[1]!);
      expect(files.length, p.name).toBeGreaterThan(0);
      expect(files.filter((f) => !f.startsWith(own)), p.name).toEqual([]);
    }
  });

  it('paths made from import.meta.url still work from a bundle: package.json, the compression worker', () => {
    const r = runFresh(`
      import fs from 'node:fs';
      import os from 'node:os';
      import path from 'node:path';
      const { KdumpWriter, Bitmap } = await import('@vicover/dumpfmt');
      const { CORE_VERSION } = await import('@vicover/core');
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vcv-bundle-w-'));
      const ram = new Bitmap(64); ram.setRange(0, 64);
      const dump = new Bitmap(64); dump.setRange(0, 64);
      const w = await KdumpWriter.create({ path: path.join(dir, 'o.kdump'), maxPfn: 64, ram, dump, compression: 'zlib', excludeZero: true,
        notes: [], utsname: { machine: 'x86_64' }, physBase: 0n, dumpLevel: 1, nrCpus: 1, workers: 1 });
      const workers = w.workers;
      await w.writePages(0, Buffer.alloc(64 * 4096, 7));
      await w.finish();
      fs.rmSync(dir, { recursive: true, force: true });
      console.log(JSON.stringify({ workers, coreVersion: CORE_VERSION }));
    `) as { workers: number; coreVersion: string };
    // The compression worker (dist/kdump/compress-worker.js) is found from dist/index.bundle.js.
    expect(r.workers).toBe(1);
    expect(r.coreVersion).toBe(JSON.parse(fs.readFileSync(path.join(ROOT, 'packages/core/package.json'), 'utf8')).version);
  });
});
