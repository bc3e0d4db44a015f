import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isVcvError } from '@vicover/errors';
import { ElfCoreReader, ElfWriter, KdumpReader, KdumpWriter, type Compression } from '../src/index.js';
import { chunkOrder, pageSets, testNotes, writeKdump } from './helpers/dumps.js';
import { faultyFs } from './helpers/faultyfs.js';
import { libkdumpfileRead } from './helpers/oracle.js';
import { makeImage, PS } from './helpers/pages.js';
import { tempDir } from './helpers/tmp.js';

const dir = tempDir();
const MAXPFN = 1000;
const image = makeImage(MAXPFN, 41);
const { ram, dump } = pageSets(MAXPFN, 8);

function createOpts(path: string, compression: Compression, fs?: ReturnType<typeof faultyFs>) {
  return {
    path,
    fs,
    maxPfn: MAXPFN,
    ram,
    dump,
    compression,
    excludeZero: true,
    notes: testNotes(),
    utsname: { machine: 'x86_64' as const, nodename: 'g', release: '6.1.0', version: '#1' },
    physBase: 0n,
    dumpLevel: 1,
    nrCpus: 2,
  };
}

describe('ENOSPC', () => {
  it.each(['zlib', 'none'] as Compression[])('%s: gives VCV_ERR_NO_SPACE, leaves a readable incomplete file', async (compression) => {
    const path = join(dir, `nospace-${compression}.kdump`);
    // enough for the layout and a few chunks
    const fs = faultyFs({ budget: 200_000 + (compression === 'none' ? 600_000 : 150_000), maxWrite: 50_000 });
    const w = await KdumpWriter.create(createOpts(path, compression, fs));
    let failed: unknown;
    const ok: [number, number][] = [];
    for (const [s, e] of chunkOrder(MAXPFN, 64, 3)) {
      try {
        await w.writePages(s, image.subarray(s * PS, e * PS));
        ok.push([s, e]);
      } catch (e) {
        failed = e;
        break;
      }
    }
    expect(isVcvError(failed, 'VCV_ERR_NO_SPACE'), String(failed)).toBe(true);
    expect(fs.shortWrites).toBeGreaterThan(0);
    expect(ok.length).toBeGreaterThan(0);
    const s = await w.abort('disk full');
    expect(s.complete).toBe(false);

    const r = KdumpReader.openSync(path);
    expect(r.incomplete).toBe(true);
    expect(r.header.status & 0x8).toBe(0x8);
    const lost = r.lostPages();
    let readable = 0;
    for (const [s0, e0] of ok) {
      for (let p = s0; p < e0; p++) {
        if (!dump.get(p)) continue;
        expect(lost.get(p)).toBe(false);
        expect(r.readPage(p).equals(image.subarray(p * PS, (p + 1) * PS))).toBe(true);
        readable++;
      }
    }
    expect(lost.count()).toBe(dump.count() - readable);
    const lostPfn = lost.nextSet(0);
    expect(() => r.readPage(lostPfn)).toThrow(expect.objectContaining({ code: 'VCV_ERR_PAGE_NOT_DUMPED', details: expect.objectContaining({ reason: 'lost' }) }));
    r.close();

    // libkdumpfile opens it and reads exactly the written pages
    const res = libkdumpfileRead(path, MAXPFN, path + '.lkd');
    const got = new Set(res.ok);
    for (const [s0, e0] of ok) for (let p = s0; p < e0; p++) if (dump.get(p)) expect(got.has(p)).toBe(true);
    expect(res.ok.filter((p) => dump.get(p)).length).toBe(readable);
    expect(res.err[String(lostPfn)]).toMatch(/Wrong page size: 0/);
  });

  it('ENOSPC while laying out the file is reported, and the half-made file removed', async () => {
    const path = join(dir, 'nospace-create.kdump');
    const fs = faultyFs({ budget: 3000 });
    await expect(KdumpWriter.create(createOpts(path, 'zlib', fs))).rejects.toMatchObject({ code: 'VCV_ERR_NO_SPACE' });
    expect(existsSync(path)).toBe(false);
    const epath = join(dir, 'nospace-create.elf');
    await expect(ElfWriter.create({ path: epath, fs: faultyFs({ budget: 10 }), maxPfn: MAXPFN, ram, dump, notes: testNotes() })).rejects.toMatchObject({ code: 'VCV_ERR_NO_SPACE' });
    expect(existsSync(epath)).toBe(false);
  });

  it('EIO gives VCV_ERR_IO; a failing fdatasync too', async () => {
    const path = join(dir, 'eio.kdump');
    const fs = faultyFs({ budget: 400_000, errno: 'EIO' });
    const w = await KdumpWriter.create(createOpts(path, 'none', fs));
    let err: unknown;
    for (let s = 0; s < MAXPFN && !err; s += 100) await w.writePages(s, image.subarray(s * PS, Math.min(MAXPFN, s + 100) * PS)).catch((e) => (err = e));
    expect(isVcvError(err, 'VCV_ERR_IO')).toBe(true);
    await w.abort('eio');
    const path2 = join(dir, 'eio-sync.kdump');
    const w2 = await KdumpWriter.create(createOpts(path2, 'none'));
    await w2.writePages(0, image.subarray(0, 10 * PS));
    await w2.abort('x');
    const fs3 = faultyFs({ syncErrno: 'EIO' });
    await expect(KdumpWriter.create(createOpts(join(dir, 'eio-sync3.kdump'), 'none', fs3))).rejects.toMatchObject({ code: 'VCV_ERR_IO' });
  });

  it('durableLayout: false leaves the first fdatasync to finish(), whose failure is then reported', async () => {
    const path = join(dir, 'eio-late.kdump');
    const w = await KdumpWriter.create({ ...createOpts(path, 'none', faultyFs({ syncErrno: 'EIO' })), durableLayout: false });
    await w.writePages(0, image.subarray(0, 10 * PS));
    await expect(w.finish()).rejects.toMatchObject({ code: 'VCV_ERR_IO' });
    const epath = join(dir, 'eio-late.elf');
    await expect(ElfWriter.create({ path: epath, fs: faultyFs({ syncErrno: 'EIO' }), maxPfn: MAXPFN, ram, dump, notes: testNotes() })).rejects.toMatchObject({ code: 'VCV_ERR_IO' });
    const e = await ElfWriter.create({ path: epath, fs: faultyFs({ syncErrno: 'EIO' }), maxPfn: MAXPFN, ram, dump, notes: testNotes(), durableLayout: false });
    await e.writePages(0, image.subarray(0, 10 * PS));
    await expect(e.finish()).rejects.toMatchObject({ code: 'VCV_ERR_IO' });
  });

  it('ELF: ENOSPC gives NO_SPACE and the file keeps e_flags 0x1', async () => {
    const path = join(dir, 'nospace.elf');
    const fs = faultyFs({ budget: 500_000 });
    const w = await ElfWriter.create({ path, fs, maxPfn: MAXPFN, ram, dump, notes: testNotes(), excludeZero: false });
    let err: unknown;
    for (const [s, e] of chunkOrder(MAXPFN, 64, 5)) {
      try {
        await w.writePages(s, image.subarray(s * PS, e * PS));
      } catch (x) {
        err = x;
        break;
      }
    }
    expect(isVcvError(err, 'VCV_ERR_NO_SPACE')).toBe(true);
    await w.abort('full');
    const r = ElfCoreReader.openSync(path);
    expect(r.incomplete).toBe(true);
    expect(r.ehdr.flags & 1).toBe(1);
    r.close();
  });
});

