/**
 * Page classification: which pages a dump at a given makedumpfile dump level leaves out, decided from
 * the struct page array exactly as makedumpfile's `__exclude_unnecessary_pages()` does (1.7.x), with
 * every value from VMCOREINFO:
 *
 *   per pfn that is RAM, not already excluded as part of an earlier range, first match wins:
 *   0. compound tail (`compound_head & 1`)                        → kept here (tails of excluded heads
 *                                                                     were excluded with their head)
 *   1. level & 16, buddy head (`_mapcount == PAGE_BUDDY_MAPCOUNT_VALUE`, not slab)
 *                                                                  → free, `1 << private` pages;
 *                                                                     an order ≥ LENGTH(zone.free_area)
 *                                                                     is rejected (not free; counted as
 *                                                                     an anomaly), as newer makedumpfile does
 *   2. level & 16, `_mapcount == PAGE_UNACCEPTED_MAPCOUNT_VALUE`  → free, a MAX_PAGE_ORDER block
 *   3. level & 2,  cache page, not PG_private, not anon           → cache
 *   4. level & 4,  cache page, not anon                           → privateCache (PG_private) or cache
 *   5. level & 8,  anon (mapping & 1, not slab) or hugetlb head   → user
 *   6. PG_hwpoison                                                → hwpoison (any level)
 *   7. `_mapcount == PAGE_OFFLINE_MAPCOUNT_VALUE`, not slab       → offline (any level)
 *   cache page = PG_lru, or PG_swapcache with PG_swapbacked (when the kernel has PG_swapbacked).
 *   Classes 3–7 on a compound head exclude the whole compound page (`1 << order` pages; order read
 *   from the first tail page, only when the head is not the last of a 512-page group — makedumpfile's
 *   PGMM_CACHED read window — and rejected when ≥ 64 or the head is misaligned).
 *
 * Zero pages (level bit 1) are found by content at write time; `countZeroPages` counts them for reports.
 *
 * The hot loop reads the struct page array in large blocks (MiBs; one or a few reads per section,
 * since vmemmap is mapped with 2 MiB pages) and decodes with an Int32Array view: no per-page
 * allocation, await or BigInt.
 */
import { VcvError } from '@vicover/errors';
import type { PhysRange } from '@vicover/core';
import type { KernelMemory } from './kmem.js';
import type { MemSection, MemSectionLayout } from './mem-section.js';
import type { FlagBit, PageLayout } from './page-layout.js';
import { PAGE_SIZE } from './paging.js';
import { hex } from './reader.js';

export const DL_EXCLUDE_ZERO = 1;
export const DL_EXCLUDE_CACHE = 2;
export const DL_EXCLUDE_CACHE_PRI = 4;
export const DL_EXCLUDE_USER_DATA = 8;
export const DL_EXCLUDE_FREE = 16;
/** makedumpfile's struct-page read window; a head at index 511 of a window gets order 0. */
export const PGMM_CACHED = 512;

export type FreeRule = 'buddy' | 'refcount-zero';

export interface ClassCounts {
  cache: number;
  privateCache: number;
  user: number;
  free: number;
  offline: number;
  hwpoison: number;
}

export interface RefcountZeroStats {
  /** Pages with `_refcount == 0` that the buddy rule keeps (the prototype rule's extra exclusions). */
  extraPages: number;
  /** …of which compound tail pages (their refcount lives in the head: never free by this test). */
  tailPages: number;
  /** …of which typed pages (`_mapcount < -1`: page tables, slab, guard or other page types). */
  typedPages: number;
  /** Whether the extra pages were excluded (rule `refcount-zero`) or only counted (rule `buddy`). */
  excluded: boolean;
}

export interface ClassifyAnomalies {
  /** Buddy heads with an order ≥ LENGTH(zone.free_area) (rejected, kept). */
  badBuddyOrder: number;
  /** Compound heads whose order was ≥ 64 or misaligned (treated as order 0). */
  badCompoundOrder: number;
}

