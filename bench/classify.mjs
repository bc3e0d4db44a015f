#!/usr/bin/env node
// Struct-page classification alone, on simulated guests (docs/performance.md "## Scale (simulated host)").
//
//   npm run bench:classify -- [--json] [--sizes 4,64,256,1024] [--free 50,90] [--runs 3]
//                             [--before-ref b74158e] [--dir DIR] [--keep-images] [--no-lock]
//
// For each guest size and free percentage: generate the simulated guest image (its own process;
// a sparse file, deleted afterwards unless --keep-images), then time `classifyPages` at dump level 31
// on the simulated memory source, each run in a fresh process: `after` is this tree's
// plugins/linux/dist (npm run build first), `before` is plugins/linux/src/classify.ts at --before-ref
// (git show, transpiled with TypeScript into bench/results/tmp/, run against this tree's dist for
// everything else). Runs alternate before/after; the timed runs of each guest are wrapped together in
// `flock /tmp/vicover-heavy.lock` so they do not overlap another heavy benchmark (generating is not),
// and each records the 1-minute load average when it starts. Both get the classifier warm-up the plugin runs at start-up; only classifyPages is timed.
//
// Per row (medians of --runs): guest GiB, free %, pages examined (struct pages the decode looked at:
// pages in use, free block heads, compound heads), selected pages (RAM pages not excluded by the
// struct-page rules at -d 31; zero pages are found at write time and not subtracted here),
// struct-page bytes read (all bytes the memory source was asked for during classifyPages, page-table
// entries included), classify seconds, ms per GiB of guest and µs per 1000 examined pages.
//
// stdout: a table, then (last line) one JSON object {"rows":[…]}; stderr: progress.
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const LOCK = '/tmp/vicover-heavy.lock';
const GiB = 1024 ** 3;

const { values: a } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    sizes: { type: 'string', default: '4,64,256,1024' },
    free: { type: 'string', default: '50,90' },
    runs: { type: 'string', default: '3' },
    'before-ref': { type: 'string', default: 'b74158e' },
    dir: { type: 'string' },
    'keep-images': { type: 'boolean', default: false },
    'no-lock': { type: 'boolean', default: false },
    // internal: one child process
    child: { type: 'string' },
    image: { type: 'string' },
    gib: { type: 'string' },
    'free-percent': { type: 'string' },
  },
});
const say = (s) => process.stderr.write(`bench:classify: ${s}\n`);

async function simhost() {
  return import(pathToFileURL(path.join(ROOT, 'plugins/simhost/dist/index.bundle.js')).href);
}
function specOf(gib, free) {
  return { memoryMiB: gib * 1024, freePercent: free };
}

/** The classifier at `ref`, transpiled next to this tree (its imports resolve to this tree's dist). */
async function beforeModule(ref) {
  const outDir = path.join(ROOT, 'bench/results/tmp');
  mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, `classify-${ref}.mjs`);
  try {
    statSync(out);
    return out;
  } catch {}
  const src = await new Promise((resolve, reject) =>
    execFile('git', ['show', `${ref}:plugins/linux/src/classify.ts`], { cwd: ROOT, maxBuffer: 16 << 20 }, (e, so) => (e ? reject(e) : resolve(so))),
  );
  const ts = (await import('typescript')).default;
  let js = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText;
  const dist = (f) => pathToFileURL(path.join(ROOT, 'plugins/linux/dist', f)).href;
  js = js.replace(/from '\.\/([a-z-]+\.js)'/g, (_, f) => `from '${dist(f)}'`);
  writeFileSync(out, js);
  return out;
}

// ---- child: generate one image -------------------------------------------------------------------
if (a.child === 'generate') {
  const { ensureImage, normalizeSpec } = await simhost();
  const img = await ensureImage(normalizeSpec(specOf(Number(a.gib), Number(a['free-percent']))), a.dir, (m) => say(`  ${m}`));
  process.stdout.write(JSON.stringify({ dir: img.dir, fileBytes: img.meta.fileBytes, generateSeconds: img.meta.generateSeconds, intended: img.meta.intended }) + '\n');
  process.exit(0);
}

// ---- child: one timed classification -------------------------------------------------------------
if (a.child === 'before' || a.child === 'after') {
  const load1 = loadavg()[0];
  const { ensureImage, normalizeSpec, SimGuestMemory } = await simhost();
  const linux = await import(pathToFileURL(path.join(ROOT, 'plugins/linux/dist/index.bundle.js')).href);
  const impl = a.child === 'after' ? linux : await import(pathToFileURL(await beforeModule(a['before-ref'])).href);
  const img = await ensureImage(normalizeSpec(specOf(Number(a.gib), Number(a['free-percent']))), a.dir);
  const mem = new SimGuestMemory(img);
  // Count what the memory source is asked for (struct pages, and page-table entries for their translation).
  let bytes = 0;
  let reads = 0;
  const counted = new Proxy(mem, {
    get(t, k) {
      if (k === 'read') return (gpa, buf, off, len) => ((bytes += len), reads++, t.read(gpa, buf, off, len));
      if (k === 'readSync') return (gpa, buf, off, len) => ((bytes += len), reads++, t.readSync(gpa, buf, off, len));
      const v = Reflect.get(t, k);
      return typeof v === 'function' ? v.bind(t) : v;
    },
  });
  const k = await linux.LinuxKernel.open(counted);
  const layout = k.pageLayout;
  const walk = k.sections();
  impl.warmUpClassifier(layout);
  const kmem = new linux.KernelMemory(counted, k.paging);
  bytes = 0;
  reads = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await impl.classifyPages(kmem, layout, k.sectionLayout, walk.sections, counted.ranges, counted.maxPfn, { dumpLevel: 31 });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const timedBytes = bytes;
  const timedReads = reads;
  // Pages examined, from the current classifier's count (the same decode for both).
  let examined = r.structPagesRead;
  if (a.child === 'before') {
    const again = await linux.classifyPages(kmem, layout, k.sectionLayout, walk.sections, counted.ranges, counted.maxPfn, { dumpLevel: 31 });
    examined = again.structPagesRead;
    if (JSON.stringify(again.counts) !== JSON.stringify(r.counts) || Buffer.compare(Buffer.from(again.excluded), Buffer.from(r.excluded)) !== 0) {
      throw new Error(`before and after differ: ${JSON.stringify(r.counts)} vs ${JSON.stringify(again.counts)}`);
    }
  }
  const intended = img.meta.intended;
  for (const c of ['free', 'cache', 'privateCache', 'user']) {
    if (r.counts[c] !== intended[c]) throw new Error(`${c}: classified ${r.counts[c]}, the generator intended ${intended[c]}`);
  }
  await mem.close();
  process.stdout.write(
    JSON.stringify({
      seconds,
      cpuSeconds,
      load1,
      examined,
      selected: r.ramPages - r.excludedPages,
      ramPages: r.ramPages,
      bytes: timedBytes,
      reads: timedReads,
      structArrayBytes: r.coveredPages * layout.size,
      counts: r.counts,
    }) + '\n',
  );
  process.exit(0);
}

