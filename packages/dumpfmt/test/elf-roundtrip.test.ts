import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Bitmap, ElfCoreReader, ElfWriter, openDump, decodePrstatus } from '../src/index.js';
import { pageSets, testNotes, VMCOREINFO_TEXT, writeElf } from './helpers/dumps.js';
import { libkdumpfileRead, run } from './helpers/oracle.js';
import { makeImage, PS } from './helpers/pages.js';
import { tempDir } from './helpers/tmp.js';

const dir = tempDir();
const MAXPFN = 1200;
const image = makeImage(MAXPFN, 31);
const { ram, dump } = pageSets(MAXPFN, 4, { excludeFraction: 0.15 });

/** What a reader must return for pfn: image data if dumped; zeros for excluded pages inside a merged segment. */
function expected(pfn: number): Buffer {
  return dump.get(pfn) ? image.subarray(pfn * PS, (pfn + 1) * PS) : Buffer.alloc(PS);
}

describe.each([
  [true, 256],
  [false, 0],
])('ELF excludeZero=%s mergeGapPages=%s', (excludeZero, mergeGapPages) => {
  const path = join(dir, `rt-${excludeZero}-${mergeGapPages}.elf`);

  it('writes shuffled chunks and finishes complete', async () => {
    const w = await writeElf(path, image, { excludeZero, ram, dump, mergeGapPages });
    const s = await w.finish();
    expect(s.complete).toBe(true);
    expect(s.pagesWritten).toBe(dump.count());
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('our reader returns every dumped page', async () => {
    const r = await ElfCoreReader.open(path);
    expect(r.incomplete).toBe(false);
    expect(r.vmcoreinfo).toBe(VMCOREINFO_TEXT);
    expect(decodePrstatus(r.notes[0]!.desc).regs.rip).toBe(0xffffffff81000000n);
    for (const [s, e] of dump.runs()) for (let p = s; p < e; p++) expect(r.readPage(p).equals(expected(p)), `pfn ${p}`).toBe(true);
    // segments never cover RAM holes
    const hole = Math.floor(MAXPFN * 0.42);
    expect(r.isDumped(hole)).toBe(false);
    expect(() => r.readPage(hole)).toThrow(expect.objectContaining({ code: 'VCV_ERR_PAGE_NOT_DUMPED' }));
    if (mergeGapPages === 0) {
      // without merging, segments are exactly the dump runs
      expect([...r.dumpedRuns()]).toEqual([...dump.runs()]);
    }
    r.close();
  });

  it('readelf agrees on the layout and the notes', () => {
    const l = run('readelf', ['-W', '-h', '-l', '-n', path]);
    expect(l.status).toBe(0);
    expect(l.stdout).toMatch(/Type:\s+CORE/);
    expect(l.stdout).toMatch(/Machine:\s+Advanced Micro Devices X86-64/);
    const loads = l.stdout.split('\n').filter((x) => /^\s+LOAD/.test(x));
    const r = ElfCoreReader.openSync(path);
    expect(loads.length).toBe(r.loads.length);
    loads.forEach((line, i) => {
      const f = line.trim().split(/\s+/);
      expect(BigInt(f[1]!)).toBe(BigInt(r.loads[i]!.offset));
      expect(BigInt(f[3]!)).toBe(r.loads[i]!.paddr);
      expect(BigInt(f[4]!)).toBe(BigInt(r.loads[i]!.filesz));
    });
    r.close();
    expect(l.stdout.match(/NT_PRSTATUS/g)?.length).toBe(2);
    expect(l.stdout).toMatch(/VMCOREINFO/);
  });

  it('gdb reads the same physical memory and the same registers', () => {
    const r = ElfCoreReader.openSync(path);
    const cmds = ['-nx', '-batch', '-ex', 'set architecture i386:x86-64', '-ex', `core-file ${path}`, '-ex', 'p/x $rip', '-ex', 'thread 2', '-ex', 'p/x $rsp'];
    const outs: string[] = [];
    r.loads.slice(0, 6).forEach((l, i) => {
      const o = join(dir, `gdb-${excludeZero}-${i}.bin`);
      outs.push(o);
      cmds.push('-ex', `dump binary memory ${o} ${l.paddr} ${l.paddr + BigInt(l.memsz)}`);
    });
    const g = run('gdb', cmds);
    expect(g.stdout).toContain('0xffffffff81000000');
    expect(g.stdout).toContain('0xffffc90000001001');
    r.loads.slice(0, 6).forEach((l, i) => {
      const got = readFileSync(outs[i]!);
      const first = Number(l.paddr) / PS;
      for (let k = 0; k < l.memsz / PS; k++) expect(got.subarray(k * PS, (k + 1) * PS).equals(expected(first + k)), `pfn ${first + k}`).toBe(true);
    });
    r.close();
  });

  it('libkdumpfile reads the ELF file identically', () => {
    const res = libkdumpfileRead(path, MAXPFN, path + '.lkd');
    let k = 0;
    const ok = new Set(res.ok);
    for (const [s, e] of dump.runs()) for (let p = s; p < e; p++) expect(ok.has(p), `pfn ${p}: ${res.err[p]}`).toBe(true);
    for (const pfn of res.ok) {
      expect(res.data.subarray(k * PS, (k + 1) * PS).equals(expected(pfn)), `pfn ${pfn}`).toBe(true);
      k++;
    }
  });

  it('openDump detects it', async () => {
    const r = await openDump(path);
    expect(r.format).toBe('elf');
    expect(r.compression).toBe('none');
    r.close();
  });
});


describe('ELF with more than 65535 segments (PN_XNUM)', () => {
  it('writes and reads PN_XNUM; readelf agrees', async () => {
    const n = 2 * 66000;
    const ram2 = new Bitmap(n).setRange(0, n);
    const dump2 = new Bitmap(n);
    for (let p = 0; p < n; p += 2) dump2.set(p);
    const path = join(dir, 'xnum.elf');
    const w = await ElfWriter.create({ path, maxPfn: n, ram: ram2, dump: dump2, notes: testNotes(1), mergeGapPages: 0 });
    // mostly zero pages (holes), a few marked ones
    const chunk = Buffer.alloc(4096 * PS);
    for (let s = 0; s < n; s += 4096) {
      const len = Math.min(4096, n - s);
      chunk.fill(0);
      chunk.writeUInt32LE(s + 1, 0);
      await w.writePages(s, chunk.subarray(0, len * PS));
    }
    const sum = await w.finish();
    expect(sum.complete).toBe(true);
    expect(w.segments).toBe(66000);
    const r = ElfCoreReader.openSync(path);
    expect(r.ehdr.phnum).toBe(0xffff);
    expect(r.loads.length).toBe(66000);
    expect(r.readPage(4096).readUInt32LE(0)).toBe(4097);
    expect(r.isDumped(1)).toBe(false);
    r.close();
    const l = run('readelf', ['-W', '-h', path]);
    expect(l.stdout).toMatch(/Number of program headers:\s+65535 \(66001\)/);
  });
});
