import { describe, expect, it } from 'vitest';
import { Bitmap } from '@vicover/dumpfmt';
import { isVcvError } from '@vicover/errors';
import { LinuxKernel } from '../src/kernel.js';
import { applyExclusions, popcount, setBits, type ClassifyResult } from '../src/classify.js';
import { buildSyntheticKernel, type SyntheticKernel } from '../src/synth/index.js';
import { SIZE_2M } from '../src/paging.js';

const MiB = 1024 * 1024;
const FILE_MAPPING = 0xffff888000100000n;
const ANON_MAPPING = 0xffff888000200000n | 1n;

/** A guest with one page (or block) of every kind the classifier knows. */
function scenario(levels: 4 | 5 = 4): SyntheticKernel {
  const k = buildSyntheticKernel({ ramBytes: 256 * MiB, levels, physBase: 0x200000n * 0n, kernelOffset: 0x2000000n });
  // free buddy blocks: 1 + 8 + 1024 pages
  k.addFreeBlock(4096, 0);
  k.addFreeBlock(8192, 3);
  k.addFreeBlock(16384, 10);
  // a buddy head with an order ≥ LENGTH(zone.free_area): rejected, kept
  k.setPage(20000, { mapcount: -129, private: 11n, refcount: 0 });
  // a slab page whose _mapcount happens to equal the buddy value: not free
  k.setPage(21000, { flags: k.flags('slab'), mapcount: -129, private: 0n, refcount: 1 });
  k.setPage(22000, { flags: k.flags('lru'), mapping: FILE_MAPPING, refcount: 1 });
  k.setPage(22001, { flags: k.flags('lru', 'private'), mapping: FILE_MAPPING, refcount: 1 });
  k.setPage(22002, { flags: k.flags('swapcache', 'swapbacked'), mapping: FILE_MAPPING, refcount: 1 });
  k.setPage(22003, { flags: k.flags('swapcache'), mapping: FILE_MAPPING, refcount: 1 }); // not cache: swapbacked missing
  k.setPage(22004, { flags: k.flags('lru', 'swapbacked'), mapping: ANON_MAPPING, refcount: 1, mapcount: 0 });
  k.addCompound(48 * 512, 9, { flags: k.flags('lru', 'swapbacked'), mapping: ANON_MAPPING, refcount: 1, mapcount: 0 }); // THP
  k.addCompound(49 * 512, 2, { flags: k.flags('lru'), mapping: FILE_MAPPING, refcount: 1 }); // large folio in the page cache
  k.addCompound(51 * 512, 9, { refcount: 1 }, 2); // hugetlb (compound_dtor = HUGETLB_PAGE_DTOR)
  k.addCompound(53 * 512, 2, { flags: k.flags('slab'), refcount: 1 }); // slab compound: kept with its tails
  k.setPage(30000, { flags: k.flags('hwpoison'), refcount: 1 });
  k.setPage(30001, { mapcount: -257, refcount: 1 }); // offline (balloon)
  k.setPage(30002, { mapcount: -1, refcount: 0 }); // free on a per-cpu list: refcount 0, not buddy
  k.setPage(30003, { mapcount: -513, refcount: 0 }); // typed (page table) page with refcount 0
  k.addCompound(31001, 2, { mapping: ANON_MAPPING, refcount: 1 }); // misaligned order: treated as order 0
  return k;
}

async function classify(k: SyntheticKernel, dumpLevel: number, rule: 'buddy' | 'refcount-zero' = 'buddy'): Promise<ClassifyResult> {
  const lk = await LinuxKernel.open(k.mem);
  return lk.classify({ dumpLevel, rule });
}

const Z = { cache: 0, privateCache: 0, user: 0, free: 0, offline: 0, hwpoison: 0 };

