/** Our readers against files written by QEMU 7.2 (an independent writer), and makedumpfile -R. */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ElfCoreReader, KdumpReader, detectFormat, openDump } from '../src/index.js';
import { run } from './helpers/oracle.js';
import { BLOB_ADDR, hasQemu, qemuDumps } from './helpers/qemu.js';
import { makeImage, PS } from './helpers/pages.js';
import { tempDir } from './helpers/tmp.js';

describe.skipIf(!hasQemu)('QEMU dump-guest-memory files', () => {
  const dir = tempDir();
  let files: Record<string, string>;
  // 256 pages of mixed content (zero, text, random …) that QEMU loads into guest RAM at BLOB_ADDR
  const blob = makeImage(256, 77);

  it('QEMU writes elf and kdump-zlib (flattened)', async () => {
    files = await qemuDumps(dir, blob);
    expect(await detectFormat(files.elf!)).toBe('elf');
    expect(await detectFormat(files['kdump-zlib']!)).toBe('kdump-flattened');
  });

  it('the ELF (wrong e_ehsize) and the flattened kdump-zlib give identical pages', async () => {
    const e = ElfCoreReader.openSync(files.elf!);
    expect(e.ehdr.ehsize).not.toBe(64); // QEMU 7.2's quirk: we read program headers at e_phoff anyway
    expect(e.warnings.join()).toMatch(/e_ehsize/);
    expect(() => ElfCoreReader.openSync(files.elf!, { strict: true })).toThrow(expect.objectContaining({ code: 'VCV_ERR_FORMAT_INVALID' }));
    const k = KdumpReader.openSync(files['kdump-zlib']!);
    expect(k.format).toBe('kdump-flattened');
    expect(k.compression).toBe('zlib');
    expect(k.header.utsname.machine).toBe('x86_64');
    expect(k.notes.filter((n) => n.name === 'CORE').length).toBe(1);
    expect(e.notes.map((n) => n.name)).toEqual(k.notes.map((n) => n.name));
    let pages = 0;
    let nonZero = 0;
    for (const [s, t] of k.dumpedRuns()) {
      for (let p = s; p < t; p++) {
        const a = e.readPage(p);
        const b = k.readPage(p);
        expect(b.equals(a), `pfn ${p}`).toBe(true);
        pages++;
        if (b.some((x) => x !== 0)) nonZero++;
      }
    }
    expect(pages).toBe(e.pages);
    expect(nonZero).toBeGreaterThan(100);
    // the known content, through both readers
    for (const r of [e, k]) {
      const got = Buffer.alloc(blob.length);
      r.readPhys(BLOB_ADDR, got);
      expect(got.equals(blob)).toBe(true);
    }
    for (let i = 0; i < blob.length / PS; i++) expect(k.readPage(BLOB_ADDR / PS + i).equals(blob.subarray(i * PS, (i + 1) * PS))).toBe(true);
    const st = k.stats();
    expect(st.lost).toBe(0);
    expect(st.zero + st.raw + st.compressed).toBe(k.pages);
    expect(st.zero).toBe(pages - nonZero);
    e.close();
    k.close();
  });

  it('makedumpfile -R rearranges the flattened file into the same seekable file our flattened reader sees', async () => {
    const out = join(dir, 'rearranged.kdump');
    const r = run('sh', ['-c', `makedumpfile -R ${out} < ${files['kdump-zlib']}`]);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    const a = await openDump(out);
    const b = await openDump(files['kdump-zlib']!);
    expect(a.format).toBe('kdump');
    expect(a.pages).toBe(b.pages);
    for (const [s, t] of a.dumpedRuns()) for (let p = s; p < t; p++) expect(a.readPage(p).equals(b.readPage(p))).toBe(true);
    a.close();
    b.close();
  });
});
