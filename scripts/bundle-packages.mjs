#!/usr/bin/env node
// Bundle each workspace package's compiled ESM (dist/index.js and the files it imports) into one file,
// dist/index.bundle.js, which the package's "exports" point to. Run by `npm run build` after `tsc -b`.
//
// Why: Node 20's ESM loader pays per module file (resolution, an asynchronous open/read/close,
// compilation, linking). A `vicover dump -d 31` opened 74 JavaScript files of ours; with one file per
// package it opens 12 (docs/performance.md, "Start-up: one file per package").
//
// Only the package's own relative imports are bundled: every bare specifier (other @vicover packages,
// tapable, pino, node:*) stays an import, so each package is still loaded once and shared by all its
// importers. Each bundle sits in its package's dist/ directory, where dist/index.js was, so paths made
// from import.meta.url (native addons in ../native/build, ../package.json, precompiled validators)
// resolve as before. The compression worker (dumpfmt dist/kdump/compress-worker.js) stays unbundled.
//
//   node scripts/bundle-packages.mjs [--check]   (--check: only report which bundles are missing or stale)

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

function workspaces() {
  const out = [];
  for (const group of ['packages', 'plugins']) {
    const dir = path.join(ROOT, group);
    for (const name of fs.readdirSync(dir).sort()) {
      const pkgDir = path.join(dir, name);
      const pj = path.join(pkgDir, 'package.json');
      if (!fs.existsSync(pj)) continue;
      const pkg = JSON.parse(fs.readFileSync(pj, 'utf8'));
      // A package opts in through its exports (all but the CLI, whose bin loads its commands lazily).
      if (pkg.exports?.['.']?.default !== './dist/index.bundle.js') continue;
      out.push({ name: pkg.name, dir: pkgDir });
    }
  }
  return out;
}

/** Newest mtime of the compiled files a bundle is made from. */
function newestInput(distDir) {
  let newest = 0;
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.js') && !e.name.endsWith('.bundle.js')) newest = Math.max(newest, fs.statSync(p).mtimeMs);
    }
  };
  walk(distDir);
  return newest;
}

const check = process.argv.includes('--check');
const list = workspaces();
let esbuild;
let problems = 0;
const t0 = performance.now();
for (const { name, dir } of list) {
  const dist = path.join(dir, 'dist');
  const entry = path.join(dist, 'index.js');
  const out = path.join(dist, 'index.bundle.js');
  if (!fs.existsSync(entry)) {
    console.error(`bundle: ${name}: ${path.relative(ROOT, entry)} is missing (run tsc -b first)`);
    problems++;
    continue;
  }
  if (check) {
    if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < newestInput(dist)) {
      console.error(`bundle: ${name}: ${path.relative(ROOT, out)} is missing or older than dist/`);
      problems++;
    }
    continue;
  }
  esbuild ??= await import('esbuild');
  await esbuild.build({
    entryPoints: [entry],
    outfile: out,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: true,
    logLevel: 'warning',
    legalComments: 'none',
  });
}
if (!check) console.error(`bundle: ${list.length} packages in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
process.exit(problems ? 1 : 0);
