// The library and the plugin against real crashed Debian 6.1 guests (test/guest, docs/guests.md),
// with makedumpfile 1.7.2's output as ground truth. Builds the images on first use (~1 min each).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KdumpReader } from '@vicover/dumpfmt';
import type { MemorySource } from '@vicover/core';
import { openImage, openRawImage } from '../../../packages/image/src/index.js';
// @ts-ignore — plain ESM helpers without type declarations
import { ensureImage, readMeta } from '../../../test/guest/images.mjs';
import { LinuxKernel } from '../src/kernel.js';
import { findPanicLine, formatDmesg } from '../src/printk.js';
import { popcount, type ClassifyResult } from '../src/classify.js';
import { linuxOnCrash, linuxSelectPages } from '../src/plugin.js';
import { fakeSession, fullPageSet } from './helpers.js';
import { missingCommands } from '../../../test/tools/commands.mjs';

const PANIC = 'Kernel panic - not syncing: sysrq triggered crash';

const canBuild = missingCommands(['qemu-system-x86_64', 'makedumpfile']).length === 0;

interface Md {
  freePages: number;
  nonPrivateCachePages: number;
  privateCachePages: number;
  userPages: number;
  zeroPages: number;
  hwpoisonPages: number;
  offlinePages: number;
  excludedPages: number;
}

function isSet(bits: Uint8Array, pfn: number): boolean {
  return pfn >> 3 < bits.length && (bits[pfn >> 3]! & (1 << (pfn & 7))) !== 0;
}

for (const name of ['small4', 'mixed5']) {
  describe.skipIf(!canBuild)(`real guest ${name}`, () => {
    let dir: string;
    let meta: any;
    let md: { d31: Md; d16: Md };
    let src: MemorySource;
    let kernel: LinuxKernel;
    let openMs: number;
    let r31: ClassifyResult;

    beforeAll(async () => {
      dir = await ensureImage(name);
      meta = await readMeta(dir);
      md = JSON.parse(fs.readFileSync(path.join(dir, 'makedumpfile.json'), 'utf8'));
      src = openRawImage(path.join(dir, 'ram.img'), { layout: meta.ram.layout });
      const t0 = performance.now();
      kernel = await LinuxKernel.open(src);
      openMs = performance.now() - t0;
      r31 = await kernel.classify({ dumpLevel: 31 });
    }, 30 * 60_000);
    afterAll(async () => {
      await src?.close();
    });

    it('finds VMCOREINFO by scanning raw RAM, identical to the guest’s note', async () => {
      expect(kernel.found.origin).toBe('scan');
      const expected = fs.readFileSync(path.join(dir, 'vmcoreinfo.txt'), 'latin1');
      expect(kernel.info.text).toBe(expected.endsWith('\n') ? expected : expected + '\n');
      if (meta.vmcoreinfo?.elfHasNote) {
        const elf = await openImage(path.join(dir, 'vmcore.elf'));
        const note = elf.notes.find((n) => n.name === 'VMCOREINFO')!;
        expect(note.desc.toString('latin1').replace(/\0+$/, '')).toBe(kernel.info.text);
        await elf.close();
      }
      console.log(`${name}: VMCOREINFO at 0x${kernel.found.gpa!.toString(16)} after scanning ${kernel.found.scannedBytes} bytes; open+check ${openMs.toFixed(0)} ms`);
    });

    it('walks the guest’s page tables (4- or 5-level) and reads utsname', () => {
      expect(kernel.paging.levels).toBe(meta.pagingLevels);
      expect(kernel.utsname()).toMatchObject({ sysname: 'Linux', release: meta.kernel.osrelease, machine: 'x86_64' });
      expect(kernel.physBase.toString()).toBe(meta.vmcoreinfo.phys_base);
    });

    it('classifies exactly like makedumpfile -d 31 (every class) and -d 16 (free)', async () => {
      expect(r31.counts).toEqual({
        free: md.d31.freePages,
        cache: md.d31.nonPrivateCachePages,
        privateCache: md.d31.privateCachePages,
        user: md.d31.userPages,
        offline: md.d31.offlinePages,
        hwpoison: md.d31.hwpoisonPages,
      });
      expect(r31.anomalies).toEqual({ badBuddyOrder: 0, badCompoundOrder: 0 });
      const r16 = await kernel.classify({ dumpLevel: 16 });
      expect(r16.counts.free).toBe(md.d16.freePages);
      expect(r16.excludedPages).toBe(md.d16.excludedPages);
      // Zero pages are found by content at write time; counted among the pages we keep, they match too.
      const z = await kernel.countZeroPages(r31.excluded);
      expect(z.zeroPages).toBe(md.d31.zeroPages);
      expect(r31.excludedPages + z.zeroPages).toBe(md.d31.excludedPages);
      console.log(
        `${name}: -d 31 ${JSON.stringify(r31.counts)} zero ${z.zeroPages}; refcount-zero rule would drop ${r31.refcountZero.extraPages} more ` +
          `(${r31.refcountZero.tailPages} tails, ${r31.refcountZero.typedPages} typed); ${r31.ramPages} pages in ${r31.elapsedMs.toFixed(0)} ms`,
      );
    });

    it('drops no page makedumpfile keeps, and keeps none it drops (md31.kdump bitmaps)', () => {
      const k = KdumpReader.openSync(path.join(dir, 'md31.kdump'));
      try {
        let droppedKept = 0;
        let keptDropped = 0;
        for (let pfn = 0; pfn < Math.max(k.maxPfn, r31.maxPfn); pfn++) {
          const mdRam = pfn < k.maxPfn && k.ram.get(pfn);
          const mdKeeps = pfn < k.maxPfn && k.dump.get(pfn);
          const weDrop = isSet(r31.excluded, pfn);
          if (mdKeeps && weDrop) droppedKept++;
          if (mdRam && !mdKeeps && !weDrop) keptDropped++;
        }
        expect(droppedKept).toBe(0);
        expect(keptDropped).toBe(0);
        expect(popcount(r31.excluded)).toBe(r31.excludedPages);
      } finally {
        k.close();
      }
    });

    it('reads the panic line and the same log as makedumpfile --dump-dmesg, from raw RAM', async () => {
      const log = await kernel.printk();
      expect(findPanicLine(log.records)).toBe(PANIC);
      expect(formatDmesg(log.records)).toBe(fs.readFileSync(path.join(dir, 'dmesg.txt'), 'latin1'));
    });

    it('gives the same answers from QEMU’s ELF and makedumpfile’s kdump file', async () => {
      for (const f of ['vmcore.elf', 'md31.kdump']) {
        const s = await openImage(path.join(dir, f));
        try {
          const k = await LinuxKernel.open(s);
          expect(k.info.text).toBe(kernel.info.text);
          expect(k.found.origin).toBe(f === 'vmcore.elf' && !meta.vmcoreinfo?.elfHasNote ? 'scan' : 'note');
          const r = await k.classify({ dumpLevel: 31 });
          expect(r.counts).toEqual(r31.counts);
          expect((await k.triage(5)).panic).toBe(PANIC);
        } finally {
          await s.close();
        }
      }
    });

    it('runs as a plugin: triage at onCrash, makedumpfile’s selection at selectPages', async () => {
      const f = fakeSession(src);
      const t0 = performance.now();
      await linuxOnCrash(f.session);
      const triageMs = performance.now() - t0;
      expect(f.warnings).toEqual([]);
      expect(f.triage?.panicLine).toBe(PANIC);
      const pages = await linuxSelectPages(fullPageSet(src, 31), f.session);
      expect(pages.fallback).toBeUndefined();
      expect(pages.dump.count()).toBe(pages.ram.count() - r31.excludedPages);
      console.log(`${name}: plugin triage (VMCOREINFO scan + check + printk) ${triageMs.toFixed(0)} ms`);
    });
  });
}