export interface ClassifyResult {
  readonly dumpLevel: number;
  readonly rule: FreeRule;
  readonly counts: ClassCounts;
  /** Sum of counts (+ refcount-zero extras when excluded). */
  readonly excludedPages: number;
  /** Excluded pfns, kdump bit order (bit n of byte k = pfn 8k+n), length ceil(maxPfn / 8). */
  readonly excluded: Uint8Array;
  readonly maxPfn: number;
  /** RAM pages of the source (pfns inside its ranges). */
  readonly ramPages: number;
  /** RAM pages that have a struct page (inside a present section). */
  readonly coveredPages: number;
  readonly structPagesRead: number;
  readonly bytesRead: number;
  readonly sections: number;
  readonly refcountZero: RefcountZeroStats;
  readonly anomalies: ClassifyAnomalies;
  readonly elapsedMs: number;
}

export interface ClassifyOptions {
  /** makedumpfile dump level 0–31 (bit 1, zero pages, is handled at write time). Default 31. */
  readonly dumpLevel?: number;
  /** Free-page rule: `buddy` (default, makedumpfile's) or the research prototype's `refcount-zero`. */
  readonly rule?: FreeRule;
  /** Bytes of struct pages per read (default 4 MiB; rounded to whole 512-page groups). */
  readonly blockBytes?: number;
  readonly signal?: AbortSignal;
}

/** A flag's mask in the low / high 32-bit word of page->flags (0/0 when the kernel lacks the flag). */
function lo(f: FlagBit | undefined): number {
  return f && f.word === 0 ? f.mask | 0 : 0;
}
function hi(f: FlagBit | undefined): number {
  return f && f.word === 1 ? f.mask | 0 : 0;
}
/** Sentinel for "no such page type": no int32 _mapcount equals it. */
const NO_TYPE = 2 ** 40;

/**
 * Mutable state of one classification pass over the struct page array, fed block by block in pfn
 * order. Exposed for the synthetic benchmark and tests; `classifyPages` is the usual entry point.
 */
export class Classifier {
  readonly counts: ClassCounts = { cache: 0, privateCache: 0, user: 0, free: 0, offline: 0, hwpoison: 0 };
  readonly refcountZero: RefcountZeroStats;
  readonly anomalies: ClassifyAnomalies = { badBuddyOrder: 0, badCompoundOrder: 0 };
  readonly excluded: Uint8Array;
  /** pfns below this were already excluded as part of a multi-page range. */
  skipUntil = 0;
  structPagesRead = 0;

  constructor(
    readonly layout: PageLayout,
    readonly maxPfn: number,
    readonly dumpLevel: number,
    readonly rule: FreeRule,
  ) {
    if (!Number.isInteger(dumpLevel) || dumpLevel < 0 || dumpLevel > 31) {
      throw new VcvError('VCV_ERR_USAGE', `dump level ${dumpLevel} is not 0–31`, { dumpLevel });
    }
    if (!Number.isSafeInteger(maxPfn) || maxPfn < 0 || maxPfn > 2 ** 40) {
      throw new VcvError('VCV_ERR_INTROSPECTION', `max pfn ${maxPfn} is impossible`, { maxPfn });
    }
    this.excluded = new Uint8Array(Math.ceil(maxPfn / 8));
    this.refcountZero = {
      extraPages: 0,
      tailPages: 0,
      typedPages: 0,
      excluded: rule === 'refcount-zero' && (dumpLevel & DL_EXCLUDE_FREE) !== 0,
    };
  }

