import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Bitmap, ElfWriter, KdumpWriter } from '@vicover/dumpfmt';
import { isVcvError } from '@vicover/errors';
import { openElfVmcore, openImage, openKdump, openRawImage, rawSegments, FOUR_GIB, PC_LOWMEM } from '../src/index.js';

const GiB = 1024 ** 3;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vcv-image-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** 64 pages; page p starts with its pfn (u32) and is otherwise filled with (p & 0xff); page 5 is zero. */
function ramBytes(pages = 64): Buffer {
  const b = Buffer.alloc(pages * 4096);
  for (let p = 0; p < pages; p++) {
    if (p === 5) continue;
    b.fill(p & 0xff, p * 4096, (p + 1) * 4096);
    b.writeUInt32LE(p, p * 4096);
  }
  return b;
}

async function rejectsCode(p: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  try {
    if (typeof p === 'function') p();
    else await p;
  } catch (e) {
    expect(isVcvError(e)).toBe(true);
    expect((e as { code: string }).code).toBe(code);
    return;
  }
  expect.unreachable(`expected ${code}`);
}

describe('raw RAM images', () => {
  it('maps layouts like QEMU pc', () => {
    expect(rawSegments(1 * GiB, 'flat')).toEqual([{ gpa: 0, memBytes: GiB, fileOffset: 0, fileBytes: GiB }]);
    expect(rawSegments(1 * GiB, 'pc')).toEqual([{ gpa: 0, memBytes: GiB, fileOffset: 0, fileBytes: GiB }]);
    const split = rawSegments(4.5 * GiB, 'auto');
    expect(split).toEqual([
      { gpa: 0, memBytes: PC_LOWMEM, fileOffset: 0, fileBytes: PC_LOWMEM },
      { gpa: FOUR_GIB, memBytes: 1.5 * GiB, fileOffset: PC_LOWMEM, fileBytes: 1.5 * GiB },
    ]);
    expect(rawSegments(3.5 * GiB, 'flat')).toHaveLength(1);
    expect(() => rawSegments(0, 'flat')).toThrow(expect.objectContaining({ code: 'VCV_ERR_IMAGE_LAYOUT' }));
    expect(() => rawSegments(4097, 'flat')).toThrow(expect.objectContaining({ code: 'VCV_ERR_IMAGE_LAYOUT' }));
    expect(() => rawSegments(4096, 'weird' as never)).toThrow(expect.objectContaining({ code: 'VCV_ERR_IMAGE_LAYOUT' }));
  });

  it('reads a flat file with positional reads and refuses addresses outside RAM', async () => {
    const file = path.join(dir, 'flat.ram');
    fs.writeFileSync(file, ramBytes());
    const src = openRawImage(file, { layout: 'flat' });
    expect(src.ranges).toEqual([{ start: 0, end: 64 * 4096 }]);
    expect(src.maxPfn).toBe(64);
    expect(src.notes).toEqual([]);
    const b = Buffer.alloc(8192);
    src.readSync(7 * 4096 - 4, b, 0, 8);
    expect([...b.subarray(0, 8)]).toEqual([6, 6, 6, 6, 7, 0, 0, 0]);
    await src.read(10 * 4096, b, 100, 4096);
    expect(b.readUInt32LE(100)).toBe(10);
    await rejectsCode(() => src.readSync(63 * 4096 + 1, b, 0, 4096), 'VCV_ERR_MEMORY_RANGE');
    await rejectsCode(src.read(-1, b, 0, 1), 'VCV_ERR_MEMORY_RANGE');
    await rejectsCode(() => src.readSync(0, b, 8000, 1000), 'VCV_ERR_MEMORY_RANGE');
    await src.close();
    await src.close();
    await rejectsCode(() => src.readSync(0, b, 0, 1), 'VCV_ERR_IO');
  });

  it('splits a ≥ 3.5 GiB file around the PCI hole (sparse file, never read whole)', async () => {
    const file = path.join(dir, 'pc.ram');
    const fd = fs.openSync(file, 'w');
    fs.ftruncateSync(fd, 4 * GiB);
    fs.writeSync(fd, Buffer.from('LOWEND!!'), 0, 8, PC_LOWMEM - 8);
    fs.writeSync(fd, Buffer.from('HIGHMEM!'), 0, 8, PC_LOWMEM);
    fs.closeSync(fd);
    const src = openRawImage(file, { layout: 'auto' });
    expect(src.description).toContain('layout pc');
    expect(src.ranges).toEqual([
      { start: 0, end: PC_LOWMEM },
      { start: FOUR_GIB, end: FOUR_GIB + GiB },
    ]);
    expect(src.maxPfn).toBe((FOUR_GIB + GiB) / 4096);
    const b = Buffer.alloc(8);
    src.readSync(PC_LOWMEM - 8, b, 0, 8);
    expect(b.toString()).toBe('LOWEND!!');
    await src.read(FOUR_GIB, b, 0, 8);
    expect(b.toString()).toBe('HIGHMEM!');
    await rejectsCode(() => src.readSync(PC_LOWMEM, b, 0, 8), 'VCV_ERR_MEMORY_RANGE');
    await rejectsCode(() => src.readSync(PC_LOWMEM - 4, b, 0, 8), 'VCV_ERR_MEMORY_RANGE');
    await src.close();
    const flat = openRawImage(file, { layout: 'flat' });
    flat.readSync(PC_LOWMEM, b, 0, 8);
    expect(b.toString()).toBe('HIGHMEM!');
    await flat.close();
  });

  it('reports a missing file as VCV_ERR_INPUT_NOT_FOUND', async () => {
    await rejectsCode(() => openRawImage(path.join(dir, 'nope.ram')), 'VCV_ERR_INPUT_NOT_FOUND');
  });
});

