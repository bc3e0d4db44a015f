#!/usr/bin/env node
// `vicover dump` against `makedumpfile` on the same crashed guest, plus a plain `cp` of the memory image
// as the physical ceiling. See docs/performance.md "## Selective dump".
//
//   npm run build && npm run bench:dump -- [--json] [--images big4,big5] [--reps 3] [--levels 16,31]
//        [--codecs none,zlib] [--inputs elf,ram] [--dir DIR] [--keep] [--settle 2]
//
// For every image set (test/guest/images.mjs; built on first use, ~2–3 min each for the big ones):
//   * inputs: makedumpfile 1.7.2 cannot read QEMU 7.2's ELF as written, so it reads vmcore.fixed.elf
//     (docs/guests.md). `vicover dump` reads the same vmcore.fixed.elf ("ours(elf)": same input,
//     same bytes) and also the raw RAM file ram.img ("ours(ram)": what the daemon reads).
//   * each level × codec: makedumpfile -d L [-c] IN OUT, vicover dump IN -o OUT -d L [--compress zlib];
//     and `cp ram.img OUT` once per round. All outputs go to DIR, on the same disk as the images.
//   * each process is timed whole, from spawn to exit (Node's start-up included), by /usr/bin/time,
//     which also gives its peak RSS (%M, all threads) and CPU time. "+sync" adds `sync OUT` (fsync of
//     the output) after the process: vicover fsyncs its output before it exits, makedumpfile and cp do
//     not, so the "+sync" columns compare like with like (the data on disk).
//   * rounds: --reps rounds after one untimed warm-up round; within a round the order of the runs is
//     rotated; before every timed run, `sync` and --settle seconds idle (default 2); the page cache is
//     warmed (the inputs read once) before each image; medians are reported.
//   * load: the 1-minute load average is recorded before every run (the machine is shared).
// stdout: tables (with --json, the last line is one JSON object); stderr: progress. Nothing asserted.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { ensureImage, readMeta } from '../test/guest/images.mjs';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const BIN = path.join(ROOT, 'packages/cli/bin/vicover.js');
const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    images: { type: 'string', default: 'big4,big5' },
    reps: { type: 'string', default: '3' },
    levels: { type: 'string', default: '16,31' },
    codecs: { type: 'string', default: 'none,zlib' },
    inputs: { type: 'string', default: 'elf,ram' },
    dir: { type: 'string', default: path.join(process.env.VICOVER_CACHE || path.join(os.homedir(), '.cache/vicover'), 'bench-dump') },
    keep: { type: 'boolean', default: false },
    settle: { type: 'string', default: '2' },
  },
});
const images = args.images.split(',').filter(Boolean);
const reps = Number(args.reps);
const levels = args.levels.split(',').map(Number);
const codecs = args.codecs.split(',');
const inputs = args.inputs.split(',');
const settleSeconds = Number(args.settle);
const say = (s) => process.stderr.write(`bench:dump: ${s}\n`);

if (!fs.existsSync(path.join(ROOT, 'packages/cli/dist/bin.js'))) throw new Error('build first: npm run build');
for (const t of ['makedumpfile', 'cp', 'sync', '/usr/bin/time']) {
  if (spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0) throw new Error(`${t} is not installed`);
}
fs.mkdirSync(args.dir, { recursive: true });

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const r2 = (x) => Math.round(x * 100) / 100;

