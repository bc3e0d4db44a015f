import { describe, expect, it } from 'vitest';
import { Classifier, nativeDecodeAvailable, type ClassifyResult, type FreeRule } from '../src/classify.js';
import { LinuxKernel } from '../src/kernel.js';
import { buildSyntheticKernel, type SyntheticKernel } from '../src/synth/index.js';
import { SIZE_2M } from '../src/paging.js';

// The native decode (native/classify.c) must give the JavaScript loop's answers exactly: the same
// excluded pfns, the same counts, the same anomalies. Built by `npm run build` wherever CI runs (gcc
// and Node's headers are installed there); VICOVER_REQUIRE_TOOLS=1 makes its absence a failure.
const MiB = 1024 * 1024;
const ANON = 0xffff888000200000n | 1n;
const FILE = 0xffff888000100000n;
const available = nativeDecodeAvailable();
if (!available && process.env.VICOVER_REQUIRE_TOOLS === '1') throw new Error('the native page classifier is not built (npm run build)');

async function both(k: SyntheticKernel, dumpLevel: number, rule: FreeRule, blockBytes?: number): Promise<[ClassifyResult, ClassifyResult]> {
  const lk = await LinuxKernel.open(k.mem);
  const opts = { dumpLevel, rule, ...(blockBytes ? { blockBytes } : {}) };
  const n = await lk.classify({ ...opts, native: true });
  const j = await lk.classify({ ...opts, native: false });
  return [n, j];
}

function same(n: ClassifyResult, j: ClassifyResult): void {
  expect(n.decoder).toBe('native');
  expect(j.decoder).toBe('javascript');
  expect(n.counts).toEqual(j.counts);
  expect(n.refcountZero).toEqual(j.refcountZero);
  expect(n.anomalies).toEqual(j.anomalies);
  expect(n.structPagesRead).toBe(j.structPagesRead);
  expect(n.excludedPages).toBe(j.excludedPages);
  expect(Buffer.from(n.excluded).equals(Buffer.from(j.excluded))).toBe(true);
}

/** A guest of every page kind, in the layout of `osrelease` (6.1: tail-byte order; 6.6: tail flags; 6.12: folio byte, page types). */
function mixed(seed: number, variant: '6.1' | '6.6' | '6.12', levels: 4 | 5 = 4): SyntheticKernel {
  const vmcoreinfo: Record<string, string | undefined> =
    variant === '6.6'
      ? { 'OFFSET(page.compound_order)': undefined, 'OFFSET(page.compound_dtor)': undefined }
      : variant === '6.12'
        ? {
            'OFFSET(page.compound_order)': undefined,
            'OFFSET(page.compound_dtor)': undefined,
            'NUMBER(HUGETLB_PAGE_DTOR)': undefined,
            'NUMBER(PG_slab)': undefined,
            'OFFSET(folio._folio_order)': '82',
            'NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)': '-268435456',
            'NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)': '-251658240',
            'NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)': '-218103808',
            'NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)': '-201326592',
          }
        : {};
  const k = buildSyntheticKernel({ ramBytes: 128 * MiB, levels, osrelease: `${variant}.0-synthetic`, vmcoreinfo });
  let s = seed;
  const rnd = (n: number) => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s % n;
  };
  const pages = 32768;
  for (let pfn = 4096; pfn < pages - 1024; ) {
    const kind = rnd(12);
    if (kind === 0) {
      const order = rnd(11);
      const at = Math.ceil(pfn / (1 << order)) * (1 << order);
      if (at + (1 << order) > pages) break;
      k.addFreeBlock(at, order);
      pfn = at + (1 << order);
    } else if (kind === 1 || kind === 2) {
      const order = 1 + rnd(9);
      const at = Math.ceil(pfn / (1 << order)) * (1 << order);
      if (at + (1 << order) > pages) break;
      k.addCompound(at, order, { flags: kind === 1 ? k.flags('lru', 'swapbacked') : k.flags('lru'), mapping: kind === 1 ? ANON : FILE, refcount: 1 });
      if (variant === '6.12') k.mem.writeU8(k.structPagePa(at) + 82, order);
      if (variant === '6.6') k.mem.writeU8(k.structPagePa(at + 1), order);
      pfn = at + (1 << order);
    } else {
      const f = ['lru', 'private', 'swapcache', 'swapbacked', 'hwpoison'] as const;
      const flags = k.flags(...f.filter(() => rnd(3) === 0));
      const mapcount = [-1, 0, 3, -129, -257, -513, -268435456, -251658240, -201326592][rnd(9)]!;
      k.setPage(pfn, { flags, mapping: rnd(2) ? ANON : FILE, refcount: rnd(3), mapcount, private: BigInt(rnd(4) === 0 ? rnd(25) : 0) });
      pfn += 1 + rnd(3);
    }
  }
  return k;
}

describe.skipIf(!available)('native struct-page decode = the JavaScript loop', () => {
  it.each(['6.1', '6.6', '6.12'] as const)('%s layout: every dump level, both free rules', async (variant) => {
    const k = mixed(7 + variant.length, variant);
    for (let level = 0; level < 32; level++) {
      for (const rule of ['buddy', 'refcount-zero'] as const) {
        const [n, j] = await both(k, level, rule);
        same(n, j);
      }
    }
  });

  it('5-level guest, small read windows (many calls per section)', async () => {
    const k = mixed(3, '6.1', 5);
    for (const level of [31, 16, 8]) {
      const [n, j] = await both(k, level, 'buddy', 64 * 1024);
      same(n, j);
    }
  });

  it('random struct page bytes: the same answers (and no crash)', async () => {
    for (const seed of [1, 2, 3]) {
      const k = buildSyntheticKernel({ ramBytes: 64 * MiB });
      let s = seed;
      const junk = new Uint8Array(SIZE_2M);
      for (let i = 0; i < junk.length; i++) junk[i] = (s = (s * 1103515245 + 12345) & 0x7fffffff) >>> 16;
      k.mem.write(k.sectionMemmapPa[0]!, junk);
      for (const level of [31, 16, 0]) {
        for (const rule of ['buddy', 'refcount-zero'] as const) {
          const [n, j] = await both(k, level, rule);
          same(n, j);
        }
      }
    }
  });

  it('refuses parameters that would reach outside its buffers, before touching anything', () => {
    const k = buildSyntheticKernel({ ramBytes: 64 * MiB });
    const c = new Classifier(k.layout, 16384, 31, 'buddy', true);
    expect(c.decoder).toBe('native');
    const size = k.layout.size;
    const buf = new ArrayBuffer(64 * size);
    const words = new Int32Array(buf);
    const bytes = new Uint8Array(buf);
    // more struct pages claimed than the buffer holds
    expect(() => c.classifyBlock(words, bytes, 0, 65, 0, 64)).toThrow(RangeError);
    // a run outside the block, or past maxPfn
    expect(() => c.classifyBlock(words, bytes, 100, 64, 90, 120)).toThrow(RangeError);
    expect(() => c.classifyBlock(words, bytes, 16380, 64, 16380, 16390)).toThrow(RangeError);
    // not whole numbers
    expect(() => c.classifyBlock(words, bytes, 0.5, 64, 0, 64)).toThrow(RangeError);
    expect(c.structPagesRead).toBe(0);
    expect(c.excluded.every((b) => b === 0)).toBe(true);
    // an empty run is fine
    c.classifyBlock(words, bytes, 0, 64, 10, 10);
  });
});
