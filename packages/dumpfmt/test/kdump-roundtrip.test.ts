import { statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isVcvError } from '@vicover/errors';
import { decodePrstatus, KdumpReader, openDump, type Compression } from '../src/index.js';
import { pageSets, VMCOREINFO_TEXT, writeKdump } from './helpers/dumps.js';
import { libkdumpfileRead, run } from './helpers/oracle.js';
import { makeImage, PS } from './helpers/pages.js';
import { tempDir } from './helpers/tmp.js';

const dir = tempDir();
const MAXPFN = 1500;
const image = makeImage(MAXPFN, 21);
const { ram, dump } = pageSets(MAXPFN, 3);

function expectPagesMatch(r: { readPage(pfn: number): Buffer }, pfns: Iterable<number>) {
  let n = 0;
  for (const pfn of pfns) {
    const got = r.readPage(pfn);
    if (!got.equals(image.subarray(pfn * PS, (pfn + 1) * PS))) throw new Error(`page ${pfn} differs`);
    n++;
  }
  return n;
}

function* dumped() {
  for (const [s, e] of dump.runs()) for (let p = s; p < e; p++) yield p;
}

const cases: [Compression, boolean][] = [
  ['none', false],
  ['none', true],
  ['zlib', false],
  ['zlib', true],
  ['lzo', true],
  ['snappy', true],
  ['snappy', false],
];

