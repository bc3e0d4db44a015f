import { mkdtempSync, appendFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isVcvError } from '@vicover/errors';
import { editKernelCmdline, followFile, run, shortText } from '../src/index.js';

const dir = mkdtempSync(path.join(tmpdir(), 'vcv-hostutil-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('editKernelCmdline', () => {
  it('removes by key or exact key=value, adds (a key=value replaces its key), or replaces all', () => {
    expect(editKernelCmdline('a=1 b c=3', { remove: ['b', 'c'], add: ['d=4', 'a=2'] })).toBe('d=4 a=2');
    expect(editKernelCmdline('a=1 b=2 vicover.load=anon:64 c', { remove: ['vicover.load', 'b=2'], add: ['d=4'] })).toBe('a=1 c d=4');
    expect(editKernelCmdline('x', { set: 'y z', add: ['w'] })).toBe('y z w');
    expect(editKernelCmdline('a', { set: 'x y', remove: ['x'] })).toBe('y');
    expect(editKernelCmdline('keep  me', undefined)).toBe('keep  me');
  });
});

describe('run', () => {
  it('returns the output of a command', async () => {
    expect((await run('sh', ['-c', 'echo out; echo err >&2'])).stdout).toBe('out\n');
  });
  it('names a missing command, a failure with its stderr, and a time-out', async () => {
    const codes: string[] = [];
    for (const [cmd, args, o] of [
      ['vcv-no-such-command', [], {}],
      ['sh', ['-c', 'echo "disk  on fire" >&2; exit 3'], {}],
      ['sleep', ['5'], { timeoutMs: 200 }],
    ] as const) {
      const e = await run(cmd, args, o).then(() => null, (x: unknown) => x);
      expect(isVcvError(e)).toBe(true);
      codes.push((e as { code: string }).code);
      if (cmd === 'sh') expect((e as Error).message).toContain('exit 3): disk on fire');
    }
    expect(codes).toEqual(['VCV_ERR_COMMAND_NOT_FOUND', 'VCV_ERR_COMMAND_FAILED', 'VCV_ERR_TIMEOUT']);
  });
  it('is cancelled by its signal', async () => {
    const ac = new AbortController();
    const p = run('sleep', ['5'], { signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'VCV_ERR_ABORTED' });
  });
  it('shortText folds white space and cuts', () => {
    expect(shortText(' a \n b ', 10)).toBe('a b');
    expect(shortText('x'.repeat(20), 5)).toBe('xxxxx…');
  });
});

describe('followFile', () => {
  it('delivers whole lines as the file grows, from a file that appears later', async () => {
    const f = path.join(dir, 'console.log');
    const lines: string[] = [];
    const stop = followFile(f, (l) => lines.push(l), { intervalMs: 20, fromStart: true });
    await new Promise((r) => setTimeout(r, 60));
    writeFileSync(f, 'boot\r\nhalf');
    await new Promise((r) => setTimeout(r, 80));
    appendFileSync(f, ' line\nready\n');
    for (let i = 0; i < 50 && lines.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    stop();
    expect(lines).toEqual(['boot', 'half line', 'ready']);
  });
});
