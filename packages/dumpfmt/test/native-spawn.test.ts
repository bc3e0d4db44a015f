/**
 * Starting the copy helper with posix_spawn (native/spawn.c, src/native-spawn.ts): the child gets
 * pipes on 0/1/2, exactly the two descriptors asked for on 3/4 and nothing else of this process; its
 * exit (code or signal) is reported; a start that cannot happen throws; and the copier works the same
 * whichever way its helper was started.
 */
import { chmodSync, closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NativeCopier, nativeCopyHelper } from '../src/native-copy.js';
import { nativeSpawn, spawnPiped, type HelperProcess } from '../src/native-spawn.js';
import { tempDir } from './helpers/tmp.js';

const dir = tempDir();
const native = nativeSpawn();
const required = process.env.VICOVER_REQUIRE_TOOLS === '1';

function collect(child: HelperProcess): Promise<{ out: string; err: string; code: number | null; signal: string | null }> {
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => child.on('exit', (code: number | null, signal: string | null) => resolve({ out, err, code, signal })));
}

function script(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o700);
  return p;
}

it('the addon is built (npm run build) where the tools are required', () => {
  if (required) expect(native).not.toBeNull();
});

describe.skipIf(!native)('spawnPiped', () => {
  it('gives the child pipes on 0–2, the two descriptors asked for on 3 and 4, and none of this process’s others', async () => {
    const a = join(dir, 'three.bin');
    const b = join(dir, 'four.bin');
    writeFileSync(a, 'in');
    writeFileSync(b, '');
    const fa = openSync(a, 'r');
    const fb = openSync(b, 'r+');
    // Lists the shell's descriptors (ls, a child, reads the shell's /proc/PID/fd: the shell itself
    // would see its own directory handle there); reads a line from stdin, echoes it to stdout and stderr.
    const s = script('fds.sh', `ls -l /proc/$$/fd | sed -n 's/.* \\([0-9]*\\) -> \\(.*\\)/\\1 \\2/p'; read line; echo "got $line"; echo "err $line" >&2; exit 3`);
    let child: HelperProcess;
    try {
      child = spawnPiped(native!, s, fa, fb);
    } finally {
      closeSync(fa); // the child holds its own copies
      closeSync(fb);
    }
    const done = collect(child);
    child.stdin.end('hello\n');
    const r = await done;
    expect(r.code).toBe(3);
    expect(r.signal).toBeNull();
    expect(child.exitCode).toBe(3);
    expect(r.err).toBe('err hello\n');
    const lines = r.out.trim().split('\n');
    expect(lines.pop()).toBe('got hello');
    const fds = new Map(lines.map((l) => [Number(l.split(' ')[0]), l.slice(l.indexOf(' ') + 1)]));
    expect(fds.get(0)).toMatch(/^pipe:/);
    expect(fds.get(1)).toMatch(/^pipe:/);
    expect(fds.get(2)).toMatch(/^pipe:/);
    expect(fds.get(3)).toBe(a);
    expect(fds.get(4)).toBe(b);
    // Anything else is the shell's own handle on its script (dash keeps it at 10 or above).
    const others = [...fds].filter(([fd]) => fd > 4);
    for (const [fd, target] of others) expect(`${fd} ${target}`).toBe(`${fd} ${s}`);
  });

  it('with -1 the child has no descriptor 3 or 4; a signal is reported as the signal', async () => {
    const s = script('nofds.sh', 'ls /proc/$$/fd/3 /proc/$$/fd/4 >/dev/null 2>&1 && echo has || echo none; kill -TERM $$');
    const child = spawnPiped(native!, s, -1, -1);
    child.stdin.end();
    const r = await collect(child);
    expect(r.out).toBe('none\n');
    expect(r.code).toBeNull();
    expect(r.signal).toBe('SIGTERM');
    expect(child.signalCode).toBe('SIGTERM');
  });

  it('throws at once when the program cannot be started', () => {
    expect(() => spawnPiped(native!, join(dir, 'no-such-program'), -1, -1)).toThrow(/ENOENT|No such file/);
    const notExec = join(dir, 'not-executable');
    writeFileSync(notExec, 'x');
    expect(() => spawnPiped(native!, notExec, -1, -1)).toThrow(/EACCES|Permission denied/);
  });
});

describe.skipIf(!native || !nativeCopyHelper())('the copier, whichever way its helper starts', () => {
  it('posix_spawn when the addon is built, child_process with VICOVER_NATIVE_SPAWN=0; both copy the same bytes', async () => {
    const input = join(dir, 'src.bin');
    const data = Buffer.alloc(3 * 4096);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    writeFileSync(input, data);
    const results: string[] = [];
    for (const mode of ['posix_spawn', 'child_process'] as const) {
      const out = join(dir, `copy-${mode}.bin`);
      writeFileSync(out, '');
      const fd = openSync(out, 'r+');
      if (mode === 'child_process') process.env.VICOVER_NATIVE_SPAWN = '0';
      let c: NativeCopier;
      try {
        c = NativeCopier.open({ outFd: fd, outPath: out, inputPath: input })!;
      } finally {
        delete process.env.VICOVER_NATIVE_SPAWN;
      }
      expect(c.startedWith).toBe(mode);
      expect(await c.copy(4096, 100, 2 * 4096)).toBe(2 * 4096);
      await c.datasync();
      await c.close();
      closeSync(fd);
      results.push(readFileSync(out).toString('hex'));
    }
    expect(results[0]).toBe(Buffer.concat([Buffer.alloc(100), data.subarray(4096)]).toString('hex'));
    expect(results[1]).toBe(results[0]);
  });
});