// ---- parent (and the series child) -----------------------------------------------------------------
function run(args, lock) {
  const cmd = lock && !a['no-lock'] ? 'flock' : process.execPath;
  const argv = lock && !a['no-lock'] ? [LOCK, process.execPath, SELF, ...args] : [SELF, ...args];
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { maxBuffer: 64 << 20 }, (e, stdout, stderr) => {
      if (stderr.trim()) process.stderr.write(stderr);
      const last = stdout.trim().split('\n').at(-1) ?? '';
      try {
        resolve(JSON.parse(last));
      } catch {
        reject(new Error(`${args.join(' ')} failed (${e?.message ?? 'no JSON'})`));
      }
    });
  });
}
if (a.child === 'series') {
  const got = { before: [], after: [] };
  const rest = process.argv.slice(2).filter((x, i, all) => x !== '--child' && all[i - 1] !== '--child');
  for (let i = 0; i < Number(a.runs); i++) {
    for (const which of ['before', 'after']) {
      const r = await run(['--child', which, ...rest], false);
      say(`  ${which} #${i + 1}: ${r.seconds.toFixed(3)} s (cpu ${r.cpuSeconds.toFixed(3)} s), ${(r.bytes / 2 ** 20).toFixed(1)} MiB in ${r.reads} reads, load ${r.load1.toFixed(2)}`);
      got[which].push(r);
    }
  }
  process.stdout.write(JSON.stringify(got) + '\n');
  process.exit(0);
}
const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const sizes = a.sizes.split(',').map(Number);
const frees = a.free.split(',').map(Number);
const runs = Number(a.runs);
const dir = a.dir ?? path.join(ROOT, 'bench/results/tmp/classify-images');
mkdirSync(dir, { recursive: true });
await beforeModule(a['before-ref']);
const rows = [];
for (const gib of sizes) {
  for (const free of frees) {
    const common = ['--dir', dir, '--gib', String(gib), '--free-percent', String(free), '--before-ref', a['before-ref']];
    say(`${gib} GiB, ${free} % free: generating …`);
    const img = await run(['--child', 'generate', ...common], false);
    say(`  ${img.dir}: ${(img.fileBytes / GiB).toFixed(2)} GiB on disk, generated in ${img.generateSeconds.toFixed(1)} s`);
    try {
      // The timed runs of one guest under one hold of the lock (fewer rounds against other benchmarks).
      const got = await run(['--child', 'series', ...common, '--runs', String(runs)], true);
      for (const which of ['before', 'after']) {
        const rs = got[which];
        const seconds = median(rs.map((r) => r.seconds));
        const r0 = rs[0];
        rows.push({
          guestGiB: gib,
          freePercent: free,
          code: which,
          examined: r0.examined,
          selected: r0.selected,
          ramPages: r0.ramPages,
          bytesRead: median(rs.map((r) => r.bytes)),
          reads: median(rs.map((r) => r.reads)),
          structArrayBytes: r0.structArrayBytes,
          seconds,
          cpuSeconds: median(rs.map((r) => r.cpuSeconds)),
          secondsAll: rs.map((r) => Math.round(r.seconds * 1000) / 1000),
          msPerGiB: (seconds * 1000) / gib,
          usPer1000Examined: (seconds * 1e6) / (r0.examined / 1000),
          load1: rs.map((r) => Math.round(r.load1 * 100) / 100),
        });
      }
    } finally {
      if (!a['keep-images']) rmSync(img.dir, { recursive: true, force: true });
    }
  }
}

const f = (x, d = 2) => x.toFixed(d);
console.log('guest GiB | free % | code | examined pages | selected pages | struct-page bytes read | reads | classify s (median; runs) | cpu s | ms/GiB | µs/1000 examined | load1');
for (const r of rows) {
  console.log(
    `${r.guestGiB} | ${r.freePercent} | ${r.code} | ${r.examined} | ${r.selected} | ${f(r.bytesRead / 2 ** 20, 1)} MiB of ${f(r.structArrayBytes / 2 ** 20, 0)} | ${r.reads} | ${f(r.seconds, 3)} (${r.secondsAll.join(', ')}) | ${f(r.cpuSeconds, 3)} | ${f(r.msPerGiB)} | ${f(r.usPer1000Examined)} | ${r.load1.join(', ')}`,
  );
}
if (a.json) console.log(JSON.stringify({ rows, at: new Date().toISOString(), node: process.version }));
