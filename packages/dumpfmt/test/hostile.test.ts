/**
 * Truncated and corrupted input: every failure is a coded VcvError, never a bare exception, never a hang.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VcvError } from '@vicover/errors';
import { ElfCoreReader, KdumpReader, openDump, type DumpReader } from '../src/index.js';
import { FlatSource } from '../src/source.js';
import { encodeFlatHeader, encodeFlatRecordHeader } from '../src/kdump/flat.js';
import { pageSets, writeElf, writeKdump } from './helpers/dumps.js';
import { MemSource } from './helpers/memsource.js';
import { makeImage, PS, rng } from './helpers/pages.js';
import { tempDir } from './helpers/tmp.js';

const dir = tempDir();
const MAXPFN = 400;
const image = makeImage(MAXPFN, 51);
const { ram, dump } = pageSets(MAXPFN, 12);

let kdumpBytes: Buffer;
let kdumpDataStart = 0;
let elfBytes: Buffer;
let elfDataStart = 0;

/** Flatten a seekable file the way makedumpfile -F would (records of random sizes, shuffled, some rewritten). */
function flatten(buf: Buffer, seed: number): Buffer {
  const r = rng(seed);
  const recs: [number, number][] = [];
  for (let p = 0; p < buf.length; ) {
    const n = Math.min(buf.length - p, 1 + Math.floor(r() * 20000));
    recs.push([p, n]);
    p += n;
  }
  // shuffle, then rewrite a few ranges with their real content again (later records win)
  for (let i = recs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [recs[i], recs[j]] = [recs[j]!, recs[i]!];
  }
  for (let k = 0; k < 5; k++) {
    const s = Math.floor(r() * (buf.length - 100));
    recs.push([s, 1 + Math.floor(r() * 99)]);
  }
  const parts: Buffer[] = [encodeFlatHeader()];
  for (const [p, n] of recs) parts.push(encodeFlatRecordHeader({ offset: BigInt(p), size: BigInt(n) }), buf.subarray(p, p + n));
  parts.push(encodeFlatRecordHeader({ offset: -1n, size: -1n }));
  return Buffer.concat(parts);
}

function openKdumpMem(buf: Buffer): KdumpReader {
  return KdumpReader.fromSource('mem', new MemSource(buf), false);
}

/** Open and touch everything a consumer would; returns the reader or throws. */
function exercise(open: () => DumpReader): void {
  const r = open();
  try {
    void r.notes;
    void r.vmcoreinfo;
    let n = 0;
    for (const [s, e] of r.dumpedRuns()) {
      for (let p = s; p < e && n < 50; p++, n++) {
        try {
          r.readPage(p);
        } catch (e) {
          if (!(e instanceof VcvError)) throw e;
        }
      }
    }
    if (r instanceof KdumpReader) r.lostPages();
  } finally {
    r.close();
  }
}

function expectCoded(fn: () => void, label: string): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (!(e instanceof VcvError)) throw new Error(`${label}: ${String(e)} is not a VcvError`, { cause: e });
    return e.code;
  }
}

describe('setup', () => {
  it('writes the sample dumps', async () => {
    const kp = join(dir, 'sample.kdump');
    const w = await writeKdump(kp, image, { compression: 'zlib', excludeZero: true, ram, dump });
    await w.finish();
    kdumpBytes = readFileSync(kp);
    // the end of the descriptor table (the writer pads the data area to 4 KiB; that padding is not needed)
    const kr = KdumpReader.openSync(kp);
    kdumpDataStart = kr.dataStart;
    expect(kdumpDataStart).toBe(w.layout.descOffset + 24 * dump.count());
    kr.close();
    const ep = join(dir, 'sample.elf');
    const e = await writeElf(ep, image, { excludeZero: false, ram, dump });
    await e.finish();
    elfBytes = readFileSync(ep);
    const r = ElfCoreReader.openSync(ep);
    elfDataStart = Math.min(...r.loads.map((l) => l.offset));
    r.close();
  });
});