  /**
   * Classify the RAM pfns [from, to) of a block of struct pages: `words`/`bytes` view the block,
   * whose first struct page is pfn `blockPfn` and which holds `nPages` struct pages.
   */
  classifyBlock(words: Int32Array, bytes: Uint8Array, blockPfn: number, nPages: number, from: number, to: number): void {
    const L = this.layout;
    const level = this.dumpLevel;
    const size = L.size;
    const W = size >> 2;
    const fF = L.offFlags >> 2;
    const fM = L.offMapping >> 2;
    const fMC = L.offMapcount >> 2;
    const fRC = L.offRefcount >> 2;
    const fP = L.offPrivate >> 2;
    const fH = L.offCompoundHead >> 2;
    const exFree = (level & DL_EXCLUDE_FREE) !== 0;
    const exCache = (level & DL_EXCLUDE_CACHE) !== 0;
    const exCachePri = (level & DL_EXCLUDE_CACHE_PRI) !== 0;
    const exUser = (level & DL_EXCLUDE_USER_DATA) !== 0;
    const exAnyCache = exCache || exCachePri || exUser;
    const dropRefZero = this.refcountZero.excluded;
    // Flag masks per 32-bit word (branch-free tests: (fLo & xLo) | (fHi & xHi)).
    const headLo = L.headMaskLo | 0;
    const headHi = L.headMaskHi | 0;
    const lruLo = lo(L.pgLru);
    const lruHi = hi(L.pgLru);
    const swcLo = lo(L.pgSwapcache);
    const swcHi = hi(L.pgSwapcache);
    const hasSwb = L.pgSwapbacked !== undefined;
    const swbLo = lo(L.pgSwapbacked);
    const swbHi = hi(L.pgSwapbacked);
    const privLo = lo(L.pgPrivate);
    const privHi = hi(L.pgPrivate);
    const slabLo = lo(L.pgSlab);
    const slabHi = hi(L.pgSlab);
    const hwpLo = lo(L.pgHwpoison);
    const hwpHi = hi(L.pgHwpoison);
    const hasPgBuddy = L.pgBuddy !== undefined;
    const pgBuddyLo = lo(L.pgBuddy);
    const pgBuddyHi = hi(L.pgBuddy);
    const pgHugeLo = lo(L.pgHugetlb);
    const pgHugeHi = hi(L.pgHugetlb);
    const hasPgHuge = L.pgHugetlb !== undefined;
    const buddyType = L.buddyType ?? NO_TYPE;
    const offlineType = L.offlineType ?? NO_TYPE;
    const slabType = L.slabType ?? NO_TYPE;
    const hugetlbType = L.hugetlbType ?? NO_TYPE;
    const hasHugetlbType = L.hugetlbType !== undefined;
    const unacceptedType = L.unacceptedType ?? NO_TYPE;
    const hugetlbDtor = L.hugetlbDtor ?? -1;
    const maxOrders = L.freeAreaOrders;
    const coKind = L.compoundOrder.kind;
    const coOff = L.compoundOrder.kind === 'tail-byte' || L.compoundOrder.kind === 'folio-byte' ? L.compoundOrder.offset : 0;
    const dtorOff = L.offCompoundDtor ?? -1;
    const counts = this.counts;
    const excluded = this.excluded;
    const maxPfn = this.maxPfn;

    let skipUntil = this.skipUntil;
    let cCache = 0;
    let cPriv = 0;
    let cUser = 0;
    let cFree = 0;
    let cOff = 0;
    let cHwp = 0;
    let rzExtra = 0;
    let rzTail = 0;
    let rzTyped = 0;
    let badBuddy = 0;
    let badCompound = 0;

    let pfn = from > skipUntil ? from : skipUntil;
    if (to > pfn) this.structPagesRead += to - pfn;
    for (; pfn < to; pfn++) {
      if (pfn < skipUntil) {
        pfn = skipUntil - 1;
        continue;
      }
      const i = pfn - blockPfn;
      const b = i * W;
      const fLo = words[b + fF]!;
      const fHi = words[b + fF + 1]!;
      const mapcount = words[b + fMC]!;
      const headWord = words[b + fH]!;
      const slab = ((fLo & slabLo) | (fHi & slabHi)) !== 0 || mapcount === slabType;

      // 0. compound tails are kept here (tails of excluded heads were excluded with the head).
      if ((headWord & 1) !== 0) {
        if (exFree && words[b + fRC] === 0) {
          rzExtra++;
          rzTail++;
          if (mapcount < -1) rzTyped++;
          if (dropRefZero) {
            excluded[pfn >>> 3]! |= 1 << (pfn & 7);
          }
        }
        continue;
      }

      // Compound order / destructor of a head, from its first tail page (makedumpfile's window rule).
      let order = 0;
      let dtor = -1;
      let huge = false;
      const isHead = ((fLo & headLo) | (fHi & headHi)) !== 0;
      if (isHead && (pfn & (PGMM_CACHED - 1)) !== PGMM_CACHED - 1 && i + 1 < nPages) {
        const nb = b + W;
        if (coKind === 'tail-byte') order = bytes[(i + 1) * size + coOff]!;
        else if (coKind === 'folio-byte') order = bytes[i * size + coOff]!;
        else if (coKind === 'tail-flags-byte') order = words[nb + fF]! & 0xff;
        if (dtorOff >= 0) dtor = bytes[i * size + dtorOff]!;
        if (hasHugetlbType) huge = mapcount === hugetlbType;
        else if (hasPgHuge) huge = ((words[nb + fF]! & pgHugeLo) | (words[nb + fF + 1]! & pgHugeHi)) !== 0;
        else huge = dtor === hugetlbDtor;
        if (order >= 64 || pfn % 2 ** order !== 0) {
          badCompound++;
          order = 0;
        }
      } else if (isHead && hasHugetlbType) {
        huge = mapcount === hugetlbType;
      }

      let nr = order === 0 ? 1 : 2 ** order;
      let cls = 0; // 1 free 2 cache 3 privateCache 4 user 5 hwpoison 6 offline
      if (exFree) {
        const buddy = hasPgBuddy ? ((fLo & pgBuddyLo) | (fHi & pgBuddyHi)) !== 0 : !slab && mapcount === buddyType;
        if (buddy) {
          const pLo = words[b + fP]! >>> 0;
          if (words[b + fP + 1] !== 0 || pLo >= maxOrders) badBuddy++;
          else {
            nr = 2 ** pLo;
            cls = 1;
          }
        } else if (mapcount === unacceptedType) {
          nr = 2 ** (maxOrders - 1);
          cls = 1;
        }
      }
      if (cls === 0 && exAnyCache) {
        const cache =
          ((fLo & lruLo) | (fHi & lruHi)) !== 0 ||
          (((fLo & swcLo) | (fHi & swcHi)) !== 0 && (!hasSwb || ((fLo & swbLo) | (fHi & swbHi)) !== 0));
        const anon = (words[b + fM]! & 1) !== 0 && !slab;
        const priv = ((fLo & privLo) | (fHi & privHi)) !== 0;
        if (exCache && cache && !priv && !anon) cls = 2;
        else if (exCachePri && cache && !anon) cls = priv ? 3 : 2;
        else if (exUser && (anon || huge)) cls = 4;
      }
      if (cls === 0) {
        if (((fLo & hwpLo) | (fHi & hwpHi)) !== 0) cls = 5;
        else if (!slab && mapcount === offlineType) cls = 6;
        else {
          if (exFree && words[b + fRC] === 0) {
            rzExtra++;
            if (mapcount < -1) rzTyped++;
            if (dropRefZero) {
              excluded[pfn >>> 3]! |= 1 << (pfn & 7);
            }
          }
          continue;
        }
      }
      // Exclude [pfn, pfn + nr), clipped to maxPfn.
      let n = 1;
      if (nr === 1) {
        excluded[pfn >>> 3]! |= 1 << (pfn & 7);
      } else {
        const e = pfn + nr < maxPfn ? pfn + nr : maxPfn;
        n = e - pfn;
        setBits(excluded, pfn, e);
        if (e > skipUntil) skipUntil = e;
        pfn = e - 1;
      }
      if (cls === 1) cFree += n;
      else if (cls === 2) cCache += n;
      else if (cls === 3) cPriv += n;
      else if (cls === 4) cUser += n;
      else if (cls === 5) cHwp += n;
      else cOff += n;
    }
    this.skipUntil = skipUntil;
    counts.cache += cCache;
    counts.privateCache += cPriv;
    counts.user += cUser;
    counts.free += cFree;
    counts.offline += cOff;
    counts.hwpoison += cHwp;
    this.refcountZero.extraPages += rzExtra;
    this.refcountZero.tailPages += rzTail;
    this.refcountZero.typedPages += rzTyped;
    this.anomalies.badBuddyOrder += badBuddy;
    this.anomalies.badCompoundOrder += badCompound;
  }
}