describe('vmcore images via dumpfmt', () => {
  const pages = 64;
  const ram = new Bitmap(pages).setRange(0, 32).setRange(40, 64); // a hole at 32…40
  const dump = ram.clone().clearRange(20, 24); // pages 20…23 excluded
  const note = { name: 'VMCOREINFO', type: 0, desc: Buffer.from('OSRELEASE=6.1.0\nPAGESIZE=4096\n') };
  const data = ramBytes(pages);

  async function writeAll(w: { writePages(pfn: number, d: Buffer): Promise<unknown>; finish(): Promise<unknown> }) {
    for (const [s, e] of dump.runs()) await w.writePages(s, data.subarray(s * 4096, e * 4096));
    await w.finish();
  }

  it('opens an ELF vmcore: PT_LOAD ranges, notes, reads', async () => {
    const file = path.join(dir, 'x.elf');
    await writeAll(await ElfWriter.create({ path: file, maxPfn: pages, ram, dump, notes: [note], mergeGapPages: 0 }));
    const src = await openElfVmcore(file);
    expect(src.notes.map((n) => n.name)).toEqual(['VMCOREINFO']);
    expect(src.ranges).toEqual([
      { start: 0, end: 20 * 4096 },
      { start: 24 * 4096, end: 32 * 4096 },
      { start: 40 * 4096, end: 64 * 4096 },
    ]);
    const b = Buffer.alloc(4096);
    await src.read(45 * 4096, b, 0, 4096);
    expect(b.readUInt32LE(0)).toBe(45);
    await rejectsCode(src.read(21 * 4096, b, 0, 16), 'VCV_ERR_MEMORY_RANGE');
    await src.close();
    const auto = await openImage(file);
    expect(auto.description).toMatch(/^elf /);
    await auto.close();
  });

  it('opens a kdump file: RAM from the 1st bitmap, excluded pages are not dumped', async () => {
    const file = path.join(dir, 'x.kdump');
    await writeAll(
      await KdumpWriter.create({
        path: file,
        maxPfn: pages,
        ram,
        dump,
        compression: 'zlib',
        excludeZero: true,
        notes: [note],
        utsname: { machine: 'x86_64' },
        physBase: 0n,
        dumpLevel: 31,
        nrCpus: 1,
      } as never),
    );
    for (const src of [await openKdump(file), await openImage(file)]) {
      expect(src.ranges).toEqual([
        { start: 0, end: 32 * 4096 },
        { start: 40 * 4096, end: 64 * 4096 },
      ]);
      expect(src.notes[0]!.desc.toString()).toContain('OSRELEASE=6.1.0');
      const b = Buffer.alloc(8192);
      src.readSync(4 * 4096, b, 0, 8192); // page 4 and the zero page 5
      expect(b.readUInt32LE(0)).toBe(4);
      expect(b.subarray(4096).every((x) => x === 0)).toBe(true);
      await rejectsCode(() => src.readSync(21 * 4096, b, 0, 16), 'VCV_ERR_PAGE_NOT_DUMPED');
      await rejectsCode(() => src.readSync(33 * 4096, b, 0, 16), 'VCV_ERR_MEMORY_RANGE');
      await src.close();
    }
    const raw = path.join(dir, 'x.ram');
    fs.writeFileSync(raw, data);
    const r = await openImage(raw);
    expect(r.description).toMatch(/^raw /);
    await r.close();
    await rejectsCode(openKdump(path.join(dir, 'x.elf')), 'VCV_ERR_FORMAT_UNKNOWN');
  });
});
