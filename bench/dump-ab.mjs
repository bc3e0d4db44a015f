#!/usr/bin/env node
// A/B of `vicover dump` variants that differ only in environment switches, run alternately on the same
// input so that the machine's drift touches every variant alike. Medians of whole-process times
// (spawn to exit; vicover fsyncs before it exits). See docs/performance.md "Selective dump".
//
//   npm run build && node bench/dump-ab.mjs [--image big4] [--input elf|ram] [--runs 6] [--json]
//        [--args="-d 31 --compress zlib"] [--makedumpfile] [--cp] --variant NAME[@DIR][=ENV=VALUE,ENV=VALUE] --variant ...
//
// NAME@DIR runs the build in another checkout DIR (e.g. `git worktree add /tmp/base HEAD~3`, then
// `npm ci && npm run build` there), to compare commits. --makedumpfile adds makedumpfile at the same
// level (`-d N`, `-c` for --compress zlib) on the same input as a reference; --cp adds `cp INPUT OUT`
// (the physical ceiling of a `-d 16` raw dump). Every run is timed
// through a `sync` after the process, since makedumpfile does not fsync its output.
//
// Example: the native page packer against node:zlib, and the precompiled validators against ajv:
//   node bench/dump-ab.mjs --args="-d 31 --compress zlib" --variant packer --variant js=VICOVER_NATIVE_PACK=0
//   node bench/dump-ab.mjs --args="-d 31" --variant pack --variant js=VICOVER_NATIVE_COPY=0
//   node bench/dump-ab.mjs --args="-d 31" --variant precompiled --variant ajv=VICOVER_PRECOMPILED=0
//   node bench/dump-ab.mjs --args="-d 31" --variant native --variant js=VICOVER_NATIVE_CLASSIFY=0
//   node bench/dump-ab.mjs --args="-d 31" --variant posix --variant fork=VICOVER_NATIVE_SPAWN=0
//   node bench/dump-ab.mjs --args="-d 31" --variant bg --variant nobg=VICOVER_BACKGROUND_SYNC=0
//   node bench/dump-ab.mjs --input ram --args="-d 16" --cp --variant bg32 --variant bg128=VICOVER_BACKGROUND_SYNC=128
// Switches: VICOVER_NATIVE_PACK=0, VICOVER_NATIVE_COPY=0, VICOVER_PRECOMPILED=0, VICOVER_NATIVE_CLASSIFY=0,
// VICOVER_NATIVE_SPAWN=0, VICOVER_BACKGROUND_SYNC=0 (or N: the background sync's step in MiB).
// stdout: one line per variant (with --json, then one JSON object); stderr: each run. Nothing asserted.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { ensureImage } from '../test/guest/images.mjs';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const BIN = path.join(ROOT, 'packages/cli/dist/bin.js');
const { values: args } = parseArgs({
  options: {
    image: { type: 'string', default: 'big4' },
    input: { type: 'string', default: 'elf' },
    runs: { type: 'string', default: '6' },
    args: { type: 'string', default: '-d 31' },
    variant: { type: 'string', multiple: true, default: [] },
    json: { type: 'boolean', default: false },
    makedumpfile: { type: 'boolean', default: false },
    cp: { type: 'boolean', default: false },
  },
});
if (!fs.existsSync(BIN)) throw new Error('build first: npm run build');
if (args.variant.length + (args.makedumpfile ? 1 : 0) + (args.cp ? 1 : 0) < 2) throw new Error('give at least two --variant NAME[@DIR][=ENV=VALUE,…] (or one and --makedumpfile or --cp)');
const variants = args.variant.map((v) => {
  const [spec0, ...rest] = v.split('=');
  const [name, root] = spec0.split('@');
  const bin = root ? path.join(path.resolve(root), 'packages/cli/dist/bin.js') : BIN;
  if (!fs.existsSync(bin)) throw new Error(`${name}: ${bin} is not built`);
  const env = {};
  const spec = rest.join('=');
  for (const kv of spec ? spec.split(',') : []) {
    const [k, ...val] = kv.split('=');
    env[k] = val.join('=');
  }
  return { name, env, seconds: [], argv: (input, out) => [process.execPath, bin, 'dump', input, '-o', out, ...args.args.split(/\s+/).filter(Boolean), '--json'] };
});
if (args.makedumpfile) {
  const a = args.args.split(/\s+/).filter(Boolean);
  const level = a.includes('-d') ? a[a.indexOf('-d') + 1] : a.includes('--level') ? a[a.indexOf('--level') + 1] : '31';
  const zlib = a.join(' ').includes('--compress zlib');
  variants.push({ name: 'makedumpfile', env: {}, seconds: [], argv: (input, out, elf) => ['makedumpfile', '-d', level, ...(zlib ? ['-c'] : []), elf, out] }); // it reads only the ELF
}
if (args.cp) variants.push({ name: 'cp', env: {}, seconds: [], argv: (input, out) => ['cp', input, out] }); // the physical ceiling: the input copied whole
const dir = await ensureImage(args.image);
const input = path.join(dir, args.input === 'ram' ? 'ram.img' : 'vmcore.fixed.elf');
const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vcv-ab-')), 'out.kdump');
const runs = Number(args.runs);
for (let i = 0; i < runs + 1; i++) {
  for (const v of i % 2 ? [...variants].reverse() : variants) {
    fs.rmSync(out, { force: true });
    const t0 = performance.now();
    const [cmd, ...argv] = v.argv(input, out, path.join(dir, 'vmcore.fixed.elf'));
    const r = spawnSync(cmd, argv, { env: { ...process.env, ...v.env }, encoding: 'utf8' });
    spawnSync('sync');
    const s = (performance.now() - t0) / 1000;
    if (r.status !== 0) throw new Error(`${v.name}: ${cmd} exited ${r.status}: ${r.stderr}`);
    if (i > 0) v.seconds.push(s); // the first round warms the page cache
    process.stderr.write(`dump-ab: ${i === 0 ? 'warm-up' : `run ${i}/${runs}`} ${v.name}: ${s.toFixed(3)} s\n`);
  }
}
fs.rmSync(path.dirname(out), { recursive: true, force: true });
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ref = variants.find((v) => v.name === 'makedumpfile');
const cpRef = variants.find((v) => v.name === 'cp');
for (const v of variants) {
  const ratio = v === ref || v === cpRef ? '' : [ref, cpRef].filter(Boolean).map((r) => `  ${(median(v.seconds) / median(r.seconds)).toFixed(2)}x ${r.name}`).join('');
  process.stdout.write(`${v.name.padEnd(14)} median ${median(v.seconds).toFixed(3)} s${ratio}  runs ${v.seconds.map((x) => x.toFixed(2)).join(' ')}  ${JSON.stringify(v.env)}\n`);
}
if (args.json) {
  process.stdout.write(
    JSON.stringify({ date: new Date().toISOString(), image: args.image, input: args.input, args: args.args, variants: variants.map((v) => ({ name: v.name, env: v.env, medianSeconds: median(v.seconds), seconds: v.seconds })) }) + '\n',
  );
}
