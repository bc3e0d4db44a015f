/**
 * The native copy helper (native/copy.c): copyPages() must produce byte-for-byte the file that
 * writePages() produces from the same image, holes of the input included (they stay holes and read
 * back as zeros), and errors must come back as coded errors.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { isVcvError } from '@vicover/errors';
import { KdumpWriter, KdumpReader } from '../src/index.js';
import { NativeCopier, nativeCopyHelper } from '../src/native-copy.js';
import { pageSets, testNotes } from './helpers/dumps.js';
import { makeImage, PS } from './helpers/pages.js';
import { tempDir } from './helpers/tmp.js';

const dir = tempDir();
const MAXPFN = 3000;
const image = makeImage(MAXPFN, 33);
const { ram, dump } = pageSets(MAXPFN, 9, { excludeFraction: 0.4 });
// The input file is the image at an offset that is not page aligned (like QEMU's ELF PT_LOADs),
// with holes punched over some page runs (the image reads zeros there).
const BASE = 0x14e8;
const HOLES: [number, number][] = [
  [100, 164],
  [1200, 1456],
  [MAXPFN - 40, MAXPFN], // a hole up to the end of the file: the output must still reach it
];
const input = join(dir, 'input.img');
const expected = Buffer.from(image);

beforeAll(() => {
  const fd = openSync(input, 'w');
  writeSync(fd, Buffer.alloc(BASE, 0xee), 0, BASE, 0);
  writeSync(fd, image, 0, image.length, BASE);
  closeSync(fd);
  for (const [a, b] of HOLES) {
    execFileSync('fallocate', ['--punch-hole', '--offset', String(BASE + a * PS), '--length', String((b - a) * PS), input]);
    expected.fill(0, a * PS, b * PS);
  }
  // The last hole reaches the end: cut the file there (reads past EOF are zeros too).
  execFileSync('truncate', ['--size', String(BASE + (MAXPFN - 40) * PS), input]);
});

function create(path: string, extra: Partial<Parameters<typeof KdumpWriter.create>[0]> = {}) {
  return KdumpWriter.create({
    path,
    maxPfn: MAXPFN,
    ram,
    dump,
    compression: 'none',
    excludeZero: false,
    notes: testNotes(),
    utsname: { machine: 'x86_64', nodename: 'guest1', release: '6.1.0-test', version: '#1 SMP' },
    physBase: 0x1000000n,
    dumpLevel: 16,
    nrCpus: 2,
    timestamp: new Date('2024-05-01T12:00:00Z'),
    workers: 0,
    ...extra,
  });
}

const extents = (gpa: number, len: number): [number, number][] => {
  // gpa → input position, with the truncated tail reported as "reads as zero" (-1), as a source would.
  const end = BASE + (MAXPFN - 40) * PS;
  const pos = BASE + gpa;
  if (pos + len <= end) return [[pos, len]];
  if (pos >= end) return [[-1, len]];
  return [
    [pos, end - pos],
    [-1, pos + len - end],
  ];
};

it('the helper is built (npm run build) where the tools are required', () => {
  if (process.env.VICOVER_REQUIRE_TOOLS === '1') expect(nativeCopyHelper(), 'packages/dumpfmt/native/build/vicover-copy').not.toBeNull();
});

describe.skipIf(nativeCopyHelper() === null)('native copy helper', () => {
  it('copyPages writes the same file as writePages, holes kept as holes', async () => {
    const viaJs = join(dir, 'js.kdump');
    const viaCopy = join(dir, 'copy.kdump');
    const w1 = await create(viaJs, { nativeCopy: false });
    expect(w1.canCopy).toBe(false);
    for (let s = 0; s < MAXPFN; s += 512) {
      const e = Math.min(MAXPFN, s + 512);
      await w1.writePages(s, expected.subarray(s * PS, e * PS));
    }
    const s1 = await w1.finish();
    const w2 = await create(viaCopy, { copyFrom: input });
    expect(w2.canCopy).toBe(true);
    for (let s = 0; s < MAXPFN; s += 512) await w2.copyPages(s, Math.min(MAXPFN, s + 512), extents);
    const s2 = await w2.finish();
    expect(s2.complete).toBe(true);
    expect(s2.pagesWritten).toBe(s1.pagesWritten);
    expect(readFileSync(viaCopy).equals(readFileSync(viaJs))).toBe(true);
    // Holes of the input are not written: the copy uses fewer blocks than the JavaScript path.
    expect(statSync(viaCopy).blocks).toBeLessThan(statSync(viaJs).blocks);
    const r = await KdumpReader.open(viaCopy);
    for (const [a, b] of dump.runs()) for (let p = a; p < b; p += 7) expect(r.readPage(p).equals(expected.subarray(p * PS, (p + 1) * PS))).toBe(true);
    r.close();
  });

  it('refuses copyPages where it cannot copy (compression, zero exclusion, no input)', async () => {
    const w = await create(join(dir, 'nocopy.kdump'), { excludeZero: true, copyFrom: input });
    expect(w.canCopy).toBe(false);
    await expect(w.copyPages(0, 10, extents)).rejects.toSatisfy((e: unknown) => isVcvError(e) && e.code === 'VCV_ERR_WRITER_STATE');
    await w.finish();
    const w2 = await create(join(dir, 'noinput.kdump'));
    expect(w2.canCopy).toBe(false);
    await w2.finish();
  });

  it('falls back to the JavaScript path when the helper dies at once', async () => {
    process.env.VICOVER_NATIVE_COPY_BIN = '/bin/false';
    let w: KdumpWriter;
    try {
      w = await create(join(dir, 'dead-helper.kdump'), { copyFrom: input });
    } finally {
      delete process.env.VICOVER_NATIVE_COPY_BIN;
    }
    for (let i = 0; i < 400 && w.canCopy; i++) await new Promise((r) => setTimeout(r, 25)); // up to 10 s on a loaded machine
    expect(w.canCopy).toBe(false);
    for (let s = 0; s < MAXPFN; s += 512) await w.writePages(s, expected.subarray(s * PS, Math.min(MAXPFN, s + 512) * PS));
    expect((await w.finish()).complete).toBe(true);
  });

  it('reports a failed copy as a coded error naming the file', async () => {
    const out = join(dir, 'ro.out');
    writeFileSync(out, '');
    const fd = openSync(out, 'r'); // read-only: every write fails with EBADF
    const c = NativeCopier.open({ outFd: fd, outPath: out, inputPath: input })!;
    closeSync(fd);
    await expect(c.copy(BASE, 0, PS)).rejects.toSatisfy((e: unknown) => isVcvError(e) && e.code === 'VCV_ERR_IO' && /ro\.out/.test(e.message));
    await c.close();
  });
});