describe.each(cases)('kdump %s, excludeZero=%s', (compression, excludeZero) => {
  const path = join(dir, `rt-${compression}-${excludeZero}.kdump`);
  let summary: Awaited<ReturnType<Awaited<ReturnType<typeof writeKdump>>['finish']>>;

  it('writes shuffled chunks and finishes complete', async () => {
    const w = await writeKdump(path, image, { compression, excludeZero, ram, dump, concurrency: 3 });
    summary = await w.finish();
    expect(summary.complete).toBe(true);
    expect(summary.pagesWritten).toBe(dump.count());
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('reads back identical pages with our reader', async () => {
    const r = await KdumpReader.open(path);
    expect(r.incomplete).toBe(false);
    expect(r.compression).toBe(compression);
    expect(r.maxPfn).toBe(MAXPFN);
    expect(r.ram.equals(ram)).toBe(true);
    expect(r.dump.equals(dump)).toBe(true);
    expect(r.vmcoreinfo).toBe(VMCOREINFO_TEXT);
    expect(r.notes.length).toBe(3);
    const pr = decodePrstatus(r.notes[1]!.desc);
    expect(pr.regs.rip).toBe(0xffffffff81000001n);
    expect(pr.pid).toBe(2);
    expect(r.header.utsname.machine).toBe('x86_64');
    expect(r.physBase).toBe(0x1000000n);
    expect(expectPagesMatch(r, dumped())).toBe(dump.count());
    expect(r.lostPages().count()).toBe(0);
    const st = r.stats();
    let zeros = 0;
    for (const p of dumped()) if (image.subarray(p * PS, (p + 1) * PS).every((b) => b === 0)) zeros++;
    expect(st.dumpable).toBe(dump.count());
    expect(st.lost).toBe(0);
    expect(st.zero + st.raw + st.compressed).toBe(dump.count());
    if (excludeZero) expect(st.zero).toBe(zeros);
    if (compression === 'none') expect(st.compressed).toBe(0);
    else expect(st.compressed).toBeGreaterThan(0);
    expect(r.warnings).toEqual([]);
    let n = 0;
    for (const [pfn, page] of r.dumpedPages()) {
      expect(page.equals(image.subarray(pfn * PS, (pfn + 1) * PS))).toBe(true);
      n++;
    }
    expect(n).toBe(dump.count());
    // excluded and hole pages
    const excluded = ram.clone().andNot(dump).nextSet(0);
    expect(() => r.readPage(excluded)).toThrow(expect.objectContaining({ code: 'VCV_ERR_PAGE_NOT_DUMPED' }));
    try {
      r.readPage(Math.floor(MAXPFN * 0.42));
    } catch (e) {
      expect(isVcvError(e, 'VCV_ERR_PAGE_NOT_DUMPED')).toBe(true);
      expect((e as { details: { reason: string } }).details.reason).toBe('not-ram');
    }
    // readPhys across a page boundary
    const first = dump.nextSet(0);
    const next = dump.nextClear(first);
    if (next - first >= 2) {
      const b = Buffer.alloc(100);
      r.readPhys(BigInt((first + 1) * PS - 50), b);
      expect(b.equals(image.subarray((first + 1) * PS - 50, (first + 1) * PS + 50))).toBe(true);
    }
    r.close();
  });

  it('libkdumpfile reads every dumped page identically and sees the notes', () => {
    const res = libkdumpfileRead(path, MAXPFN, path + '.lkd');
    const ok = new Set(res.ok);
    for (const p of dumped()) expect(ok.has(p), `pfn ${p}: ${res.err[p]}`).toBe(true);
    let k = 0;
    for (const pfn of res.ok) {
      expect(res.data.subarray(k * PS, (k + 1) * PS).equals(image.subarray(pfn * PS, (pfn + 1) * PS)), `pfn ${pfn}`).toBe(true);
      k++;
    }
    // libkdumpfile reads excluded pages as zeros only when zero pages were excluded; otherwise errors
    for (const p of res.ok) expect(ram.get(p)).toBe(true);
    expect(res.attrs['arch.name']).toBe('x86_64');
    expect(res.attrs['linux.uts.nodename']).toBe('guest1');
    expect(res.vmcoreinfo).toBe(VMCOREINFO_TEXT);
    expect(res.cpu0).toMatchObject({ rip: 0xffffffff81000000, rax: 42, r15: 15, gs: 0x2b });
  });

  it('crash parses the header, sub-header, notes and VMCOREINFO (crash -d 1 --osrelease)', () => {
    const c = run('crash', ['-d', '1', '--osrelease', path]);
    expect(c.status, c.stderr).toBe(0);
    expect(c.stdout).toContain('6.1.0-test'); // OSRELEASE from the VMCOREINFO
    expect(c.stdout).toMatch(/header_version: 6/);
    expect(c.stdout).toMatch(/machine: x86_64/);
    expect(c.stdout).toMatch(/num_prstatus_notes: 2/);
    expect(c.stdout).toMatch(/RIP: ffffffff81000000/);
    expect(c.stdout).toMatch(new RegExp(`max_mapnr_64: ${MAXPFN} `));
    const flag = { none: '0', zlib: '1 \\(DUMP_DH_COMPRESSED_ZLIB\\)', lzo: '2 ', snappy: '4 ', zstd: '20 ' }[compression];
    expect(c.stdout).toMatch(new RegExp(`status: ${flag}`));
  });

  it('openDump gives the same pages', async () => {
    const r = await openDump(path);
    expect(r.format).toBe('kdump');
    expect(r.pages).toBe(dump.count());
    expect(expectPagesMatch(r, [...dumped()].slice(0, 200))).toBe(200);
    r.close();
  });
});

describe('kdump edge cases', () => {
  it('zstd: writing needs a Node with zlib zstd; a zstd page reads as FORMAT_UNSUPPORTED on Node 20', async () => {
    const zlibHasZstd = typeof (await import('node:zlib') as { zstdCompressSync?: unknown }).zstdCompressSync === 'function';
    if (!zlibHasZstd) {
      await expect(writeKdump(join(dir, 'zstd.kdump'), image, { compression: 'zstd', excludeZero: true, ram, dump })).rejects.toMatchObject({ code: 'VCV_ERR_FORMAT_UNSUPPORTED' });
    }
    // a raw file with one descriptor re-flagged as zstd
    const path = join(dir, 'zstd-page.kdump');
    const w = await writeKdump(path, image, { compression: 'none', excludeZero: false, ram, dump });
    await w.finish();
    const { readFileSync, writeFileSync } = await import('node:fs');
    const b = readFileSync(path);
    const first = dump.nextSet(0);
    const descAt = w.layout.descOffset; // first descriptor = first dumpable pfn
    b.writeUInt32LE(100, descAt + 8);
    b.writeUInt32LE(0x20, descAt + 12);
    writeFileSync(path, b);
    const r = await KdumpReader.open(path);
    if (!zlibHasZstd) expect(() => r.readPage(first)).toThrow(expect.objectContaining({ code: 'VCV_ERR_FORMAT_UNSUPPORTED' }));
    else expect(() => r.readPage(first)).toThrow(expect.objectContaining({ code: 'VCV_ERR_PAGE_CORRUPT' }));
    r.close();
  });

  it('damaged notes are a warning (strict: an error); the pages stay readable', async () => {
    const path = join(dir, 'badnotes.kdump');
    const w = await writeKdump(path, image, { compression: 'zlib', excludeZero: true, ram, dump });
    await w.finish();
    const { readFileSync, writeFileSync } = await import('node:fs');
    const b = readFileSync(path);
    // second note's descsz → huge
    const off = 4096 + 104;
    const first = 12 + 8 + b.readUInt32LE(off + 4);
    b.writeUInt32LE(0x7fffffff, off + first + 4);
    writeFileSync(path, b);
    const r = await KdumpReader.open(path);
    expect(r.notes.length).toBe(1);
    expect(r.warnings[0]).toMatch(/notes are damaged after 1 note/);
    expect(r.readPage(dump.nextSet(0)).length).toBe(PS);
    r.close();
    await expect(KdumpReader.open(path, { strict: true })).rejects.toMatchObject({ code: 'VCV_ERR_FORMAT_INVALID' });
  });

  it('an empty page set still makes a valid file', async () => {
    const path = join(dir, 'empty.kdump');
    const none = ram.clone().clearRange(0, MAXPFN);
    const w = await writeKdump(path, image, { compression: 'zlib', excludeZero: true, ram, dump: none });
    const s = await w.finish();
    expect(s.complete).toBe(true);
    const r = await KdumpReader.open(path);
    expect(r.pages).toBe(0);
    r.close();
  });

  it('the notes-less file has no VMCOREINFO', async () => {
    const path = join(dir, 'nonotes.kdump');
    const w = await writeKdump(path, image, { compression: 'none', excludeZero: false, ram, dump, notes: [] });
    await w.finish();
    const r = await KdumpReader.open(path);
    expect(r.notes).toEqual([]);
    expect(r.vmcoreinfo).toBeUndefined();
    r.close();
  });

  it('rewriting a chunk keeps the page count and the newest data', async () => {
    const path = join(dir, 'rewrite.kdump');
    const w = await writeKdump(path, image, { compression: 'snappy', excludeZero: true, ram, dump });
    const other = makeImage(100, 99);
    const first = dump.nextSet(0);
    await w.writePages(first, other);
    const s = await w.finish();
    expect(s.pagesWritten).toBe(dump.count());
    const r = await KdumpReader.open(path);
    expect(r.readPage(first).equals(other.subarray(0, PS))).toBe(true);
    r.close();
  });

  it('refuses to overwrite an existing file, and rejects bad chunks', async () => {
    const path = join(dir, 'exists.kdump');
    const w = await writeKdump(path, image, { compression: 'none', excludeZero: false, ram, dump });
    await expect(w.writePages(0, Buffer.alloc(100))).rejects.toMatchObject({ code: 'VCV_ERR_WRITER_OPTIONS' });
    await expect(w.writePages(MAXPFN - 1, Buffer.alloc(2 * PS))).rejects.toMatchObject({ code: 'VCV_ERR_WRITER_STATE' });
    await w.finish();
    await expect(w.writePages(0, Buffer.alloc(PS))).rejects.toMatchObject({ code: 'VCV_ERR_WRITER_STATE' });
    await expect(writeKdump(path, image, { compression: 'none', excludeZero: false, ram, dump })).rejects.toMatchObject({ code: 'VCV_ERR_OUTPUT_EXISTS' });
  });
});