/** Run a command under /usr/bin/time; stdout kept (our --json), stderr dropped. */
function timed(cmd, argv) {
  const tf = path.join(args.dir, '.time');
  const load = os.loadavg()[0];
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%e %U %S %M', '-o', tf, cmd, ...argv], { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'pipe'] });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}: ${r.stderr.slice(-2000)}`);
  const [, user, sys, maxrssKb] = fs.readFileSync(tf, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  return { wall, cpu: user + sys, rssMiB: maxrssKb / 1024, load, stdout: r.stdout };
}

function syncFile(file) {
  const t0 = performance.now();
  const r = spawnSync('sync', [file]);
  if (r.status !== 0) throw new Error(`sync ${file} failed`);
  return (performance.now() - t0) / 1000;
}

/**
 * Start each image from the same page-cache state: write back and drop the caches (root only), so no
 * run pays for reclaiming a page cache that earlier runs filled (on this VM that alone made a 3.4 GB
 * `cp`+sync take 16 s instead of 3.4 s).
 */
function dropCaches() {
  spawnSync('sync');
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

/**
 * Before each timed run: write back whatever is dirty and let the machine be idle for --settle seconds,
 * so that no run starts in the wake of the previous one (its deleted output, a CPU-bound zlib run of
 * half a minute). Without it (2026-11-29), our `-d 31` raw runs, which came right after `-d 16` zlib
 * runs, took 0.58–0.66 s in the full benchmark against 0.52–0.56 s with only `-d 31` raw jobs.
 */
function settle() {
  spawnSync('sync');
  if (settleSeconds > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, settleSeconds * 1000);
}

function warm(file) {
  const t0 = performance.now();
  spawnSync('sh', ['-c', `cat "${file}" > /dev/null`]);
  return (performance.now() - t0) / 1000;
}

const results = [];
for (const name of images) {
  const dir = await ensureImage(name);
  const meta = await readMeta(dir);
  const ram = path.join(dir, 'ram.img');
  const elf = path.join(dir, 'vmcore.fixed.elf');
  const dropped = dropCaches();
  say(`${name}: ${dir} (${(meta.ram.size / 2 ** 30).toFixed(2)} GiB RAM); ${dropped ? 'page cache dropped; ' : ''}warming the page cache`);
  say(`${name}: read ram.img in ${warm(ram).toFixed(1)} s, vmcore.fixed.elf in ${warm(elf).toFixed(1)} s`);

  /** One job: what, how, and where its output goes. */
  const jobs = [];
  for (const level of levels) {
    for (const codec of codecs) {
      const tag = `-d ${level} ${codec === 'none' ? 'raw' : codec}`;
      jobs.push({ tool: 'makedumpfile', input: 'elf', level, codec, tag, cmd: 'makedumpfile', argv: (o) => ['-d', String(level), ...(codec === 'zlib' ? ['-c'] : []), elf, o] });
      for (const input of inputs) {
        jobs.push({
          tool: 'vicover',
          input,
          level,
          codec,
          tag,
          cmd: process.execPath,
          argv: (o) => [BIN, 'dump', input === 'elf' ? elf : ram, '-o', o, '-d', String(level), '--compress', codec, '--json', '--no-progress'],
        });
      }
    }
  }
  jobs.push({ tool: 'cp', input: 'ram', level: null, codec: 'none', tag: 'cp ram.img', cmd: 'cp', argv: (o) => [ram, o] });

  const samples = new Map(); // key → [{…}]
  for (let round = 0; round <= reps; round++) {
    const order = jobs.map((_, i) => jobs[(i + round) % jobs.length]);
    for (const j of order) {
      if (round === 0 && j.tool === 'cp') continue;
      const out = path.join(args.dir, `${name}-${j.tool}-${j.input}-${j.level}-${j.codec}.out`);
      fs.rmSync(out, { force: true });
      if (round > 0) settle(); // the warm-up round is not timed
      const t = timed(j.cmd, j.argv(out));
      const syncS = syncFile(out);
      const bytes = fs.statSync(out).size;
      const allocated = fs.statSync(out).blocks * 512;
      let json;
      if (j.tool === 'vicover') json = JSON.parse(t.stdout);
      if (!args.keep || round < reps) fs.rmSync(out, { force: true });
      const key = `${j.tool}|${j.input}|${j.level}|${j.codec}`;
      if (round === 0) {
        say(`${name} warm-up ${j.tool}(${j.input}) ${j.tag}: ${t.wall.toFixed(2)} s`);
        continue;
      }
      const s = {
        wall: t.wall,
        durable: t.wall + syncS,
        cpu: t.cpu,
        rssMiB: t.rssMiB,
        load: t.load,
        bytes,
        allocated,
        ...(json
          ? {
              inner: json.seconds,
              dumped: json.pages.dumped,
              classifyMs: json.filter?.linux?.classifyMs,
              classifyGiBps: json.filter?.linux?.gibPerSecond,
              ramPages: json.filter?.linux?.ramPages,
            }
          : {}),
      };
      if (!samples.has(key)) samples.set(key, []);
      samples.get(key).push(s);
      say(`${name} round ${round}/${reps} ${j.tool}(${j.input}) ${j.tag}: ${t.wall.toFixed(2)} s (+sync ${syncS.toFixed(2)}), ${t.rssMiB.toFixed(0)} MiB, load ${t.load.toFixed(1)}`);
    }
  }

  const agg = (key) => {
    const xs = samples.get(key) ?? [];
    const m = (f) => (xs.length && xs[0][f] !== undefined ? r2(median(xs.map((x) => x[f]))) : undefined);
    return {
      runs: xs.length,
      seconds: m('wall'),
      secondsAll: xs.map((x) => r2(x.wall)),
      durableSeconds: m('durable'),
      cpuSeconds: m('cpu'),
      peakRssMiB: xs.length ? r2(Math.max(...xs.map((x) => x.rssMiB))) : undefined,
      outputBytes: xs[0]?.bytes,
      outputAllocatedBytes: xs[0]?.allocated,
      innerSeconds: m('inner'),
      classifyMs: m('classifyMs'),
      classifyGiBps: m('classifyGiBps'),
      loadMedian: m('load'),
      loadMax: xs.length ? r2(Math.max(...xs.map((x) => x.load))) : undefined,
    };
  };
  const cp = agg('cp|ram|null|none');
  const rows = [];
  for (const level of levels) {
    for (const codec of codecs) {
      const md = agg(`makedumpfile|elf|${level}|${codec}`);
      const row = { level, codec, makedumpfile: md, ours: {} };
      for (const input of inputs) {
        const o = agg(`vicover|${input}|${level}|${codec}`);
        o.vsMakedumpfile = r2(o.seconds / md.seconds);
        o.vsMakedumpfileDurable = r2(o.durableSeconds / md.durableSeconds);
        o.vsCp = r2(o.seconds / cp.seconds);
        o.vsCpDurable = r2(o.durableSeconds / cp.durableSeconds);
        row.ours[input] = o;
      }
      rows.push(row);
    }
  }
  results.push({ image: name, ramBytes: meta.ram.size, ramAllocatedBytes: meta.ram.allocatedBytes, layout: meta.ram.layout, pagingLevels: meta.pagingLevels, cp, rows });
}

fs.rmSync(path.join(args.dir, '.time'), { force: true });

const machine = {
  date: new Date().toISOString(),
  host: os.hostname(),
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model,
  memGiB: r2(os.totalmem() / 2 ** 30),
  node: process.version,
  makedumpfile: spawnSync('makedumpfile', ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0],
  disk: spawnSync('df', ['--output=source,fstype', args.dir], { encoding: 'utf8' }).stdout.split('\n')[1]?.trim(),
  reps,
  settleSeconds,
  nativeCopyHelper: fs.existsSync(path.join(ROOT, 'packages/dumpfmt/native/build/vicover-copy')) && process.env.VICOVER_NATIVE_COPY !== '0',
  nativePacker: fs.existsSync(path.join(ROOT, 'packages/dumpfmt/native/build/vicover-pack.node')) && process.env.VICOVER_NATIVE_PACK !== '0',
  nativeClassifier: fs.existsSync(path.join(ROOT, 'plugins/linux/native/build/vicover-classify.node')) && process.env.VICOVER_NATIVE_CLASSIFY !== '0',
  // Node parses this file of CA certificates at every start (~40 ms here); vicover runs inherit it, makedumpfile does not care.
  nodeExtraCaCerts: Boolean(process.env.NODE_EXTRA_CA_CERTS),
};

const f = (x) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(2));
const lines = [];
for (const r of results) {
  lines.push(`\n### ${r.image} (${(r.ramBytes / 2 ** 30).toFixed(2)} GiB, ${r.pagingLevels}-level, ${r.layout}; cp ram.img ${f(r.cp.seconds)} s, +sync ${f(r.cp.durableSeconds)} s)\n`);
  const inCols = inputs.map((i) => `ours(${i})`);
  lines.push(`| level | makedumpfile s (+sync) | ${inCols.map((c) => `${c} s (+sync)`).join(' | ')} | ${inCols.map((c) => `${c}/md (+sync)`).join(' | ')} | ${inCols.map((c) => `${c}/cp (+sync)`).join(' | ')} | peak RSS md / ours MiB | classify GiB/s |`);
  lines.push(`|${'---|'.repeat(3 + 3 * inputs.length)}`);
  for (const row of r.rows) {
    const md = row.makedumpfile;
    const os_ = inputs.map((i) => row.ours[i]);
    lines.push(
      `| -d ${row.level} ${row.codec === 'none' ? 'raw' : row.codec} | ${f(md.seconds)} (${f(md.durableSeconds)}) | ${os_.map((o) => `${f(o.seconds)} (${f(o.durableSeconds)})`).join(' | ')} | ${os_
        .map((o) => `${f(o.vsMakedumpfile)} (${f(o.vsMakedumpfileDurable)})`)
        .join(' | ')} | ${os_.map((o) => `${f(o.vsCp)} (${f(o.vsCpDurable)})`).join(' | ')} | ${f(md.peakRssMiB)} / ${os_.map((o) => f(o.peakRssMiB)).join(', ')} | ${os_.map((o) => f(o.classifyGiBps)).join(', ')} |`,
    );
  }
  const loads = r.rows.flatMap((row) => [row.makedumpfile.loadMax, ...inputs.map((i) => row.ours[i].loadMax)]).filter((x) => x !== undefined);
  lines.push(`\nload average (1 min) during the runs: up to ${f(Math.max(...loads))}`);
}
process.stdout.write(`dump benchmark — ${machine.date}, ${machine.cpus} × ${machine.cpuModel}, ${machine.memGiB} GiB, ${machine.node}, ${machine.makedumpfile}, output on ${machine.disk}, median of ${reps}, native copy helper ${machine.nativeCopyHelper ? 'on' : 'off'}, native packer ${machine.nativePacker ? 'on' : 'off'}, native classifier ${machine.nativeClassifier ? 'on' : 'off'}\n${lines.join('\n')}\n`);
if (args.json) process.stdout.write(JSON.stringify({ machine, results }) + '\n');