describe('classification (makedumpfile __exclude_unnecessary_pages rules)', () => {
  it.each([
    [31, { ...Z, free: 1033, cache: 6, privateCache: 1, user: 1026, hwpoison: 1, offline: 1 }],
    [16, { ...Z, free: 1033, hwpoison: 1, offline: 1 }],
    [2, { ...Z, cache: 6, hwpoison: 1, offline: 1 }],
    [4, { ...Z, cache: 6, privateCache: 1, hwpoison: 1, offline: 1 }],
    [8, { ...Z, user: 1026, hwpoison: 1, offline: 1 }],
    [1, { ...Z, hwpoison: 1, offline: 1 }],
    [0, { ...Z, hwpoison: 1, offline: 1 }],
  ])('level %i', async (level, expected) => {
    const r = await classify(scenario(), level);
    expect(r.counts).toEqual(expected);
    expect(r.excludedPages).toBe(Object.values(expected).reduce((a, b) => a + b, 0));
    expect(popcount(r.excluded)).toBe(r.excludedPages);
    expect(r.ramPages).toBe(65536);
    expect(r.coveredPages).toBe(65536);
    expect(r.sections).toBe(2);
  });

  it('excludes exactly the expected pfns at level 31, on 4- and 5-level guests', async () => {
    for (const levels of [4, 5] as const) {
      const r = await classify(scenario(levels), 31);
      const has = (pfn: number) => (r.excluded[pfn >> 3]! & (1 << (pfn & 7))) !== 0;
      const expectRange = (a: number, n: number, v: boolean) => {
        for (let p = a; p < a + n; p++) expect(has(p), `pfn ${p}`).toBe(v);
      };
      expectRange(4096, 1, true);
      expectRange(8192, 8, true);
      expectRange(8200, 1, false);
      expectRange(16384, 1024, true);
      expectRange(20000, 1, false);
      expectRange(21000, 1, false);
      expectRange(22000, 3, true);
      expectRange(22003, 1, false);
      expectRange(22004, 1, true);
      expectRange(48 * 512, 512, true);
      expectRange(49 * 512, 4, true);
      expectRange(51 * 512, 512, true);
      expectRange(53 * 512, 4, false);
      expectRange(30000, 2, true);
      expectRange(30002, 2, false);
      expectRange(31001, 1, true);
      expectRange(31002, 3, false);
      expect(r.anomalies).toEqual({ badBuddyOrder: 1, badCompoundOrder: 1 });
    }
  });

  it('measures the refcount-zero rule and applies it only when asked', async () => {
    const buddy = await classify(scenario(), 31);
    // kept pages with _refcount 0: bad-order head, slab compound tails (3), misaligned tails (3), pcp page, typed page
    expect(buddy.refcountZero).toEqual({ extraPages: 9, tailPages: 6, typedPages: 2, excluded: false });
    const rz = await classify(scenario(), 31, 'refcount-zero');
    expect(rz.refcountZero).toEqual({ extraPages: 9, tailPages: 6, typedPages: 2, excluded: true });
    expect(rz.counts).toEqual(buddy.counts);
    expect(rz.excludedPages).toBe(buddy.excludedPages + 9);
    expect(popcount(rz.excluded)).toBe(rz.excludedPages);
    // Without the free bit there is nothing to measure.
    const l8 = await classify(scenario(), 8, 'refcount-zero');
    expect(l8.refcountZero.extraPages).toBe(0);
  });

  it('clears the excluded pfns in a dump bitmap', async () => {
    const r = await classify(scenario(), 31);
    const dump = new Bitmap(r.maxPfn).setRange(0, r.maxPfn);
    applyExclusions(dump, r.excluded);
    expect(dump.count()).toBe(r.maxPfn - r.excludedPages);
    expect(dump.get(4096)).toBe(false);
    expect(dump.get(4097)).toBe(true);
  });

  it('setBits handles unaligned edges', () => {
    const b = new Uint8Array(4);
    setBits(b, 3, 21);
    expect(popcount(b)).toBe(18);
    expect([...b]).toEqual([0xf8, 0xff, 0x1f, 0]);
  });
});

