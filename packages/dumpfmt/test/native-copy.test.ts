/**
 * The native copy helper (native/copy.c): copyPages() must produce byte-for-byte the file that
 * writePages() produces from the same image, holes of the input included (they stay holes and read
 * back as zeros), and errors must come back as coded errors.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
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

  it('copyPages with zero pages excluded: the helper reads, drops zero pages, and the file is the same as writePages makes', async () => {
    const viaJs = join(dir, 'js-z.kdump');
    const viaPack = join(dir, 'pack-z.kdump');
    const w1 = await create(viaJs, { nativeCopy: false, excludeZero: true, dumpLevel: 17 });
    // chunks in a scattered order, so that the data end moves between unrelated pfn ranges
    const order = [5, 0, 3, 1, 4, 2].map((i) => i * 512);
    for (const s of order) {
      const e = Math.min(MAXPFN, s + 512);
      await w1.writePages(s, expected.subarray(s * PS, e * PS));
    }
    const s1 = await w1.finish();
    const w2 = await create(viaPack, { copyFrom: input, excludeZero: true, dumpLevel: 17 });
    expect(w2.canCopy).toBe(true);
    let zeroPages = 0;
    for (const s of order) zeroPages += (await w2.copyPages(s, Math.min(MAXPFN, s + 512), extents)).zeroPages;
    const s2 = await w2.finish();
    expect(s2.complete).toBe(true);
    expect(s2.pagesWritten).toBe(s1.pagesWritten);
    expect(s2.zeroPages).toBe(s1.zeroPages);
    // the holes and the truncated tail are zero pages: they are there to be found
    expect(zeroPages).toBeGreaterThan(64);
    expect(readFileSync(viaPack).equals(readFileSync(viaJs))).toBe(true);
    const r = await KdumpReader.open(viaPack);
    for (const [a, b] of dump.runs()) for (let p = a; p < b; p += 5) expect(r.readPage(p).equals(expected.subarray(p * PS, (p + 1) * PS))).toBe(true);
    r.close();
  });

  it('pack(): one bit per zero page, the others written one after the other, the next pack going on from there', async () => {
    const out = join(dir, 'pack.out');
    writeFileSync(out, '');
    const fd = openSync(out, 'r+');
    const c = NativeCopier.open({ outFd: fd, outPath: out, inputPath: input })!;
    // pfns 96..104 straddle the hole [100, 164): 4 data pages then 4 hole pages
    const a = await c.pack(BASE + 96 * PS, 8192, 8 * PS);
    const b = await c.pack(BASE + 90 * PS, null, 2 * PS);
    await c.close();
    closeSync(fd);
    const isZero = (p: number) => expected.subarray(p * PS, (p + 1) * PS).every((x) => x === 0);
    const bitsA = [...Array(8).keys()].map((i) => (a.zero[i >> 3]! >> (i & 7)) & 1);
    expect(bitsA).toEqual([96, 97, 98, 99, 100, 101, 102, 103].map((p) => (isZero(p) ? 1 : 0)));
    const kept = [96, 97, 98, 99, 100, 101, 102, 103].filter((p) => !isZero(p));
    expect(a.written).toBe(kept.length * PS);
    // each says where it wrote from: the given offset, then where the previous ended
    expect(a.from).toBe(8192);
    expect(b.from).toBe(8192 + a.written);
    const file = readFileSync(out);
    kept.forEach((p, i) => expect(file.subarray(8192 + i * PS, 8192 + (i + 1) * PS).equals(expected.subarray(p * PS, (p + 1) * PS))).toBe(true));
    const keptB = [90, 91].filter((p) => !isZero(p));
    expect(b.written).toBe(keptB.length * PS);
    keptB.forEach((p, i) => {
      const at = 8192 + a.written + i * PS;
      expect(file.subarray(at, at + PS).equals(expected.subarray(p * PS, (p + 1) * PS))).toBe(true);
    });
    await expect(c.pack(0, 0, 100)).rejects.toSatisfy((e: unknown) => isVcvError(e));
  });

  it('refuses copyPages where it cannot copy (compression, no input)', async () => {
    const w = await create(join(dir, 'nocopy.kdump'), { compression: 'zlib', copyFrom: input });
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

  it('backgroundSync: the helper fdatasyncs in the background as bytes are written, and only when asked', async () => {
    for (const bytes of [PS * 64, 0]) {
      const out = join(dir, `bg-${bytes}.out`);
      writeFileSync(out, '');
      const fd = openSync(out, 'r+');
      const c = NativeCopier.open({ outFd: fd, outPath: out, inputPath: input })!;
      if (bytes) expect(await c.backgroundSync(bytes)).toBe(true);
      // 8 × 256 KiB copied by the helper, then 8 × 256 KiB "written by the caller" and announced
      for (let i = 0; i < 8; i++) await c.copy(BASE + i * 64 * PS, i * 64 * PS, 64 * PS);
      for (let i = 8; i < 16; i++) {
        writeSync(fd, Buffer.alloc(64 * PS, i), 0, 64 * PS, i * 64 * PS);
        c.writeback(i * 64 * PS, 64 * PS, true);
      }
      // The sync thread runs on its own: give it a moment, then ask how many it did.
      let done = await c.datasync();
      for (let i = 0; i < 100 && bytes && done < 2; i++) {
        await new Promise((r) => setTimeout(r, 20));
        done = await c.datasync();
      }
      if (bytes) expect(done).toBeGreaterThanOrEqual(2);
      else expect(done).toBe(0);
      await c.close();
      closeSync(fd);
      expect(readFileSync(out).subarray(0, 64 * PS).equals(expected.subarray(0, 64 * PS))).toBe(true);
    }
  });

  it('VICOVER_BACKGROUND_SYNC: 0 or a number of MiB; anything else refused before the dump file exists', async () => {
    const old = process.env.VICOVER_BACKGROUND_SYNC;
    try {
      for (const bad of ['abc', '-1', '1.5', '65537']) {
        process.env.VICOVER_BACKGROUND_SYNC = bad;
        const out = join(dir, `bgenv-${bad}.kdump`);
        await expect(create(out, { copyFrom: input })).rejects.toMatchObject({ code: 'VCV_ERR_WRITER_OPTIONS', message: expect.stringContaining('VICOVER_BACKGROUND_SYNC') });
        expect(existsSync(out)).toBe(false);
      }
      for (const good of ['0', '8']) {
        process.env.VICOVER_BACKGROUND_SYNC = good;
        const w = await create(join(dir, `bgenv-${good}.kdump`), { copyFrom: input });
        await w.copyPages(0, MAXPFN, extents);
        expect((await w.finish()).complete).toBe(true);
      }
    } finally {
      if (old === undefined) delete process.env.VICOVER_BACKGROUND_SYNC;
      else process.env.VICOVER_BACKGROUND_SYNC = old;
    }
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