describe('truncation', () => {
  it('kdump: a cut anywhere before the data area gives a coded error', () => {
    const codes = new Set<string>();
    for (let cut = 0; cut < kdumpDataStart; cut++) {
      const code = expectCoded(() => openKdumpMem(kdumpBytes.subarray(0, cut)).close(), `cut ${cut}`);
      expect(code, `cut at ${cut} opened without error`).toBeDefined();
      codes.add(code!);
    }
    expect([...codes].sort()).toEqual(['VCV_ERR_FORMAT_TRUNCATED']);
  });

  it('kdump: a cut in the data area opens, reports exactly the lost pages, and reads the rest', () => {
    const full = openKdumpMem(kdumpBytes);
    const r0 = rng(3);
    const cuts = [kdumpDataStart, kdumpDataStart + 1, kdumpBytes.length - 1];
    for (let i = 0; i < 40; i++) cuts.push(kdumpDataStart + Math.floor(r0() * (kdumpBytes.length - kdumpDataStart)));
    for (const cut of cuts) {
      const r = openKdumpMem(kdumpBytes.subarray(0, cut));
      const lost = r.lostPages();
      for (const [s, e] of dump.runs()) {
        for (let p = s; p < e; p++) {
          const d = full.pageDesc(p)!;
          const isLost = d.offset + d.size > cut;
          expect(lost.get(p), `cut ${cut} pfn ${p}`).toBe(isLost);
          if (isLost) {
            expect(() => r.readPage(p)).toThrow(expect.objectContaining({ code: 'VCV_ERR_PAGE_NOT_DUMPED', details: expect.objectContaining({ reason: 'truncated' }) }));
          } else {
            expect(r.readPage(p).equals(image.subarray(p * PS, (p + 1) * PS))).toBe(true);
          }
        }
      }
      r.close();
    }
    full.close();
  });

  it('kdump: real files cut short behave the same through openDump', async () => {
    for (const cut of [0, 5, 300, 464, 4096 + 50, kdumpDataStart - 1]) {
      const p = join(dir, `cut-${cut}.kdump`);
      writeFileSync(p, kdumpBytes.subarray(0, cut));
      await expect(openDump(p)).rejects.toBeInstanceOf(VcvError);
    }
    const p = join(dir, 'cut-data.kdump');
    writeFileSync(p, kdumpBytes.subarray(0, kdumpDataStart + 5000));
    const r = await openDump(p);
    expect(r.format).toBe('kdump');
    r.close();
  });

  it('ELF: a cut in the headers or notes gives a coded error; a cut in the data reads what is there', () => {
    for (let cut = 0; cut < elfDataStart; cut++) {
      const code = expectCoded(() => ElfCoreReader.fromSource('mem', new MemSource(elfBytes.subarray(0, cut))).close(), `cut ${cut}`);
      // the page-alignment padding after the notes is not needed
      if (code === undefined) {
        const r = ElfCoreReader.fromSource('mem', new MemSource(elfBytes.subarray(0, cut)));
        expect(r.truncated).toBe(true);
        r.close();
        continue;
      }
      expect(code).toMatch(/VCV_ERR_FORMAT_(TRUNCATED|UNKNOWN)/);
    }
    const r0 = rng(4);
    for (let i = 0; i < 30; i++) {
      const cut = elfDataStart + Math.floor(r0() * (elfBytes.length - elfDataStart));
      const r = ElfCoreReader.fromSource('mem', new MemSource(elfBytes.subarray(0, cut)));
      expect(r.truncated).toBe(true);
      for (const l of r.loads) {
        for (let k = 0; k < l.memsz / PS; k++) {
          const pfn = Number(l.paddr) / PS + k;
          const inFile = l.offset + (k + 1) * PS <= cut;
          if (inFile) expect(r.readPage(pfn).equals(dump.get(pfn) ? image.subarray(pfn * PS, (pfn + 1) * PS) : Buffer.alloc(PS))).toBe(true);
          else expect(() => r.readPage(pfn)).toThrow(expect.objectContaining({ code: 'VCV_ERR_PAGE_NOT_DUMPED' }));
        }
      }
      r.close();
    }
  });

  it('flattened: cuts give a coded error or an incomplete stream', () => {
    const flat = flatten(kdumpBytes, 1);
    const r0 = rng(5);
    for (let i = 0; i < 300; i++) {
      const cut = i < 100 ? i * 41 : Math.floor(r0() * flat.length);
      expectCoded(() => exercise(() => KdumpReader.fromSource('mem', FlatSource.open(new MemSource(flat.subarray(0, cut))), true)), `flat cut ${cut}`);
    }
  });
});