describe('resume after a kill', () => {
  it.each(['zlib', 'snappy', 'none'] as Compression[])('%s: resumed dump is identical to a one-shot dump', async (compression) => {
    const oneShot = join(dir, `oneshot-${compression}.kdump`);
    const resumed = join(dir, `resumed-${compression}.kdump`);
    const chunks = chunkOrder(MAXPFN, 50, 9);
    // one shot, in the same chunk order
    const w1 = await KdumpWriter.create({ ...createOpts(oneShot, compression), timestamp: 1700000000000 });
    for (const [s, e] of chunks) await w1.writePages(s, image.subarray(s * PS, e * PS));
    await w1.finish();

    // first life: write 8 chunks, sync, checkpoint; write 3 more without sync; "die"
    const w2 = await KdumpWriter.create({ ...createOpts(resumed, compression), timestamp: 1700000000000 });
    for (const [s, e] of chunks.slice(0, 8)) await w2.writePages(s, image.subarray(s * PS, e * PS));
    await w2.sync();
    const cp = JSON.parse(JSON.stringify(w2.state()));
    for (const [s, e] of chunks.slice(8, 11)) await w2.writePages(s, image.subarray(s * PS, e * PS));
    // dropped without finish(): the process is gone. (The handle is left to GC, as after a kill.)

    const w3 = await KdumpWriter.resume(resumed, cp);
    // Non-zero pages of chunks 8..10 were written after the checkpoint: their data may not be durable,
    // so they come back as missing. Zero pages of those chunks point at the (durable) shared zero page
    // and are kept. Nothing of chunks 0..7 is missing.
    const missing = w3.missing();
    const after = chunks.slice(8, 11);
    let zerosAfter = 0;
    for (const [s, e] of after) {
      for (let p = s; p < e; p++) {
        if (!dump.get(p)) continue;
        const zero = image.subarray(p * PS, (p + 1) * PS).every((b) => b === 0);
        expect(missing.get(p), `pfn ${p}`).toBe(!zero);
        if (zero) zerosAfter++;
      }
    }
    for (const [s, e] of chunks.slice(0, 8)) expect(missing.count(s, e)).toBe(0);
    expect(w3.progress.pagesWritten).toBe(cp.pagesWritten + zerosAfter);
    expect(missing.count()).toBe(dump.count() - w3.progress.pagesWritten);
    for (const [s, e] of chunks.slice(8)) await w3.writePages(s, image.subarray(s * PS, e * PS));
    const sum = await w3.finish();
    expect(sum.complete).toBe(true);
    expect(sum.pagesWritten).toBe(dump.count());

    // identical to the one-shot file: same pages, same bytes (same chunk order → same data layout)
    expect(readFileSync(resumed).equals(readFileSync(oneShot))).toBe(true);
    const r = KdumpReader.openSync(resumed);
    expect(r.incomplete).toBe(false);
    for (const [s, e] of dump.runs()) for (let p = s; p < e; p++) expect(r.readPage(p).equals(image.subarray(p * PS, (p + 1) * PS))).toBe(true);
    r.close();
  });

  it('refuses a checkpoint that does not fit the file', async () => {
    const path = join(dir, 'mismatch.kdump');
    const w = await writeKdump(path, image, { compression: 'zlib', excludeZero: true, ram, dump });
    await w.sync();
    const cp = w.state();
    await w.abort('x');
    await expect(KdumpWriter.resume(path, { ...cp, layout: { ...cp.layout, numDumpable: 5 } })).rejects.toMatchObject({ code: 'VCV_ERR_RESUME_MISMATCH' });
    await expect(KdumpWriter.resume(path, { ...cp, dataEnd: statSync(path).size + 4096 })).rejects.toMatchObject({ code: 'VCV_ERR_RESUME_MISMATCH' });
    const done = join(dir, 'done.kdump');
    const w2 = await writeKdump(done, image, { compression: 'zlib', excludeZero: true, ram, dump });
    const cp2 = await w2.sync();
    await w2.finish();
    await expect(KdumpWriter.resume(done, cp2)).rejects.toMatchObject({ code: 'VCV_ERR_RESUME_MISMATCH' });
  });

  it('ELF resume continues from the checkpoint', async () => {
    const path = join(dir, 'resume.elf');
    const opts = { maxPfn: MAXPFN, ram, dump, notes: testNotes() };
    const chunks = chunkOrder(MAXPFN, 64, 2);
    const w = await ElfWriter.create({ ...opts, path });
    for (const [s, e] of chunks.slice(0, 5)) await w.writePages(s, image.subarray(s * PS, e * PS));
    const cp = JSON.parse(JSON.stringify(await w.sync()));
    const w2 = await ElfWriter.resume(path, cp, opts);
    for (const [s, e] of chunks.slice(5)) await w2.writePages(s, image.subarray(s * PS, e * PS));
    expect((await w2.finish()).complete).toBe(true);
    const r = ElfCoreReader.openSync(path);
    expect(r.incomplete).toBe(false);
    for (const [s, e] of dump.runs()) for (let p = s; p < e; p++) expect(r.readPage(p).equals(image.subarray(p * PS, (p + 1) * PS))).toBe(true);
    r.close();
    await expect(ElfWriter.resume(path, cp, opts)).rejects.toMatchObject({ code: 'VCV_ERR_RESUME_MISMATCH' });
  });
});

describe('file mode', () => {
  it('dumps are created 0600 even with a permissive umask, and overwrite replaces with 0600', async () => {
    const old = process.umask(0);
    try {
      const path = join(dir, 'mode.kdump');
      const w = await writeKdump(path, image, { compression: 'none', excludeZero: true, ram, dump });
      await w.finish();
      expect(statSync(path).mode & 0o777).toBe(0o600);
      const e = await ElfWriter.create({ path: join(dir, 'mode.elf'), maxPfn: MAXPFN, ram, dump, notes: [] });
      await e.abort('x');
      expect(statSync(join(dir, 'mode.elf')).mode & 0o777).toBe(0o600);
      const w2 = await KdumpWriter.create({ ...createOpts(path, 'zlib'), overwrite: true });
      await w2.abort('x');
      expect(statSync(path).mode & 0o777).toBe(0o600);
    } finally {
      process.umask(old);
    }
  });
});