/** Set bits [start, end) of a kdump-order bitmap. */
export function setBits(bits: Uint8Array, start: number, end: number): void {
  let p = start;
  while (p < end && (p & 7) !== 0) {
    bits[p >>> 3]! |= 1 << (p & 7);
    p++;
  }
  const fullEnd = end - (end & 7);
  if (p < fullEnd) {
    bits.fill(0xff, p / 8, fullEnd / 8);
    p = fullEnd;
  }
  while (p < end) {
    bits[Math.floor(p / 8)]! |= 1 << (p & 7);
    p++;
  }
}

/** Number of set bits in a kdump-order bitmap. */
export function popcount(bits: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < bits.length; i++) {
    let v = bits[i]!;
    while (v) {
      v &= v - 1;
      n++;
    }
  }
  return n;
}

/** What the classifier needs from a dump bitmap (the core's PfnBitmap / dumpfmt's Bitmap fit). */
export interface ClearableBitmap {
  readonly size: number;
  clear(pfn: number): void;
}

/** Clear every pfn set in `excluded` from `target` (pfns ≥ target.size are ignored). */
export function applyExclusions(target: ClearableBitmap, excluded: Uint8Array): void {
  const limit = Math.min(excluded.length, Math.ceil(target.size / 8));
  for (let k = 0; k < limit; k++) {
    const v = excluded[k]!;
    if (v === 0) continue;
    for (let bit = 0; bit < 8; bit++) {
      if ((v & (1 << bit)) === 0) continue;
      const pfn = k * 8 + bit;
      if (pfn < target.size) target.clear(pfn);
    }
  }
}