describe('classification on hostile struct pages', () => {
  it('clips an absurd compound order at the end of RAM (counts stay ≤ RAM)', async () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB });
    k.addCompound(0, 1, { mapping: ANON_MAPPING, refcount: 1 });
    k.mem.writeU8(k.structPagePa(1) + 17, 40); // order 40 on pfn 0 (aligned to anything)
    const r = await classify(k, 31);
    expect(r.counts.user).toBe(r.maxPfn);
    expect(r.excludedPages).toBeLessThanOrEqual(r.ramPages);
  });

  it('rejects buddy orders with the high word set', async () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB });
    k.setPage(100, { mapcount: -129, private: 1n << 32n, refcount: 0 });
    const r = await classify(k, 16);
    expect(r.counts.free).toBe(0);
    expect(r.anomalies.badBuddyOrder).toBe(1);
  });

  it('gives VCV_ERR_INTROSPECTION when a section’s struct pages are not mapped', async () => {
    const k = buildSyntheticKernel({ ramBytes: 256 * MiB });
    const lk = await LinuxKernel.open(k.mem);
    k.pt.setRawEntry(k.vmemmap + BigInt(32768 * 64), 2, 0n); // section 1's 2 MiB of struct pages
    lk.paging.clearCache();
    await expect(lk.classify()).rejects.toMatchObject({ code: 'VCV_ERR_INTROSPECTION' });
  });

  it('random struct page bytes never throw and never exclude more than RAM', async () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB });
    let seed = 99;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const memmap = k.sectionMemmapPa[0]!;
    const junk = new Uint8Array(SIZE_2M);
    for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(rnd() * 256);
    k.mem.write(memmap, junk);
    for (const level of [31, 16, 0]) {
      for (const rule of ['buddy', 'refcount-zero'] as const) {
        try {
          const r = await classify(k, level, rule);
          expect(r.excludedPages).toBeLessThanOrEqual(r.maxPfn);
          expect(popcount(r.excluded)).toBeLessThanOrEqual(r.maxPfn);
        } catch (e) {
          expect(isVcvError(e)).toBe(true);
        }
      }
    }
  });
});

describe('classification with newer kernels’ VMCOREINFO (page types, folio order)', () => {
  it('6.12 style: page types in _mapcount, slab by type, order in folio._folio_order, hugetlb by type', async () => {
    const k = buildSyntheticKernel({
      ramBytes: 64 * MiB,
      osrelease: '6.12.0-synthetic',
      vmcoreinfo: {
        'OFFSET(page.compound_order)': undefined,
        'OFFSET(page.compound_dtor)': undefined,
        'NUMBER(HUGETLB_PAGE_DTOR)': undefined,
        'NUMBER(PG_slab)': undefined,
        'OFFSET(folio._folio_order)': '82',
        'NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)': '-268435456', // PGTY_buddy (0xf0) << 24, as an int
        'NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)': '-251658240', // 0xf1 << 24
        'NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)': '-218103808', // 0xf3 << 24
        'NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)': '-201326592', // 0xf4 << 24
      },
    });
    expect(k.layout.compoundOrder).toEqual({ kind: 'folio-byte', offset: 82 });
    expect(k.layout.pgSlab).toBeUndefined();
    k.addFreeBlock(4096, 2); // uses the layout's buddy type
    k.setPage(5000, { mapcount: -201326592, mapping: 0xffff888000200001n, refcount: 1 }); // slab: not anon, not free
    k.setPage(5001, { mapcount: -251658240, refcount: 1 }); // offline
    k.addCompound(6144, 2, { mapcount: -218103808, refcount: 1 }); // hugetlb folio
    k.mem.writeU8(k.structPagePa(6144) + 82, 2);
    const r = await classify(k, 31);
    expect(r.counts).toEqual({ ...Z, free: 4, offline: 1, user: 4 });
    expect(r.anomalies).toEqual({ badBuddyOrder: 0, badCompoundOrder: 0 });
  });

  it('6.6 style: the compound order is the low byte of the first tail page’s flags', async () => {
    const k = buildSyntheticKernel({
      ramBytes: 64 * MiB,
      osrelease: '6.6.0-synthetic',
      vmcoreinfo: { 'OFFSET(page.compound_order)': undefined, 'OFFSET(page.compound_dtor)': undefined },
    });
    expect(k.layout.compoundOrder).toEqual({ kind: 'tail-flags-byte' });
    k.addCompound(8192, 3, { mapping: 0xffff888000200001n, refcount: 1 });
    k.mem.writeU8(k.structPagePa(8193), 3); // low byte of the tail's flags (OFFSET(page.flags) = 0)
    const r = await classify(k, 8);
    expect(r.counts.user).toBe(8);
  });
});
