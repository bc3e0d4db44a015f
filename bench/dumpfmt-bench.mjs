#!/usr/bin/env node
/**
 * Dump-writer throughput vs a plain copy of the same bytes on the same disk.
 *
 *   npm run build && node bench/dumpfmt-bench.mjs [IMAGE] [--size 1G] [--dir DIR] [--reps 3]
 *       [--codecs none,zlib,lzo,snappy] [--chunk-mib 64] [--inflight 2] [--workers N] [--keep]
 *
 * Without IMAGE, a realistic memory image is generated once (see makeImage) and kept in DIR.
 * For every codec: KdumpWriter.create → writePages over the whole image in 64 MiB chunks (read from
 * the image file, page cache warm, like cp) → finish() (fsync). The baseline is `cp IMAGE OUT && sync
 * OUT` (coreutils sync FILE = fsync), run right before each writer run; the ratio is per pair.
 * Reported: seconds (median of --reps), input MB/s, time ratio ours/cp (median of the pairs), CPU
 * seconds of the whole process (all threads), and output size / input size (allocated blocks).
 * Not a test; nothing is asserted.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { Bitmap, KdumpWriter, ElfWriter, prstatusNote, vmcoreinfoNote, writableCompressions } = await import(
  path.join(here, '../packages/dumpfmt/dist/index.bundle.js')
);

const PS = 4096;
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const flag = (name) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return false;
  args.splice(i, 1);
  return true;
};
const parseSize = (s) => {
  const m = /^(\d+)([KMG]?)$/i.exec(s);
  if (!m) throw new Error(`bad size ${s}`);
  return Number(m[1]) * { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2].toUpperCase()];
};
const size = parseSize(opt('size', '1G'));
const dir = opt('dir', path.join(here, 'results/tmp'));
const reps = Number(opt('reps', '3'));
const chunkMiB = Number(opt('chunk-mib', '64'));
const inflight = Number(opt('inflight', '2'));
const workersOpt = opt('workers', undefined);
const codecs = opt('codecs', writableCompressions().join(',')).split(',');
const keep = flag('keep');
const withElf = !flag('no-elf');
let image = args[0];
fs.mkdirSync(dir, { recursive: true });

/**
 * A memory image that looks like a loaded Linux guest for a full dump (no page filtering), page by page:
 *   30 % zero pages (free and never-touched memory on a freshly booted guest)
 *   30 % text-like (page cache of logs, config, source: words and newlines)
 *   20 % kernel-like structures (64-bit pointers into a few regions, small counters, zero padding)
 *   15 % incompressible (compressed files, encrypted data, random heap)
 *    5 % repeated patterns (memset buffers, fill bytes)
 */