/** Sparse copy of small4's RAM with bytes flipped: every run falls back to all RAM with a coded reason. */
describe.skipIf(!canBuild)('real guest small4, corrupted copies', () => {
  let dir: string;
  let tmp: string;
  let copy: string;
  let good: LinuxKernel;
  let goodSrc: MemorySource;
  let meta: any;

  beforeAll(async () => {
    dir = await ensureImage('small4');
    meta = await readMeta(dir);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vcv-corrupt-'));
    copy = path.join(tmp, 'ram.img');
    execFileSync('cp', ['--sparse=always', path.join(dir, 'ram.img'), copy]);
    goodSrc = openRawImage(copy, { layout: meta.ram.layout });
    good = await LinuxKernel.open(goodSrc);
  }, 30 * 60_000);
  afterAll(async () => {
    await goodSrc?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Patch bytes of the copy (file offset = GPA, small4 is flat), run the plugin, restore. */
  async function withPatches(patches: { gpa: number; bytes: Uint8Array }[], check: (r: Awaited<ReturnType<typeof runPlugin>>) => void) {
    const fd = fs.openSync(copy, 'r+');
    const saved = patches.map((p) => {
      const b = Buffer.alloc(p.bytes.length);
      fs.readSync(fd, b, 0, b.length, p.gpa);
      fs.writeSync(fd, p.bytes, 0, p.bytes.length, p.gpa);
      return { gpa: p.gpa, bytes: b };
    });
    try {
      check(await runPlugin());
    } finally {
      for (const s of saved) fs.writeSync(fd, s.bytes, 0, s.bytes.length, s.gpa);
      fs.closeSync(fd);
    }
  }

  async function runPlugin() {
    const s = openRawImage(copy, { layout: meta.ram.layout });
    try {
      const f = fakeSession(s);
      await linuxOnCrash(f.session);
      const pages = await linuxSelectPages(fullPageSet(s, 31), f.session);
      return { f, pages };
    } finally {
      await s.close();
    }
  }

  const xorByte = (gpa: number, x: number) => {
    const b = Buffer.alloc(1);
    goodSrc.readSync(gpa, b, 0, 1);
    return { gpa, bytes: Uint8Array.of(b[0]! ^ x) };
  };

  it('VMCOREINFO text: one copy corrupt → the other is used (with a warning); both → full dump', async () => {
    const copies: { offset: number }[] = meta.vmcoreinfo.ramScanCopies;
    expect(copies).toHaveLength(2);
    const at = good.info.text.indexOf('SYMBOL(init_top_pgt)=') + 'SYMBOL(init_top_pgt)='.length + 8;
    await withPatches([xorByte(copies[0]!.offset + at, 0x01)], ({ f, pages }) => {
      expect(pages.fallback).toBeUndefined();
      expect(f.warnings.map((w) => w.code)).toEqual(['VCV_ERR_VMCOREINFO_INVALID']);
      expect(f.warnings[0]!.message).toMatch(/rejecting: scan at 0x/);
    });
    await withPatches(
      copies.map((c) => xorByte(c.offset + at, 0x01)),
      ({ f, pages }) => {
        expect(pages.fallback).toMatchObject({ plugin: 'linux', code: 'VCV_ERR_VMCOREINFO_NOT_FOUND' });
        expect(f.warnings[0]!.code).toBe('VCV_ERR_VMCOREINFO_NOT_FOUND');
        expect(pages.dump.count()).toBe(pages.ram.count());
      },
    );
  });

  it('page tables: a garbled vmemmap entry in the top-level table → full dump', async () => {
    const levels = good.paging.levels;
    const base = good.sections().vmemmapBase!;
    const idx = Number((base >> BigInt(12 + 9 * (levels - 1))) & 0x1ffn);
    const entry = good.paging.rootPa + idx * 8;
    await withPatches([xorByte(entry + 4, 0x80)], ({ pages }) => {
      // Bit 39 of the entry: the table address moves 512 GiB away, outside RAM.
      expect(pages.fallback).toMatchObject({ plugin: 'linux', code: 'VCV_ERR_INTROSPECTION' });
      expect(pages.fallback!.reason).toMatch(/outside guest RAM|not present/);
      expect(pages.dump.count()).toBe(pages.ram.count());
    });
  });

  it('mem_section: a section whose map points elsewhere → full dump', async () => {
    const layout = good.sectionLayout;
    // Section 1's entry: root 0's array + 1 × SIZE(mem_section).
    const rootPtr = good.kmem.u64(layout.rootArray);
    const entry = good.paging.translate(rootPtr + BigInt(layout.sizeofMemSection + layout.offSectionMemMap));
    await withPatches([xorByte(entry + 3, 0x10)], ({ pages }) => {
      expect(pages.fallback).toMatchObject({ plugin: 'linux', code: 'VCV_ERR_INTROSPECTION' });
      expect(pages.fallback!.reason).toMatch(/vmemmap base/);
    });
  });

  it('struct pages: an impossible buddy order, or a giant compound page → full dump', async () => {
    const base = good.sections().vmemmapBase!;
    // Find a free buddy head among the first pages.
    const L = good.pageLayout;
    let head = -1;
    const buf = new Uint8Array(L.size);
    for (let pfn = 4096; pfn < 65536 && head < 0; pfn++) {
      good.kmem.readSync(base + BigInt(pfn * L.size), buf, 0, L.size);
      if (new DataView(buf.buffer).getInt32(L.offMapcount, true) === L.buddyType) head = pfn;
    }
    expect(head).toBeGreaterThan(0);
    const privatePa = good.paging.translate(base + BigInt(head * L.size + L.offPrivate));
    await withPatches([{ gpa: privatePa, bytes: Uint8Array.of(40) }], ({ pages }) => {
      expect(pages.fallback).toMatchObject({ code: 'VCV_ERR_INTROSPECTION' });
      expect(pages.fallback!.reason).toMatch(/impossible values/);
    });
    // pfn 0 becomes the anonymous head of a 2^18-page compound page: most of RAM would go as "user".
    const p0 = good.paging.translate(base);
    const flags = Buffer.alloc(8);
    flags.writeBigUInt64LE(BigInt(L.headMaskLo));
    const order = L.compoundOrder.kind === 'tail-byte' ? L.compoundOrder.offset : 17;
    await withPatches(
      [
        { gpa: p0 + L.offFlags, bytes: flags },
        { gpa: p0 + L.offMapping, bytes: Uint8Array.of(1) },
        { gpa: p0 + L.size + order, bytes: Uint8Array.of(18) },
      ],
      ({ pages }) => {
        expect(pages.fallback).toMatchObject({ code: 'VCV_ERR_INTROSPECTION' });
        expect(pages.fallback!.reason).toMatch(/not believable/);
        expect(pages.dump.count()).toBe(pages.ram.count());
      },
    );
  });
});
