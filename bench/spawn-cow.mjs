#!/usr/bin/env node
// What a child_process.spawn costs the parent afterwards (docs/performance.md, "Start-up: one file per
// package"): libuv starts children with fork(), so every page the parent writes after the spawn takes a
// write-protect fault. Writes a buffer once, then spawns /bin/true (not at all; with child_process;
// with posix_spawn through @vicover/dumpfmt's addon, native/spawn.c, when built), then writes the
// buffer again and reports the time of the spawn and the time and minor faults of the second write.
// Nothing asserted.
//
//   npm run build && node bench/spawn-cow.mjs [--mib 64] [--runs 3]
import { spawn } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.join(path.dirname(new URL(import.meta.url).pathname), '..');
const { nativeSpawn, spawnPiped } = await import(pathToFileURL(path.join(ROOT, 'packages/dumpfmt/dist/native-spawn.js')).href);
const native = nativeSpawn();

const { values: args } = parseArgs({ options: { mib: { type: 'string', default: '64' }, runs: { type: 'string', default: '3' } } });
const bytes = Number(args.mib) << 20;

async function once(how) {
  const buf = Buffer.alloc(bytes, 1);
  const f0 = process.resourceUsage().minorPageFault;
  const t0 = performance.now();
  if (how === 'child_process') {
    const c = spawn('/bin/true', [], { stdio: 'ignore' });
    await new Promise((resolve) => c.on('exit', resolve));
  } else if (how === 'posix_spawn') {
    const c = spawnPiped(native, '/bin/true', -1, -1);
    c.stdin.end();
    await new Promise((resolve) => c.on('exit', resolve));
  }
  const t1 = performance.now();
  const f1 = process.resourceUsage().minorPageFault;
  for (let i = 0; i < buf.length; i += 4096) buf[i] = 2;
  const t2 = performance.now();
  const f2 = process.resourceUsage().minorPageFault;
  return { spawnMs: t1 - t0, spawnFaults: f1 - f0, rewriteMs: t2 - t1, rewriteFaults: f2 - f1 };
}

for (let r = 0; r < Number(args.runs); r++) {
  for (const how of ['none', 'child_process', ...(native ? ['posix_spawn'] : [])]) {
    const x = await once(how);
    console.log(`${how.padEnd(13)}  spawn ${x.spawnMs.toFixed(1)} ms  rewrite of ${args.mib} MiB ${x.rewriteMs.toFixed(1)} ms, ${x.rewriteFaults} faults`);
  }
}
if (!native) console.log('(posix_spawn: the addon packages/dumpfmt/native/build/vicover-spawn.node is not built)');