function makeImage(file, bytes) {
  const words = 'the of and to in is that for on with as was by at from kernel page memory struct task inode dentry file buffer socket request error warning info debug'.split(' ');
  const fd = fs.openSync(file, 'w', 0o600);
  const chunk = Buffer.alloc(64 << 20);
  let seed = 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
  for (let done = 0; done < bytes; done += chunk.length) {
    const n = Math.min(chunk.length, bytes - done);
    for (let off = 0; off < n; off += PS) {
      const x = rnd();
      const page = chunk.subarray(off, off + PS);
      if (x < 0.3) page.fill(0);
      else if (x < 0.6) {
        let p = 0;
        while (p < PS) {
          const w = words[Math.floor(rnd() * words.length)] + (rnd() < 0.12 ? '\n' : ' ');
          p += page.write(w, p, 'latin1');
        }
      } else if (x < 0.8) {
        page.fill(0);
        const base = 0xffff888000000000n + BigInt(Math.floor(rnd() * 0x40000000)) * 64n;
        for (let q = 0; q < PS; q += 64) {
          page.writeBigUInt64LE(base + BigInt(Math.floor(rnd() * 4096)) * 64n, q);
          page.writeBigUInt64LE(base + BigInt(Math.floor(rnd() * 4096)) * 64n, q + 8);
          page.writeUInt32LE(Math.floor(rnd() * 16), q + 16);
          page.writeUInt32LE(Math.floor(rnd() * 1000), q + 24);
          if (rnd() < 0.5) page.writeBigUInt64LE(0xffffffff81000000n + BigInt(Math.floor(rnd() * 0x1000000)), q + 32);
        }
      } else if (x < 0.95) randomFillSync(page);
      else page.fill(Math.floor(rnd() * 256));
    }
    fs.writeSync(fd, chunk, 0, n);
  }
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

if (!image) {
  image = path.join(dir, `image-${size}.raw`);
  if (!fs.existsSync(image) || fs.statSync(image).size !== size) {
    process.stderr.write(`generating ${image} …\n`);
    makeImage(image, size);
  }
}
const imgBytes = fs.statSync(image).size - (fs.statSync(image).size % PS);
const maxPfn = imgBytes / PS;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

// warm the page cache for the image (both cp and we then read from memory)
spawnSync('cat', [image], { stdio: ['ignore', 'ignore', 'inherit'] });

function timeCp() {
  const out = path.join(dir, 'cp.out');
  fs.rmSync(out, { force: true });
  const t = process.hrtime.bigint();
  const r = spawnSync('sh', ['-c', `cp --sparse=never "${image}" "${out}" && sync "${out}"`], { stdio: 'inherit' });
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error('cp failed');
  fs.rmSync(out, { force: true });
  return s;
}

const readBuffers = Array.from({ length: inflight + 1 }, () => Buffer.alloc(chunkMiB << 20));

async function timeWriter(kind, compression, excludeZero) {
  const out = path.join(dir, `bench.${kind}`);
  fs.rmSync(out, { force: true });
  const ram = new Bitmap(maxPfn).setRange(0, maxPfn);
  const dump = ram.clone();
  const notes = [prstatusNote(0, { rip: 1n }), prstatusNote(1, { rip: 2n }), vmcoreinfoNote('OSRELEASE=6.1.0-bench\nPAGESIZE=4096\n')];
  const t = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const common = { path: out, maxPfn, ram, dump, notes };
  const w =
    kind === 'elf'
      ? await ElfWriter.create({ ...common, excludeZero })
      : await KdumpWriter.create({
          ...common,
          compression,
          excludeZero,
          utsname: { machine: 'x86_64', nodename: 'bench', release: '6.1.0-bench', version: '#1' },
          physBase: 0n,
          dumpLevel: excludeZero ? 1 : 0,
          nrCpus: 2,
          ...(workersOpt !== undefined ? { workers: Number(workersOpt) } : {}),
        });
  const fd = fs.openSync(image, 'r');
  const chunkPages = (chunkMiB << 20) / PS;
  const pending = [];
  // Read buffers are reused (a daemon reads guest memory into a few buffers the same way); a fresh
  // 64 MiB buffer per chunk would cost a page fault per 4 KiB on first touch.
  const free = readBuffers.slice();
  for (let s = 0; s < maxPfn; s += chunkPages) {
    const n = Math.min(chunkPages, maxPfn - s);
    const buf = free.pop().subarray(0, n * PS);
    fs.readSync(fd, buf, 0, buf.length, s * PS);
    pending.push(w.writePages(s, buf).then(() => free.push(buf)));
    if (pending.length >= inflight) await pending.shift();
  }
  await Promise.all(pending);
  fs.closeSync(fd);
  const sum = await w.finish();
  const secs = Number(process.hrtime.bigint() - t) / 1e9;
  const cpu = process.cpuUsage(cpu0); // whole process: main thread, compression workers, libuv I/O threads
  const outBytes = fs.statSync(out).blocks * 512; // allocated bytes (ELF zero pages are holes)
  if (!keep) fs.rmSync(out, { force: true });
  return { secs, cpu: (cpu.user + cpu.system) / 1e6, outBytes, complete: sum.complete, workers: w.workers ?? 0 };
}

function timeDd() {
  const out = path.join(dir, 'dd.out');
  fs.rmSync(out, { force: true });
  const t = process.hrtime.bigint();
  const r = spawnSync('sh', ['-c', `dd if="${image}" of="${out}" bs=64M conv=fdatasync status=none`], { stdio: 'inherit' });
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error('dd failed');
  fs.rmSync(out, { force: true });
  return s;
}

const load0 = os.loadavg()[0];
const configs = [];
for (const c of codecs) {
  if (c === 'none') configs.push(['kdump', 'none', false]);
  configs.push(['kdump', c, true]);
}
if (withElf) configs.push(['elf', 'none', true]);

// Each writer run is paired with a cp run right before it, and the ratio is taken per pair: on a
// shared machine the disk and CPU drift, and adjacent runs see the same conditions.
const cpTimes = [];
const rows = [];
const dds = [];
for (let i = 0; i < reps; i++) dds.push(timeDd());
for (const [kind, c, ez] of configs) {
  const ts = [];
  const cpus = [];
  const ratios = [];
  let last;
  for (let i = 0; i < reps; i++) {
    const cpT = timeCp();
    cpTimes.push(cpT);
    last = await timeWriter(kind, c, ez);
    ts.push(last.secs);
    cpus.push(last.cpu);
    ratios.push(last.secs / cpT);
  }
  const wk = kind === 'kdump' && c !== 'none' ? `, ${last.workers} worker${last.workers === 1 ? '' : 's'}` : '';
  rows.push({ what: `${kind} ${c}${ez ? ' +zero-elision' : ''}${wk}`, secs: median(ts), cpu: median(cpus), ratio: median(ratios), outBytes: last.outBytes });
}
const cpMed = median(cpTimes);
const MB = 1e6;
const cpu = os.cpus()[0]?.model ?? '?';
console.log(`image ${image}: ${(imgBytes / 2 ** 30).toFixed(2)} GiB; ${os.cpus().length} CPUs (${cpu}); node ${process.version}; chunk ${chunkMiB} MiB, ${inflight} in flight; median of ${reps}; load average ${load0.toFixed(2)} → ${os.loadavg()[0].toFixed(2)}`);
console.log(`cp baseline: median ${cpMed.toFixed(2)} s over ${cpTimes.length} runs (${cpTimes.map((x) => x.toFixed(2)).join(', ')})`);
console.log('');
console.log('| writer | time (s) | input MB/s | time / cp | CPU (s) | output / input |');
console.log('|---|---:|---:|---:|---:|---:|');
console.log(`| cp + sync (baseline) | ${cpMed.toFixed(2)} | ${(imgBytes / MB / cpMed).toFixed(0)} | 1.00 |  | 1.000 |`);
const ddMed = median(dds);
console.log(`| dd bs=64M conv=fdatasync | ${ddMed.toFixed(2)} | ${(imgBytes / MB / ddMed).toFixed(0)} | ${(ddMed / cpMed).toFixed(2)} |  | 1.000 |`);
for (const r of rows) {
  console.log(`| ${r.what} | ${r.secs.toFixed(2)} | ${(imgBytes / MB / r.secs).toFixed(0)} | ${r.ratio.toFixed(2)} | ${r.cpu.toFixed(2)} | ${(r.outBytes / imgBytes).toFixed(3)} |`);
}