/** RAM pfn intervals [start, end) of a source's ranges. */
export function ramPfnIntervals(ranges: readonly PhysRange[]): [number, number][] {
  const out: [number, number][] = [];
  for (const r of ranges) {
    const s = Math.ceil(r.start / PAGE_SIZE);
    const e = Math.floor(r.end / PAGE_SIZE);
    if (e > s) out.push([s, e]);
  }
  return out;
}

function aborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new VcvError('VCV_ERR_ABORTED', 'page classification was cancelled', {});
}

/**
 * Classify all RAM pages below maxPfn. Reads each section's struct pages in blocks (double-buffered:
 * the next block is read while the current one is decoded).
 */
export async function classifyPages(
  kmem: KernelMemory,
  layout: PageLayout,
  sectionLayout: MemSectionLayout,
  sections: readonly MemSection[],
  ranges: readonly PhysRange[],
  maxPfn: number,
  opts: ClassifyOptions = {},
): Promise<ClassifyResult> {
  const t0 = performance.now();
  const level = opts.dumpLevel ?? 31;
  const rule = opts.rule ?? 'buddy';
  const c = new Classifier(layout, maxPfn, level, rule);
  const ram = ramPfnIntervals(ranges);
  const ramPages = ram.reduce((n, [s, e]) => n + (Math.min(e, maxPfn) - Math.min(s, maxPfn)), 0);
  const blockBytes = Math.max(PGMM_CACHED * layout.size, Math.min(opts.blockBytes ?? 4 * 1024 * 1024, 256 * 1024 * 1024));
  const blockPages = Math.floor(blockBytes / layout.size / PGMM_CACHED) * PGMM_CACHED;

  // The blocks to read: pieces of present sections that intersect RAM, in pfn order.
  interface Block {
    section: MemSection;
    pfn: number;
    n: number;
    ram: [number, number][];
  }
  const blocks: Block[] = [];
  let coveredPages = 0;
  const sorted = [...sections].sort((a, b) => a.startPfn - b.startPfn);
  for (const s of sorted) {
    const end = Math.min(s.endPfn, maxPfn);
    for (let p = s.startPfn; p < end; p += blockPages) {
      const n = Math.min(blockPages, end - p);
      const pieces: [number, number][] = [];
      for (const [rs, re] of ram) {
        const a = Math.max(rs, p);
        const z = Math.min(re, p + n);
        if (z > a) pieces.push([a, z]);
      }
      if (pieces.length === 0) continue;
      for (const [a, z] of pieces) coveredPages += z - a;
      blocks.push({ section: s, pfn: p, n, ram: pieces });
    }
  }

  const bufs = [new ArrayBuffer(blockPages * layout.size), new ArrayBuffer(blockPages * layout.size)];
  let bytesRead = 0;
  const readBlock = async (blk: Block, buf: ArrayBuffer): Promise<void> => {
    const va = (blk.section.base + BigInt(blk.pfn) * BigInt(layout.size)) & 0xffffffffffffffffn;
    const len = blk.n * layout.size;
    try {
      await kmem.read(va, new Uint8Array(buf, 0, len), 0, len);
    } catch (e) {
      if (e instanceof VcvError && (e.code === 'VCV_ERR_TRANSLATION' || e.code === 'VCV_ERR_MEMORY_RANGE')) {
        throw new VcvError(
          'VCV_ERR_INTROSPECTION',
          `the struct pages of pfns ${hex(blk.pfn)}…${hex(blk.pfn + blk.n)} (section ${blk.section.nr}, at ${hex(va)}) cannot be read: ${e.message}`,
          { section: blk.section.nr, va: hex(va), cause: e.code },
          { cause: e },
        );
      }
      throw e;
    }
    bytesRead += len;
  };

  let pending: Promise<void> | undefined = blocks.length > 0 ? readBlock(blocks[0]!, bufs[0]!) : undefined;
  for (let k = 0; k < blocks.length; k++) {
    aborted(opts.signal);
    await pending;
    const blk = blocks[k]!;
    const buf = bufs[k & 1]!;
    const next = blocks[k + 1];
    pending = next ? readBlock(next, bufs[(k + 1) & 1]!) : undefined;
    // Keep a rejected prefetch from becoming an unhandled rejection if this block throws.
    pending?.catch(() => undefined);
    const words = new Int32Array(buf, 0, (blk.n * layout.size) / 4);
    const bytes = new Uint8Array(buf, 0, blk.n * layout.size);
    for (const [a, z] of blk.ram) c.classifyBlock(words, bytes, blk.pfn, blk.n, a, z);
  }
  await pending;

  const counts = c.counts;
  let excludedPages = counts.cache + counts.privateCache + counts.user + counts.free + counts.offline + counts.hwpoison;
  if (c.refcountZero.excluded) excludedPages += c.refcountZero.extraPages;
  return {
    dumpLevel: level,
    rule,
    counts: { ...counts },
    excludedPages,
    excluded: c.excluded,
    maxPfn,
    ramPages,
    coveredPages,
    structPagesRead: c.structPagesRead,
    bytesRead,
    sections: new Set(blocks.map((b) => b.section.nr)).size,
    refcountZero: { ...c.refcountZero },
    anomalies: { ...c.anomalies },
    elapsedMs: performance.now() - t0,
  };
}

