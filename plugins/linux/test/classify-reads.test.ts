/**
 * The classifier reads only the struct pages its decode looks at: tails of free buddy blocks and of
 * excluded compound pages are skipped in the read, not just in the decode — and the result is exactly
 * the one a full read of the struct page array gives (the pre-change path, rebuilt here from the
 * Classifier's block API).
 */
import { describe, expect, it } from 'vitest';
import type { MemorySource } from '@vicover/core';
import { LinuxKernel } from '../src/kernel.js';
import { Classifier, MIN_WINDOW_PAGES, type ClassifyOptions, type ClassifyResult, type FreeRule } from '../src/classify.js';
import { buildSyntheticKernel, type SyntheticKernel } from '../src/synth/index.js';

const MiB = 1024 * 1024;
const FILE_MAPPING = 0xffff888000100000n;
const ANON_MAPPING = 0xffff888000200000n | 1n;

/** A MemorySource that records which bytes of the struct page array (the sections' memmaps) are read. */
class CountingSource implements MemorySource {
  structBytes = 0;
  otherBytes = 0;
  /** One flag per struct page (pfn) whose bytes were read, at least in part. */
  readonly seen: Uint8Array;
  constructor(
    private readonly inner: MemorySource,
    private readonly memmaps: readonly { pa: number; pfn: number; bytes: number }[],
    private readonly size: number,
  ) {
    this.seen = new Uint8Array(inner.maxPfn);
  }
  get description() {
    return this.inner.description;
  }
  get ranges() {
    return this.inner.ranges;
  }
  get maxPfn() {
    return this.inner.maxPfn;
  }
  get notes() {
    return this.inner.notes;
  }
  private count(gpa: number, len: number): void {
    let inMemmap = 0;
    for (const m of this.memmaps) {
      const a = Math.max(gpa, m.pa);
      const z = Math.min(gpa + len, m.pa + m.bytes);
      if (z <= a) continue;
      inMemmap += z - a;
      for (let i = Math.floor((a - m.pa) / this.size); i < Math.ceil((z - m.pa) / this.size); i++) this.seen[m.pfn + i] = 1;
    }
    this.structBytes += inMemmap;
    this.otherBytes += len - inMemmap;
  }
  read(gpa: number, buf: Uint8Array, off: number, len: number): Promise<void> {
    this.count(gpa, len);
    return this.inner.read(gpa, buf, off, len);
  }
  readSync(gpa: number, buf: Uint8Array, off: number, len: number): void {
    this.count(gpa, len);
    this.inner.readSync(gpa, buf, off, len);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

function counting(k: SyntheticKernel): CountingSource {
  const pps = 2 ** (k.info.number('SECTION_SIZE_BITS') - 12);
  const memmaps = k.sectionMemmapPa.map((pa, nr) => ({ pa, pfn: nr * pps, bytes: pps * k.layout.size }));
  return new CountingSource(k.mem, memmaps, k.layout.size);
}

/** The full-read path: every section's whole struct page array, decoded in one block per section. */
async function fullRead(lk: LinuxKernel, level: number, rule: FreeRule) {
  const L = lk.pageLayout;
  const maxPfn = lk.source.maxPfn;
  const c = new Classifier(L, maxPfn, level, rule);
  const sections = [...lk.sections().sections].sort((a, b) => a.startPfn - b.startPfn);
  for (const s of sections) {
    const end = Math.min(s.endPfn, maxPfn);
    if (end <= s.startPfn) continue;
    const n = end - s.startPfn;
    const buf = new Uint8Array(n * L.size);
    await lk.kmem.read(s.base + BigInt(s.startPfn) * BigInt(L.size), buf, 0, buf.length);
    c.classifyBlock(new Int32Array(buf.buffer), buf, s.startPfn, n, s.startPfn, end);
  }
  return { counts: c.counts, excluded: c.excluded, refcountZero: c.refcountZero, anomalies: c.anomalies };
}

function expectSame(r: ClassifyResult, ref: Awaited<ReturnType<typeof fullRead>>, what: string): void {
  expect(r.counts, what).toEqual(ref.counts);
  expect(r.refcountZero, what).toEqual(ref.refcountZero);
  expect(r.anomalies, what).toEqual(ref.anomalies);
  expect(Buffer.compare(Buffer.from(r.excluded), Buffer.from(ref.excluded)), `${what}: excluded pfns`).toBe(0);
}

describe('classification reads only the struct pages it examines', () => {
  it('skips the tails of free order-10 blocks in the read (bytes read ≪ the whole array)', async () => {
    // 512 MiB: 131072 pfns, 8 MiB of struct pages. Reserved pages below 8192, 4096 page-cache pages,
    // a THP, then free order-10 blocks up to the end of RAM.
    const k = buildSyntheticKernel({ ramBytes: 512 * MiB });
    k.fillPages(8192, 12288, { flags: k.flags('lru'), mapping: FILE_MAPPING, refcount: 1 });
    k.addCompound(12288, 9, { flags: k.flags('lru', 'swapbacked'), mapping: ANON_MAPPING, refcount: 1, mapcount: 0 });
    k.fillPages(12800, 13312, { flags: k.flags('lru', 'swapbacked'), mapping: ANON_MAPPING, refcount: 1, mapcount: 0 });
    const freeBlocks: number[] = [];
    for (let p = 13312; p < 131072; p += 1024) {
      k.addFreeBlock(p, 10);
      freeBlocks.push(p);
    }
    const src = counting(k);
    const lk = await LinuxKernel.open(src);
    lk.sections();
    const ref = await fullRead(lk, 31, 'buddy');
    const arrayBytes = 131072 * 64;
    const probe = MIN_WINDOW_PAGES * 64;
    const section = 32768 * 64;

    // No read-ahead: reads follow the decode, up to the window sizing.
    src.structBytes = 0;
    src.seen.fill(0);
    const r = await lk.classify({ dumpLevel: 31, readAhead: 1 });
    const bytes = src.structBytes;
    expect(r.counts).toEqual({ cache: 4096, privateCache: 0, user: 1024, free: freeBlocks.length * 1024, offline: 0, hwpoison: 0 });
    expectSame(r, ref, 'level 31');
    // What the decode examined: the reserved and in-use pages one by one, one head per THP and free block.
    expect(r.structPagesRead).toBe(8192 + 4096 + 1 + 512 + freeBlocks.length);
    expect(r.bytesRead).toBe(bytes);
    expect(bytes).toBeLessThan(arrayBytes * 0.2);
    // Every struct page read is an examined one, a first tail (compound order), or part of a window
    // the decode did not use up: per free block at most one probe window, and where in-use memory
    // turns free, what is left of the last large window (at most a section here).
    expect(bytes).toBeLessThanOrEqual(r.structPagesRead * 64 + freeBlocks.length * probe + section);
    // The skipped tails were not read: of 115 free blocks, only the few inside the last large window
    // of the in-use region have any struct page beyond the first probe window read…
    const tailsRead = freeBlocks.filter((p) => src.seen.subarray(p + MIN_WINDOW_PAGES, p + 1024).some((x) => x !== 0));
    expect(tailsRead.length).toBeLessThanOrEqual(8);
    // …and of their 115 × 1023 tail struct pages, less than a tenth were read.
    const tailPagesRead = freeBlocks.reduce((n, p) => n + src.seen.subarray(p + 1, p + 1024).reduce((a, b) => a + b, 0), 0);
    expect(tailPagesRead).toBeLessThan((freeBlocks.length * 1023) / 10);

    // With read-ahead (the default, 4 windows in flight in dense memory) at most 3 more windows
    // (sections here) are read past the point where in-use memory turns free.
    src.structBytes = 0;
    const ra = await lk.classify({ dumpLevel: 31 });
    expectSame(ra, ref, 'level 31, read-ahead');
    expect(src.structBytes).toBeLessThanOrEqual(bytes + 3 * section);
  });

  it('reads a 90 %-free guest at a fraction of a 50 %-free one', async () => {
    const bytesFor = async (freeFraction: number) => {
      const k = buildSyntheticKernel({ ramBytes: 512 * MiB });
      const firstFree = 131072 - Math.floor((freeFraction * 131072) / 1024) * 1024;
      k.fillPages(8192, firstFree, { flags: k.flags('lru'), mapping: FILE_MAPPING, refcount: 1 });
      for (let p = firstFree; p < 131072; p += 1024) k.addFreeBlock(p, 10);
      const src = counting(k);
      const lk = await LinuxKernel.open(src);
      lk.sections();
      src.structBytes = 0;
      const r = await lk.classify({ dumpLevel: 31, readAhead: 1 });
      expect(r.counts.free).toBe(131072 - firstFree);
      return { bytes: src.structBytes, examined: r.structPagesRead };
    };
    const half = await bytesFor(0.5);
    const most = await bytesFor(0.9);
    expect(most.examined).toBeLessThan(half.examined / 3);
    expect(most.bytes).toBeLessThan(half.bytes / 2.5);
  });
});

/** A small PRNG (LCG) so the random guests are reproducible. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
}

/** A guest with every kind of page and block in random order (aligned as the kernel aligns them). */
function randomGuest(seed: number): SyntheticKernel {
  const k = buildSyntheticKernel({ ramBytes: 256 * MiB });
  const rnd = rng(seed);
  const L = k.layout;
  const maxPfn = 65536;
  let pfn = 2048;
  const alignOf = (p: number) => (p === 0 ? 20 : Math.min(20, 31 - Math.clz32(p & -p)));
  while (pfn < maxPfn) {
    const x = rnd();
    const room = Math.min(alignOf(pfn), 31 - Math.clz32(maxPfn - pfn));
    if (x < 0.35) {
      // a free block; high orders more often in runs, as on a mostly idle guest
      const order = Math.min(room, rnd() < 0.5 ? 10 : Math.floor(rnd() * 11));
      k.addFreeBlock(pfn, order);
      pfn += 2 ** order;
    } else if (x < 0.45 && room >= 1) {
      const order = 1 + Math.floor(rnd() * Math.min(room, 9));
      const kind = Math.floor(rnd() * 4);
      const head =
        kind === 0
          ? { flags: k.flags('lru', 'swapbacked'), mapping: ANON_MAPPING, refcount: 1, mapcount: 0 }
          : kind === 1
            ? { flags: k.flags('lru'), mapping: FILE_MAPPING, refcount: 1 }
            : kind === 2
              ? { flags: k.flags('slab'), refcount: 1 }
              : { refcount: 1 };
      k.addCompound(pfn, order, head, kind === 3 ? 2 : 0); // kind 3: hugetlb (HUGETLB_PAGE_DTOR)
      pfn += 2 ** order;
    } else if (x < 0.47) {
      // a compound head as the last page of a 512-page group: makedumpfile reads no order for it
      const p = pfn | 511;
      if (p + 4 <= maxPfn) {
        k.addCompound(p, 2, { mapping: ANON_MAPPING, refcount: 1 });
        pfn = p + 4;
      } else pfn++;
    } else if (x < 0.48) {
      // hostile: a buddy order ≥ LENGTH(free_area), or a misaligned compound head
      if (rnd() < 0.5) k.setPage(pfn, { mapcount: L.buddyType ?? -129, private: BigInt(11 + Math.floor(rnd() * 40)), refcount: 0 });
      else if (pfn + 4 <= maxPfn && pfn % 4 !== 0) k.addCompound(pfn, 2, { mapping: ANON_MAPPING, refcount: 1 });
      pfn++;
    } else {
      // a run of single pages of one kind
      const n = Math.min(maxPfn - pfn, 1 + Math.floor(rnd() * 700));
      const kind = Math.floor(rnd() * 9);
      const f =
        kind === 0
          ? { flags: k.flags('lru'), mapping: FILE_MAPPING, refcount: 1 }
          : kind === 1
            ? { flags: k.flags('lru', 'private'), mapping: FILE_MAPPING, refcount: 1 }
            : kind === 2
              ? { flags: k.flags('lru', 'swapbacked'), mapping: ANON_MAPPING, refcount: 1, mapcount: 0 }
              : kind === 3
                ? { flags: k.flags('slab'), refcount: 1 }
                : kind === 4
                  ? { flags: k.flags('hwpoison'), refcount: 1 }
                  : kind === 5
                    ? { mapcount: L.offlineType ?? -257, refcount: 1 }
                    : kind === 6
                      ? { mapcount: -1, refcount: 0 }
                      : kind === 7
                        ? { mapcount: -513, refcount: 0 }
                        : { refcount: 1 };
      k.fillPages(pfn, pfn + n, f);
      pfn += n;
    }
  }
  return k;
}

describe('classification with skipped reads equals the full read', () => {
  const variants: [string, ClassifyOptions][] = [
    ['default windows (one read in flight)', {}],
    ['four reads in flight', { readAhead: 4 }],
    ['512-page blocks', { blockBytes: 512 * 64 }],
    ['1536-page blocks, 2 in flight', { blockBytes: 1536 * 64, readAhead: 2 }],
  ];
  for (const seed of [1, 2, 3, 4]) {
    it(`random guest ${seed}: same counts, exclusions, refcount-zero figures and anomalies`, async () => {
      const k = randomGuest(seed);
      const src = counting(k);
      const lk = await LinuxKernel.open(src);
      const arrayBytes = 65536 * k.layout.size;
      for (const level of [31, 16, 8, 0]) {
        for (const rule of ['buddy', 'refcount-zero'] as const) {
          const ref = await fullRead(lk, level, rule);
          for (const [name, opts] of variants) {
            src.structBytes = 0;
            const r = await lk.classify({ ...opts, dumpLevel: level, rule });
            expectSame(r, ref, `seed ${seed}, level ${level}, ${rule}, ${name}`);
            expect(r.bytesRead).toBe(src.structBytes);
            // Never much more than the whole array (a window that ends inside a 512-page group
            // leaves its last struct page to the next one, which reads it again).
            expect(src.structBytes).toBeLessThanOrEqual(arrayBytes * 1.05);
          }
        }
      }
    });
  }
});
