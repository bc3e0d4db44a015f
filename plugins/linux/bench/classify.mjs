#!/usr/bin/env node
// Classification speed: synthetic guests of several sizes and the real test images.
//
//   npm run build && node plugins/linux/bench/classify.mjs [--gib 4,16,64] [--images small4,mixed5,big4,big5]
//
// Each measurement is a first run ("cold": the data's first pass, struct pages read from the file /
// page cache) and the best of 3 further runs ("warm"). Speed is guest RAM classified per second.
// The decode-only rows run first and warm the JIT, as the plugin's warm-up does after start-up;
// images run before the big synthetic guests so their garbage collection does not land in them.
import { parseArgs } from 'node:util';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LinuxKernel, buildSyntheticKernel, Classifier } from '../dist/index.js';
import { openRawImage } from '../../../packages/image/dist/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    gib: { type: 'string', default: '4,16,64' },
    images: { type: 'string', default: 'small4,mixed5,big4,big5' },
    runs: { type: 'string', default: '3' },
  },
});
const GiB = 2 ** 30;
const runs = Number(values.runs);

function row(what, pages, ms) {
  const gibps = (pages * 4096) / GiB / (ms / 1000);
  return `| ${what} | ${(pages / 1e6).toFixed(2)} M | ${ms.toFixed(1)} ms | ${(pages / ms / 1000).toFixed(1)} M pages/s | ${gibps.toFixed(1)} GiB/s |`;
}

async function measure(kernel, what, level) {
  const out = [];
  let t = performance.now();
  let r = await kernel.classify({ dumpLevel: level });
  out.push(row(`${what}, -d ${level}, cold`, r.ramPages, performance.now() - t));
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    t = performance.now();
    r = await kernel.classify({ dumpLevel: level });
    best = Math.min(best, performance.now() - t);
  }
  out.push(row(`${what}, -d ${level}, warm (best of ${runs})`, r.ramPages, best));
  return out;
}

/** A synthetic guest with a realistic mix: free blocks, page cache, anon + THP, slab, reserved. */
function syntheticGuest(gib) {
  const k = buildSyntheticKernel({ ramBytes: gib * GiB });
  const pages = (gib * GiB) / 4096;
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const file = { flags: k.flags('lru'), mapping: 0xffff888000100000n, refcount: 1 };
  const filePriv = { flags: k.flags('lru', 'private'), mapping: 0xffff888000100000n, refcount: 1 };
  const anon = { flags: k.flags('lru', 'swapbacked'), mapping: 0xffff888000200001n, refcount: 1, mapcount: 0 };
  const slab = { flags: k.flags('slab'), refcount: 1 };
  // Leave the first 64 MiB as kernel (reserved), then 2 MiB regions of one kind each.
  for (let p = 16384; p + 512 <= pages; p += 512) {
    const x = rnd();
    if (x < 0.3) for (let q = p; q < p + 512; q += 128) k.addFreeBlock(q, 7);
    else if (x < 0.45) k.fillPages(p, p + 512, file);
    else if (x < 0.5) k.fillPages(p, p + 512, filePriv);
    else if (x < 0.65) k.fillPages(p, p + 512, anon);
    else if (x < 0.75) k.addCompound(p, 9, anon);
    else if (x < 0.8) k.fillPages(p, p + 512, slab);
  }
  return k;
}

const lines = ['| what | struct pages | time | pages/s | guest RAM/s |', '|---|---|---|---|---|'];

// Pure decode: the classifier on an in-memory struct page array (no reads, no translation).
{
  const k = syntheticGuest(4);
  const lk = await LinuxKernel.open(k.mem);
  const n = 1 << 20;
  const L = lk.pageLayout;
  const buf = new Uint8Array(n * L.size);
  const sec = lk.sections().sections;
  for (let p = 0; p < n; p += 32768) {
    const s = sec.find((x) => p >= x.startPfn && p < x.endPfn);
    await lk.kmem.read(s.base + BigInt(p * L.size), buf, p * L.size, 32768 * L.size);
  }
  const words = new Int32Array(buf.buffer);
  for (const level of [31, 16]) {
    let best = Infinity;
    for (let i = 0; i < runs + 1; i++) {
      const c = new Classifier(L, n, level, 'buddy');
      const t = performance.now();
      c.classifyBlock(words, buf, 0, n, 0, n);
      const ms = performance.now() - t;
      if (i === 0) lines.push(row(`decode only (1 M struct pages in memory), -d ${level}, cold`, n, ms));
      else best = Math.min(best, ms);
    }
    lines.push(row(`decode only, -d ${level}, warm`, n, best));
  }
}

const cache = path.join(process.env.VICOVER_CACHE ?? path.join(process.env.HOME ?? '/root', '.cache/vicover'), 'images');
for (const name of values.images.split(',').filter(Boolean)) {
  const dirs = fs.existsSync(cache) ? fs.readdirSync(cache).filter((d) => d.startsWith(`${name}-`) && fs.existsSync(path.join(cache, d, 'meta.json'))) : [];
  if (dirs.length === 0) {
    process.stderr.write(`image ${name}: not built, skipped\n`);
    continue;
  }
  const dir = path.join(cache, dirs[0]);
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8'));
  const src = openRawImage(path.join(dir, 'ram.img'), { layout: meta.ram.layout });
  const t = performance.now();
  const lk = await LinuxKernel.open(src);
  const openMs = performance.now() - t;
  const tr = performance.now();
  await lk.triage(20);
  const triageMs = performance.now() - tr;
  process.stderr.write(`${name}: open (VMCOREINFO ${lk.found.origin} at 0x${(lk.found.gpa ?? 0).toString(16)}) ${openMs.toFixed(0)} ms, printk ${triageMs.toFixed(0)} ms\n`);
  for (const level of [31, 16]) lines.push(...(await measure(lk, `${name} (${meta.spec.memMiB} MiB, ${meta.pagingLevels}-level, raw RAM)`, level)));
  await src.close();
}

for (const gib of values.gib.split(',').filter(Boolean).map(Number)) {
  const t = performance.now();
  const k = syntheticGuest(gib);
  process.stderr.write(`synthetic ${gib} GiB built in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  const lk = await LinuxKernel.open(k.mem);
  for (const level of [31, 16]) lines.push(...(await measure(lk, `synthetic ${gib} GiB`, level)));
  await k.mem.close();
}

console.log(lines.join('\n'));
void here;
