import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isVcvError } from '@vicover/errors';
import { findVmcoreinfo } from '../src/find-vmcoreinfo.js';
import { LinuxKernel, checkVmcoreinfoAgainstMemory } from '../src/kernel.js';
import { buildSyntheticKernel } from '../src/synth/index.js';
import { Vmcoreinfo } from '../src/vmcoreinfo.js';

const MiB = 1024 * 1024;

function flip(mem: { readSync(g: number, b: Uint8Array, o: number, l: number): void; write(g: number, b: Uint8Array): void }, gpa: number, xor = 0x20): void {
  const b = new Uint8Array(1);
  mem.readSync(gpa, b, 0, 1);
  b[0]! ^= xor;
  mem.write(gpa, b);
}

describe('finding VMCOREINFO', () => {
  it('prefers the ELF note, then given text, then a file, then RAM', async () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB, vmcoreinfoNote: true });
    expect((await findVmcoreinfo(k.mem)).origin).toBe('note');
    k.mem.notes = [];
    expect((await findVmcoreinfo(k.mem, { text: k.info.text })).origin).toBe('text');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vcv-vmci-'));
    const file = path.join(dir, 'vmcoreinfo.txt');
    fs.writeFileSync(file, k.info.text);
    expect((await findVmcoreinfo(k.mem, { file })).origin).toBe('file');
    const scanned = await findVmcoreinfo(k.mem);
    expect(scanned.origin).toBe('scan');
    expect(scanned.info.text).toBe(k.info.text);
    expect([k.vmcoreinfoPa!.text, k.vmcoreinfoPa!.note + 24]).toContain(scanned.gpa);
    fs.rmSync(dir, { recursive: true });
  });

  it('finds the other copy when one is corrupt, and gives up with every reason when both are', async () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB });
    const { text, note } = k.vmcoreinfoPa!;
    const first = Math.min(text, note + 24);
    const second = Math.max(text, note + 24);
    flip(k.mem, first + 2); // OSRELEASE= → OSrELEASE=: not a candidate any more
    const found = await findVmcoreinfo(k.mem, { validate: (i) => checkVmcoreinfoAgainstMemory(k.mem, i) });
    expect(found.gpa).toBe(second);
    // A corrupt value in the second copy: parses, but fails the check against memory.
    const at = k.info.text.indexOf('SYMBOL(init_top_pgt)=') + 'SYMBOL(init_top_pgt)='.length + 10;
    flip(k.mem, second + at, 0x01);
    try {
      await findVmcoreinfo(k.mem, { validate: (i) => checkVmcoreinfoAgainstMemory(k.mem, i) });
      expect.unreachable();
    } catch (e) {
      expect(isVcvError(e, 'VCV_ERR_VMCOREINFO_NOT_FOUND')).toBe(true);
      expect((e as Error).message).toMatch(/scan at 0x[0-9a-f]+: VCV_ERR_TRANSLATION/);
    }
  });

  it('skips a decoy VMCOREINFO of another kernel (it fails the memory check)', async () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB });
    const other = buildSyntheticKernel({ ramBytes: 256 * MiB, kernelOffset: 0x6000000n, osrelease: '5.10.0-decoy' });
    k.mem.write(0x100000, Buffer.from(other.info.text + '\0', 'latin1')); // page aligned, low in RAM: found first
    const lk = await LinuxKernel.open(k.mem);
    expect(lk.info.osrelease).toBe('6.1.0-synthetic-amd64');
    expect(lk.found.rejected.join('\n')).toMatch(/scan at 0x100000/);
  });

  it('honours the scan cap and reports NOT_FOUND without a source', async () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB, vmcoreinfoInRam: false });
    await expect(findVmcoreinfo(k.mem, { scan: false })).rejects.toMatchObject({ code: 'VCV_ERR_VMCOREINFO_NOT_FOUND' });
    await expect(findVmcoreinfo(k.mem)).rejects.toMatchObject({ code: 'VCV_ERR_VMCOREINFO_NOT_FOUND' });
    const k2 = buildSyntheticKernel({ ramBytes: 64 * MiB });
    const e = await findVmcoreinfo(k2.mem, { maxScanBytes: 1 * MiB, blockBytes: 256 * 1024 }).catch((x: unknown) => x);
    expect(isVcvError(e, 'VCV_ERR_VMCOREINFO_NOT_FOUND')).toBe(true);
    expect((e as Error).message).toMatch(/stopped after/);
  });

  it('finds text that straddles two scan blocks, at page offset 0 or 24 only', async () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB, vmcoreinfoInRam: false });
    // Page aligned at 1 MiB − 4 KiB with a 1 MiB block: the text crosses the block boundary.
    const gpa = 1 * MiB - 4096;
    k.mem.write(gpa, Buffer.from(k.info.text + '\0', 'latin1'));
    const found = await findVmcoreinfo(k.mem, { blockBytes: 1 * MiB });
    expect(found.gpa).toBe(gpa);
    // A note-style copy at page offset 24 (after the NUL-padded name) is found too …
    const k2 = buildSyntheticKernel({ ramBytes: 64 * MiB, vmcoreinfoInRam: false });
    k2.mem.write(2 * MiB + 23, Buffer.from('\0' + k2.info.text + '\0', 'latin1'));
    expect((await findVmcoreinfo(k2.mem, { blockBytes: 1 * MiB })).gpa).toBe(2 * MiB + 24);
    // … but text anywhere else is not where the kernel puts it.
    const k3 = buildSyntheticKernel({ ramBytes: 64 * MiB, vmcoreinfoInRam: false });
    k3.mem.write(2 * MiB + 99, Buffer.from('\0' + k3.info.text + '\0', 'latin1'));
    await expect(findVmcoreinfo(k3.mem, { blockBytes: 1 * MiB })).rejects.toMatchObject({ code: 'VCV_ERR_VMCOREINFO_NOT_FOUND' });
  });

  it('scans the start of every range first, ZONE_NORMAL’s (above 4 GiB) before the others', async () => {
    const { scanOrder } = await import('../src/find-vmcoreinfo.js');
    const G = 1024 * MiB;
    expect(scanOrder([{ start: 0, end: 3 * G }, { start: 4 * G, end: 5 * G }], 64 * MiB)).toEqual([
      { start: 4 * G, end: 4 * G + 64 * MiB }, // where the 4–4.5 GiB test guests keep both copies (~9 MiB in)
      { start: 0, end: 64 * MiB },
      { start: 4 * G + 64 * MiB, end: 5 * G }, // ZONE_NORMAL, where GFP_KERNEL allocations come from
      { start: 64 * MiB, end: 3 * G },
    ]);
    expect(scanOrder([{ start: 0, end: 32 * MiB }], 64 * MiB)).toEqual([{ start: 0, end: 32 * MiB }]);
  });

  it('scans around pages the source cannot give (a kdump file’s excluded pages)', async () => {
    const { VcvError } = await import('@vicover/errors');
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB });
    const holes = new Set([0x200, 0x201, 0x999]); // pfns that read as "not dumped"
    const mem = k.mem;
    const src = Object.create(mem) as typeof mem;
    src.readSync = (gpa: number, b: Uint8Array, o: number, l: number) => {
      for (let p = Math.floor(gpa / 4096); p * 4096 < gpa + l; p++) {
        if (holes.has(p)) throw new VcvError('VCV_ERR_PAGE_NOT_DUMPED', `pfn ${p} excluded`, {});
      }
      mem.readSync(gpa, b, o, l);
    };
    src.read = async (gpa: number, b: Uint8Array, o: number, l: number) => src.readSync(gpa, b, o, l);
    const found = await findVmcoreinfo(src);
    expect(found.info.text).toBe(k.info.text);
  });

  it('a source that looks at pages in place (findInPages) yields the same candidates in the same order, reading no page whole', async () => {
    type Mem = ReturnType<typeof buildSyntheticKernel>['mem'];
    const inPlace = (mem: Mem) => {
      const stats = { readBytes: 0, finds: 0 };
      const src = Object.create(mem) as Mem & { findInPages: NonNullable<import('@vicover/core').MemorySource['findInPages']> };
      src.read = async (g: number, b: Uint8Array, o: number, l: number) => {
        stats.readBytes += l;
        return mem.read(g, b, o, l);
      };
      src.findInPages = async (start, end, needle, offs, max) => {
        stats.finds++;
        const pg = Buffer.alloc(4096);
        const hits: number[] = [];
        for (let a = start; a < end; a += 4096) {
          mem.readSync(a, pg, 0, 4096);
          for (const o of offs) {
            if (!Buffer.from(needle).equals(pg.subarray(o, o + needle.length))) continue;
            if (hits.length === max) return { hits, truncated: true };
            hits.push(a + o);
          }
        }
        return { hits, truncated: false };
      };
      return { src, stats };
    };
    // A decoy of another kernel low in RAM, and the first real copy made unreadable as text.
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB });
    const other = buildSyntheticKernel({ ramBytes: 256 * MiB, kernelOffset: 0x6000000n, osrelease: '5.10.0-decoy' });
    k.mem.write(0x100000, Buffer.from(other.info.text + '\0', 'latin1'));
    const validate = (i: Vmcoreinfo) => checkVmcoreinfoAgainstMemory(k.mem, i);
    const plain = await findVmcoreinfo(k.mem, { validate });
    const { src, stats } = inPlace(k.mem);
    const fast = await findVmcoreinfo(src, { validate });
    expect(fast.gpa).toBe(plain.gpa);
    expect(fast.rejected).toEqual(plain.rejected);
    expect(fast.info.text).toBe(k.info.text);
    expect(stats.finds).toBeGreaterThan(0);
    expect(stats.readBytes).toBe(0);
    // inPlace: false reads as before.
    const { src: src2, stats: stats2 } = inPlace(k.mem);
    expect((await findVmcoreinfo(src2, { validate, inPlace: false })).gpa).toBe(plain.gpa);
    expect(stats2.finds).toBe(0);
    // More hits than candidates left (needles not preceded by NUL, which are no candidates): that
    // block is read the ordinary way, with the same outcome.
    const k2 = buildSyntheticKernel({ ramBytes: 64 * MiB });
    for (let i = 0; i < 80; i++) k2.mem.write(0x200000 + i * 4096 + 23, Buffer.from('xOSRELEASE=junk', 'latin1'));
    const plain2 = await findVmcoreinfo(k2.mem);
    const { src: src3, stats: stats3 } = inPlace(k2.mem);
    const fast2 = await findVmcoreinfo(src3);
    expect(fast2.gpa).toBe(plain2.gpa);
    expect(fast2.info.text).toBe(k2.info.text);
    expect(stats3.readBytes).toBeGreaterThan(0);
  });

  it('a given VMCOREINFO that does not fit the memory is refused', async () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB });
    const other = buildSyntheticKernel({ ramBytes: 256 * MiB, kernelOffset: 0x6000000n });
    await expect(LinuxKernel.open(k.mem, { vmcoreinfo: Vmcoreinfo.parse(other.info.text) })).rejects.toSatisfy(isVcvError);
  });
});
