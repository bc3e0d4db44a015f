#!/usr/bin/env node
// What a child_process.spawn costs the parent afterwards (docs/performance.md, "Start-up: one file per
// package"): libuv starts children with fork(), so every page the parent writes after the spawn takes a
// write-protect fault. Writes a buffer once, optionally spawns /bin/true, then writes the buffer again
// and reports the time and minor faults of the second write. Nothing asserted.
//
//   node bench/spawn-cow.mjs [--mib 64] [--runs 3]
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({ options: { mib: { type: 'string', default: '64' }, runs: { type: 'string', default: '3' } } });
const bytes = Number(args.mib) << 20;

async function once(withSpawn) {
  const buf = Buffer.alloc(bytes, 1);
  const f0 = process.resourceUsage().minorPageFault;
  const t0 = performance.now();
  if (withSpawn) {
    const c = spawn('/bin/true', [], { stdio: 'ignore' });
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
  for (const withSpawn of [false, true]) {
    const x = await once(withSpawn);
    console.log(
      `${withSpawn ? 'spawn   ' : 'no spawn'}  spawn ${x.spawnMs.toFixed(1)} ms  rewrite of ${args.mib} MiB ${x.rewriteMs.toFixed(1)} ms, ${x.rewriteFaults} faults`,
    );
  }
}