describe('flattened reading', () => {
  it('a shuffled, partly rewritten flattened file reads like the seekable one', () => {
    const flat = flatten(kdumpBytes, 7);
    const src = FlatSource.open(new MemSource(flat));
    expect(src.complete).toBe(true);
    expect(src.size).toBe(kdumpBytes.length);
    const all = Buffer.alloc(src.size);
    expect(src.readInto(all, 0, all.length, 0)).toBe(all.length);
    expect(all.equals(kdumpBytes)).toBe(true);
    const r = KdumpReader.fromSource('mem', src, true);
    expect(r.format).toBe('kdump-flattened');
    for (const [s, e] of dump.runs()) for (let p = s; p < e; p++) expect(r.readPage(p).equals(image.subarray(p * PS, (p + 1) * PS))).toBe(true);
    r.close();
  });

  it('openDump reads flattened kdump and flattened ELF files', async () => {
    const p1 = join(dir, 'f.kdump');
    writeFileSync(p1, flatten(kdumpBytes, 8));
    const r1 = await openDump(p1);
    expect(r1.format).toBe('kdump-flattened');
    expect(r1.readPage(dump.nextSet(0)).equals(image.subarray(dump.nextSet(0) * PS, (dump.nextSet(0) + 1) * PS))).toBe(true);
    r1.close();
    const p2 = join(dir, 'f.elf');
    writeFileSync(p2, flatten(elfBytes, 9));
    const r2 = await openDump(p2);
    expect(r2.format).toBe('elf');
    const pfn = dump.nextSet(10);
    expect(r2.readPage(pfn).equals(image.subarray(pfn * PS, (pfn + 1) * PS))).toBe(true);
    r2.close();
  });
});

describe('fuzz: corrupted headers', () => {
  function mutate(buf: Buffer, limit: number, r: () => number): Buffer {
    const b = Buffer.from(buf);
    const n = 1 + Math.floor(r() * 4);
    for (let i = 0; i < n; i++) {
      const at = Math.floor(r() * limit);
      const mode = r();
      if (mode < 0.4) b[at] ^= 1 << Math.floor(r() * 8);
      else if (mode < 0.7) b[at] = Math.floor(r() * 256);
      else if (mode < 0.85) b.writeUInt32LE((r() * 2 ** 32) >>> 0, Math.min(at & ~3, limit - 4));
      else b.fill(0xff, at, Math.min(limit, at + 8));
    }
    return b;
  }

  // Interesting fields get extra attention: header words, sub-header, descriptors.
  it('kdump: 4000 mutations of the header/bitmap/descriptor region', () => {
    const r = rng(2024);
    const codes: Record<string, number> = {};
    for (let i = 0; i < 4000; i++) {
      const limit = i % 2 === 0 ? 4096 + 104 : kdumpDataStart;
      const b = mutate(kdumpBytes, limit, r);
      const code = expectCoded(() => exercise(() => openKdumpMem(b)), `mutation ${i}`) ?? 'ok';
      codes[code] = (codes[code] ?? 0) + 1;
    }
    expect(codes.ok).toBeGreaterThan(0);
    expect(Object.keys(codes).length).toBeGreaterThan(2);
  });

  it('ELF: 3000 mutations of the headers and notes', () => {
    const r = rng(77);
    for (let i = 0; i < 3000; i++) {
      const b = mutate(elfBytes, elfDataStart, r);
      expectCoded(() => exercise(() => ElfCoreReader.fromSource('mem', new MemSource(b))), `mutation ${i}`);
    }
  });

  it('flattened: 1500 mutations of record headers', () => {
    const flat = flatten(kdumpBytes, 3);
    const r = rng(99);
    for (let i = 0; i < 1500; i++) {
      const b = mutate(flat, Math.min(flat.length, 60000), r);
      expectCoded(() => exercise(() => KdumpReader.fromSource('mem', FlatSource.open(new MemSource(b)), true)), `mutation ${i}`);
    }
  });

  it('garbage and foreign files are FORMAT_UNKNOWN / UNSUPPORTED', async () => {
    const p = join(dir, 'garbage.bin');
    writeFileSync(p, Buffer.from('hello world, not a dump'));
    await expect(openDump(p)).rejects.toMatchObject({ code: 'VCV_ERR_FORMAT_UNKNOWN' });
    // an ELF executable (not a core)
    await expect(openDump(process.execPath)).rejects.toMatchObject({ code: 'VCV_ERR_FORMAT_UNSUPPORTED' });
    // an ELF core with sections but no program headers (the Xen dump-core shape)
    const x = Buffer.from(elfBytes.subarray(0, 64));
    x.writeUInt16LE(0, 56); // e_phnum
    x.writeBigUInt64LE(64n, 40); // e_shoff
    x.writeUInt16LE(3, 60); // e_shnum
    const px = join(dir, 'xen-like.core');
    writeFileSync(px, Buffer.concat([x, Buffer.alloc(4096)]));
    await expect(openDump(px)).rejects.toMatchObject({ code: 'VCV_ERR_FORMAT_UNSUPPORTED', message: expect.stringMatching(/no program headers/) });
    await expect(openDump(join(dir, 'does-not-exist'))).rejects.toMatchObject({ code: 'VCV_ERR_INPUT_NOT_FOUND' });
  });
});