/**
 * Count all-zero pages among the pages kept (RAM pfns not set in `excluded`), reading them in large
 * blocks. This is what the dump writer finds at write time for level bit 1; reports use it to compare
 * with makedumpfile's "Pages filled with zero".
 */
export async function countZeroPages(
  source: { read(gpa: number, buf: Uint8Array, off: number, len: number): Promise<void> },
  ranges: readonly PhysRange[],
  excluded: Uint8Array | undefined,
  opts: { blockBytes?: number; signal?: AbortSignal } = {},
): Promise<{ zeroPages: number; pagesRead: number }> {
  const blockPages = Math.max(1, Math.floor((opts.blockBytes ?? 8 * 1024 * 1024) / PAGE_SIZE));
  const buf = Buffer.allocUnsafeSlow(blockPages * PAGE_SIZE);
  const zero = Buffer.alloc(PAGE_SIZE);
  let zeroPages = 0;
  let pagesRead = 0;
  const isExcluded = (pfn: number): boolean =>
    excluded !== undefined && pfn >> 3 < excluded.length && (excluded[pfn >> 3]! & (1 << (pfn & 7))) !== 0;
  for (const [s, e] of ramPfnIntervals(ranges)) {
    for (let p = s; p < e; ) {
      aborted(opts.signal);
      // Skip excluded pfns; read the next run of kept pfns (up to a block).
      while (p < e && isExcluded(p)) p++;
      let q = p;
      while (q < e && q - p < blockPages && !isExcluded(q)) q++;
      if (q === p) break;
      await source.read(p * PAGE_SIZE, buf, 0, (q - p) * PAGE_SIZE);
      for (let i = 0; i < q - p; i++) {
        if (buf.compare(zero, 0, PAGE_SIZE, i * PAGE_SIZE, (i + 1) * PAGE_SIZE) === 0) zeroPages++;
      }
      pagesRead += q - p;
      p = q;
    }
  }
  return { zeroPages, pagesRead };
}
