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
 * Reading follows the decode (`classifyPages`): the struct pages of skipped tails (free buddy blocks,
 * excluded compound pages) are not read beyond the window being decoded; windows shrink to one
 * 4 KiB probe per free block in free memory and grow to `blockBytes` (with read-ahead) in memory in
 * use. The hot loop decodes a window with an Int32Array view: no per-page allocation, await or BigInt.
 */
import { VcvError } from '@vicover/errors';
import type { PhysRange } from '@vicover/core';
import type { KernelMemory } from './kmem.js';
import type { MemSection, MemSectionLayout } from './mem-section.js';
import type { FlagBit, PageLayout } from './page-layout.js';
import { PAGE_SIZE } from './paging.js';
import { hex } from './reader.js';
import { nativeClassifier, type NativeClassifier } from './native-classify.js';

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
  /** Struct pages the decode examined (pages not skipped as the tail of an excluded block). */
  readonly structPagesRead: number;
  /** Bytes of struct pages read (the examined ones, plus what the read windows held around them). */
  readonly bytesRead: number;
  readonly sections: number;
  readonly refcountZero: RefcountZeroStats;
  readonly anomalies: ClassifyAnomalies;
  readonly elapsedMs: number;
  /** Which decode ran: the native loop (native/classify.c) or the JavaScript one. */
  readonly decoder: 'native' | 'javascript';
}

export interface ClassifyOptions {
  /** makedumpfile dump level 0–31 (bit 1, zero pages, is handled at write time). Default 31. */
  readonly dumpLevel?: number;
  /** Free-page rule: `buddy` (default, makedumpfile's) or the research prototype's `refcount-zero`. */
  readonly rule?: FreeRule;
  /** Largest read of struct pages, in bytes (default 4 MiB, at most a section; rounded to whole 512-page groups). */
  readonly blockBytes?: number;
  /**
   * Reads kept in flight in memory in use, the one being decoded included (default 1: no read-ahead
   * beyond the kernel's). Each is a buffer of up to a section's struct pages (2 MiB), fresh memory
   * whose first touch costs a page fault per 4 KiB; on the development VM (~17 µs per fault) 4 took
   * a 4.5 GiB guest's first classification from 46 to 80 ms, warm or cold page cache, and was no
   * faster at 256 GiB–1 TiB (docs/performance.md).
   */
  readonly readAhead?: number;
  /** Use the native decode when it is built (default true; false: the JavaScript loop, same answers). */
  readonly native?: boolean;
  readonly signal?: AbortSignal;
}

/** A flag's mask in the low / high 32-bit word of page->flags (0/0 when the kernel lacks the flag). */
function lo(f: FlagBit | undefined): number {
  return f && f.word === 0 ? f.mask | 0 : 0;
}
function hi(f: FlagBit | undefined): number {
  return f && f.word === 1 ? f.mask | 0 : 0;
}

// The hot loop takes its parameters as one Int32Array and writes its figures to one Float64Array, so
// the optimised code depends on no object shapes (V8 keeps it across layouts and sessions).
const P_W = 0;
const P_FLAGS = 1;
const P_MAPPING = 2;
const P_MAPCOUNT = 3;
const P_REFCOUNT = 4;
const P_PRIVATE = 5;
const P_HEAD = 6;
const P_LEVEL = 7;
const P_DROP_RZ = 8;
const P_HEAD_LO = 9;
const P_HEAD_HI = 10;
const P_LRU_LO = 11;
const P_LRU_HI = 12;
const P_SWC_LO = 13;
const P_SWC_HI = 14;
const P_HAS_SWB = 15;
const P_SWB_LO = 16;
const P_SWB_HI = 17;
const P_PRIV_LO = 18;
const P_PRIV_HI = 19;
const P_SLAB_LO = 20;
const P_SLAB_HI = 21;
const P_HWP_LO = 22;
const P_HWP_HI = 23;
const P_HAS_PGBUDDY = 24;
const P_PGBUDDY_LO = 25;
const P_PGBUDDY_HI = 26;
const P_HAS_PGHUGE = 27;
const P_PGHUGE_LO = 28;
const P_PGHUGE_HI = 29;
const P_HAS_BUDDY_T = 30;
const P_BUDDY_T = 31;
const P_HAS_OFFLINE_T = 32;
const P_OFFLINE_T = 33;
const P_HAS_SLAB_T = 34;
const P_SLAB_T = 35;
const P_HAS_HUGE_T = 36;
const P_HUGE_T = 37;
const P_HAS_UNACC_T = 38;
const P_UNACC_T = 39;
const P_HUGE_DTOR = 40;
const P_ORDERS = 41;
/** Compound order source: 0 none, 1 tail byte, 2 folio byte (head-relative), 3 low byte of the tail's flags. */
const P_CO_KIND = 42;
const P_CO_OFF = 43;
const P_DTOR_OFF = 44;
const P_SIZE = 45;
const P_COUNT = 46;

const S_CACHE = 0;
const S_PRIV = 1;
const S_USER = 2;
const S_FREE = 3;
const S_OFFLINE = 4;
const S_HWPOISON = 5;
const S_RZ_EXTRA = 6;
const S_RZ_TAIL = 7;
const S_RZ_TYPED = 8;
const S_BAD_BUDDY = 9;
const S_BAD_COMPOUND = 10;
const S_SKIP_UNTIL = 11;
const S_READ = 12;
const S_COUNT = 13;

/** The hot loop's parameters for a layout, level and rule. */
function loopParams(L: PageLayout, level: number, dropRefZero: boolean): Int32Array {
  const p = new Int32Array(P_COUNT);
  p[P_W] = L.size >> 2;
  p[P_FLAGS] = L.offFlags >> 2;
  p[P_MAPPING] = L.offMapping >> 2;
  p[P_MAPCOUNT] = L.offMapcount >> 2;
  p[P_REFCOUNT] = L.offRefcount >> 2;
  p[P_PRIVATE] = L.offPrivate >> 2;
  p[P_HEAD] = L.offCompoundHead >> 2;
  p[P_LEVEL] = level;
  p[P_DROP_RZ] = dropRefZero ? 1 : 0;
  p[P_HEAD_LO] = L.headMaskLo | 0;
  p[P_HEAD_HI] = L.headMaskHi | 0;
  p[P_LRU_LO] = lo(L.pgLru);
  p[P_LRU_HI] = hi(L.pgLru);
  p[P_SWC_LO] = lo(L.pgSwapcache);
  p[P_SWC_HI] = hi(L.pgSwapcache);
  p[P_HAS_SWB] = L.pgSwapbacked !== undefined ? 1 : 0;
  p[P_SWB_LO] = lo(L.pgSwapbacked);
  p[P_SWB_HI] = hi(L.pgSwapbacked);
  p[P_PRIV_LO] = lo(L.pgPrivate);
  p[P_PRIV_HI] = hi(L.pgPrivate);
  p[P_SLAB_LO] = lo(L.pgSlab);
  p[P_SLAB_HI] = hi(L.pgSlab);
  p[P_HWP_LO] = lo(L.pgHwpoison);
  p[P_HWP_HI] = hi(L.pgHwpoison);
  p[P_HAS_PGBUDDY] = L.pgBuddy !== undefined ? 1 : 0;
  p[P_PGBUDDY_LO] = lo(L.pgBuddy);
  p[P_PGBUDDY_HI] = hi(L.pgBuddy);
  p[P_HAS_PGHUGE] = L.pgHugetlb !== undefined ? 1 : 0;
  p[P_PGHUGE_LO] = lo(L.pgHugetlb);
  p[P_PGHUGE_HI] = hi(L.pgHugetlb);
  p[P_HAS_BUDDY_T] = L.buddyType !== undefined ? 1 : 0;
  p[P_BUDDY_T] = L.buddyType ?? 0;
  p[P_HAS_OFFLINE_T] = L.offlineType !== undefined ? 1 : 0;
  p[P_OFFLINE_T] = L.offlineType ?? 0;
  p[P_HAS_SLAB_T] = L.slabType !== undefined ? 1 : 0;
  p[P_SLAB_T] = L.slabType ?? 0;
  p[P_HAS_HUGE_T] = L.hugetlbType !== undefined ? 1 : 0;
  p[P_HUGE_T] = L.hugetlbType ?? 0;
  p[P_HAS_UNACC_T] = L.unacceptedType !== undefined ? 1 : 0;
  p[P_UNACC_T] = L.unacceptedType ?? 0;
  p[P_HUGE_DTOR] = L.hugetlbDtor ?? -1;
  p[P_ORDERS] = L.freeAreaOrders;
  const co = L.compoundOrder;
  p[P_CO_KIND] = co.kind === 'tail-byte' ? 1 : co.kind === 'folio-byte' ? 2 : co.kind === 'tail-flags-byte' ? 3 : 0;
  p[P_CO_OFF] = co.kind === 'tail-byte' || co.kind === 'folio-byte' ? co.offset : 0;
  p[P_DTOR_OFF] = L.offCompoundDtor ?? -1;
  p[P_SIZE] = L.size;
  return p;
}

/**
 * The hot loop: classify RAM pfns [from, to) of a block of struct pages (`words`/`bytes` view the
 * block; its first struct page is pfn `blockPfn`; it holds `nPages`). Numbers and typed arrays only.
 * native/classify.c is the same loop in C; a change here is a change there (test/native-classify.test.ts
 * compares the two).
 */
function classifyRun(
  P: Int32Array,
  words: Int32Array,
  bytes: Uint8Array,
  excluded: Uint8Array,
  st: Float64Array,
  blockPfn: number,
  nPages: number,
  from: number,
  to: number,
  maxPfn: number,
): void {
  const W = P[P_W]!;
  const fF = P[P_FLAGS]!;
  const fM = P[P_MAPPING]!;
  const fMC = P[P_MAPCOUNT]!;
  const fRC = P[P_REFCOUNT]!;
  const fP = P[P_PRIVATE]!;
  const fH = P[P_HEAD]!;
  const level = P[P_LEVEL]!;
  const exFree = (level & DL_EXCLUDE_FREE) !== 0;
  const exCache = (level & DL_EXCLUDE_CACHE) !== 0;
  const exCachePri = (level & DL_EXCLUDE_CACHE_PRI) !== 0;
  const exUser = (level & DL_EXCLUDE_USER_DATA) !== 0;
  const exAnyCache = exCache || exCachePri || exUser;
  const dropRefZero = P[P_DROP_RZ] === 1;
  const headLo = P[P_HEAD_LO]!;
  const headHi = P[P_HEAD_HI]!;
  const lruLo = P[P_LRU_LO]!;
  const lruHi = P[P_LRU_HI]!;
  const swcLo = P[P_SWC_LO]!;
  const swcHi = P[P_SWC_HI]!;
  const hasSwb = P[P_HAS_SWB] === 1;
  const swbLo = P[P_SWB_LO]!;
  const swbHi = P[P_SWB_HI]!;
  const privLo = P[P_PRIV_LO]!;
  const privHi = P[P_PRIV_HI]!;
  const slabLo = P[P_SLAB_LO]!;
  const slabHi = P[P_SLAB_HI]!;
  const hwpLo = P[P_HWP_LO]!;
  const hwpHi = P[P_HWP_HI]!;
  const hasPgBuddy = P[P_HAS_PGBUDDY] === 1;
  const pgBuddyLo = P[P_PGBUDDY_LO]!;
  const pgBuddyHi = P[P_PGBUDDY_HI]!;
  const hasPgHuge = P[P_HAS_PGHUGE] === 1;
  const pgHugeLo = P[P_PGHUGE_LO]!;
  const pgHugeHi = P[P_PGHUGE_HI]!;
  const hasBuddyType = P[P_HAS_BUDDY_T] === 1;
  const buddyType = P[P_BUDDY_T]!;
  const hasOfflineType = P[P_HAS_OFFLINE_T] === 1;
  const offlineType = P[P_OFFLINE_T]!;
  const hasSlabType = P[P_HAS_SLAB_T] === 1;
  const slabType = P[P_SLAB_T]!;
  const hasHugetlbType = P[P_HAS_HUGE_T] === 1;
  const hugetlbType = P[P_HUGE_T]!;
  const hasUnacceptedType = P[P_HAS_UNACC_T] === 1;
  const unacceptedType = P[P_UNACC_T]!;
  const hugetlbDtor = P[P_HUGE_DTOR]!;
  const maxOrders = P[P_ORDERS]!;
  const coKind = P[P_CO_KIND]!;
  const coOff = P[P_CO_OFF]!;
  const dtorOff = P[P_DTOR_OFF]!;
  const size = P[P_SIZE]!;

  let skipUntil = st[S_SKIP_UNTIL]!;
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

  let examined = 0;
  let pfn = from > skipUntil ? from : skipUntil;
  for (; pfn < to; pfn++) {
    if (pfn < skipUntil) {
      pfn = skipUntil - 1;
      continue;
    }
    examined++;
    const i = pfn - blockPfn;
    const b = i * W;
    const fLo = words[b + fF]!;
    const fHi = words[b + fF + 1]!;
    const mapcount = words[b + fMC]!;
    const headWord = words[b + fH]!;
    const slab = ((fLo & slabLo) | (fHi & slabHi)) !== 0 || (hasSlabType && mapcount === slabType);

    // 0. compound tails are kept here (tails of excluded heads were excluded with the head).
    if ((headWord & 1) !== 0) {
      if (exFree && words[b + fRC] === 0) {
        rzExtra++;
        rzTail++;
        if (mapcount < -1) rzTyped++;
        if (dropRefZero) excluded[pfn >>> 3]! |= 1 << (pfn & 7);
      }
      continue;
    }

    // Compound order / destructor of a head, from its first tail page (makedumpfile's window rule).
    let order = 0;
    let huge = false;
    const isHead = ((fLo & headLo) | (fHi & headHi)) !== 0;
    if (isHead && (pfn & (PGMM_CACHED - 1)) !== PGMM_CACHED - 1 && i + 1 < nPages) {
      const nb = b + W;
      if (coKind === 1) order = bytes[(i + 1) * size + coOff]!;
      else if (coKind === 2) order = bytes[i * size + coOff]!;
      else if (coKind === 3) order = words[nb + fF]! & 0xff;
      if (hasHugetlbType) huge = mapcount === hugetlbType;
      else if (hasPgHuge) huge = ((words[nb + fF]! & pgHugeLo) | (words[nb + fF + 1]! & pgHugeHi)) !== 0;
      else if (dtorOff >= 0) huge = bytes[i * size + dtorOff] === hugetlbDtor;
      if (order >= 64 || (order < 30 ? pfn % (1 << order) : pfn % 2 ** order) !== 0) {
        badCompound++;
        order = 0;
      }
    } else if (isHead && hasHugetlbType) {
      huge = mapcount === hugetlbType;
    }

    let nr = order < 30 ? 1 << order : 2 ** order;
    let cls = 0; // 1 free 2 cache 3 privateCache 4 user 5 hwpoison 6 offline
    if (exFree) {
      const buddy = hasPgBuddy ? ((fLo & pgBuddyLo) | (fHi & pgBuddyHi)) !== 0 : hasBuddyType && !slab && mapcount === buddyType;
      if (buddy) {
        const pLo = words[b + fP]!;
        if (words[b + fP + 1] !== 0 || pLo < 0 || pLo >= maxOrders) badBuddy++;
        else {
          nr = 1 << pLo; // pLo < LENGTH(zone.free_area) ≤ 20
          cls = 1;
        }
      } else if (hasUnacceptedType && mapcount === unacceptedType) {
        nr = 1 << (maxOrders - 1);
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
      else if (hasOfflineType && !slab && mapcount === offlineType) cls = 6;
      else {
        if (exFree && words[b + fRC] === 0) {
          rzExtra++;
          if (mapcount < -1) rzTyped++;
          if (dropRefZero) excluded[pfn >>> 3]! |= 1 << (pfn & 7);
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
  st[S_SKIP_UNTIL] = skipUntil;
  st[S_READ]! += examined;
  st[S_CACHE]! += cCache;
  st[S_PRIV]! += cPriv;
  st[S_USER]! += cUser;
  st[S_FREE]! += cFree;
  st[S_OFFLINE]! += cOff;
  st[S_HWPOISON]! += cHwp;
  st[S_RZ_EXTRA]! += rzExtra;
  st[S_RZ_TAIL]! += rzTail;
  st[S_RZ_TYPED]! += rzTyped;
  st[S_BAD_BUDDY]! += badBuddy;
  st[S_BAD_COMPOUND]! += badCompound;
}

/**
 * One classification pass over the struct page array, fed block by block in pfn order. Exposed for
 * the synthetic benchmark and tests; `classifyPages` is the usual entry point.
 */
export class Classifier {
  readonly excluded: Uint8Array;
  private readonly params: Int32Array;
  private readonly st = new Float64Array(S_COUNT);
  private readonly native: NativeClassifier | null;

  constructor(
    readonly layout: PageLayout,
    readonly maxPfn: number,
    readonly dumpLevel: number,
    readonly rule: FreeRule,
    /** Use the native decode when it is built (false: the JavaScript loop). */
    native = true,
  ) {
    if (!Number.isInteger(dumpLevel) || dumpLevel < 0 || dumpLevel > 31) {
      throw new VcvError('VCV_ERR_USAGE', `dump level ${dumpLevel} is not 0–31`, { dumpLevel });
    }
    if (!Number.isSafeInteger(maxPfn) || maxPfn < 0 || maxPfn > 2 ** 40) {
      throw new VcvError('VCV_ERR_INTROSPECTION', `max pfn ${maxPfn} is impossible`, { maxPfn });
    }
    this.excluded = new Uint8Array(Math.ceil(maxPfn / 8));
    this.params = loopParams(layout, dumpLevel, this.dropsRefcountZero);
    this.native = native ? nativeClassifier(P_COUNT, S_COUNT) : null;
  }

  /** Which decode classifyBlock() runs. */
  get decoder(): 'native' | 'javascript' {
    return this.native ? 'native' : 'javascript';
  }

  private get dropsRefcountZero(): boolean {
    return this.rule === 'refcount-zero' && (this.dumpLevel & DL_EXCLUDE_FREE) !== 0;
  }

  get counts(): ClassCounts {
    const s = this.st;
    return { cache: s[S_CACHE]!, privateCache: s[S_PRIV]!, user: s[S_USER]!, free: s[S_FREE]!, offline: s[S_OFFLINE]!, hwpoison: s[S_HWPOISON]! };
  }
  get refcountZero(): RefcountZeroStats {
    const s = this.st;
    return { extraPages: s[S_RZ_EXTRA]!, tailPages: s[S_RZ_TAIL]!, typedPages: s[S_RZ_TYPED]!, excluded: this.dropsRefcountZero };
  }
  get anomalies(): ClassifyAnomalies {
    return { badBuddyOrder: this.st[S_BAD_BUDDY]!, badCompoundOrder: this.st[S_BAD_COMPOUND]! };
  }
  /** pfns below this were already excluded as part of a multi-page range. */
  get skipUntil(): number {
    return this.st[S_SKIP_UNTIL]!;
  }
  get structPagesRead(): number {
    return this.st[S_READ]!;
  }

  /**
   * Classify the RAM pfns [from, to) of a block of struct pages: `words`/`bytes` view the block,
   * whose first struct page is pfn `blockPfn` and which holds `nPages` struct pages. Blocks must come
   * in pfn order.
   */
  classifyBlock(words: Int32Array, bytes: Uint8Array, blockPfn: number, nPages: number, from: number, to: number): void {
    if (this.native) this.native.classifyRun(this.params, bytes, this.excluded, this.st, blockPfn, nPages, from, to, this.maxPfn);
    else classifyRun(this.params, words, bytes, this.excluded, this.st, blockPfn, nPages, from, to, this.maxPfn);
  }
}

/** True when the native decode is built and on: classifications need no JIT warm-up. */
export function nativeDecodeAvailable(): boolean {
  return nativeClassifier(P_COUNT, S_COUNT) !== null;
}

/**
 * Run the JavaScript hot loop once over a small synthetic struct page array (all page kinds, every
 * dump level), so V8 has optimised it before a crash needs it: the first classification of a small
 * guest is otherwise dominated by JIT warm-up. Takes a few tens of ms; the plugin calls it after
 * start-up when the native decode is not built (with it, there is nothing to warm up).
 */
export function warmUpClassifier(layout: PageLayout, pages = 65536): void {
  const size = layout.size;
  const buf = new ArrayBuffer(pages * size);
  const view = new DataView(buf);
  const flag = (f: FlagBit | undefined): bigint => (f ? BigInt(f.mask >>> 0) << (f.word === 1 ? 32n : 0n) : 0n);
  const head = BigInt(layout.headMaskLo >>> 0) | (BigInt(layout.headMaskHi >>> 0) << 32n);
  const zone = 0x0017ffffc0000000n; // node/zone bits high in flags, as on a real kernel
  const co = layout.compoundOrder;
  // Every branch of the hot loop must run here, with realistic magnitudes (int32 values outside the
  // small-integer range): V8 otherwise optimises for what it saw and deoptimises at the first real page.
  for (let p = 0; p < pages; p++) {
    const o = p * size;
    const kind = p % 32;
    const set64 = (off: number, v: bigint) => view.setBigUint64(o + off, v, true);
    const ptr = 0xffff888000000000n | (BigInt(p) << 12n) | 0x40n;
    set64(layout.offFlags, zone);
    set64(layout.offMapping, ptr);
    set64(layout.offCompoundHead, 0xffffea0000000000n | (BigInt(p) << 6n) | 0x8n);
    set64(layout.offPrivate, 0n);
    view.setInt32(o + layout.offMapcount, -1, true);
    view.setInt32(o + layout.offRefcount, 1, true);
    const tailOf = (headPfn: number, order: number) => {
      set64(layout.offCompoundHead, 0xffffea0000000000n | (BigInt(headPfn) << 6n) | 1n);
      view.setInt32(o + layout.offRefcount, 0, true);
      if (co.kind === 'tail-byte') view.setUint8(o + co.offset, order);
    };
    switch (kind) {
      case 0: // free block, order 0 or 3
        view.setInt32(o + layout.offMapcount, layout.buddyType ?? -129, true);
        view.setInt32(o + layout.offRefcount, 0, true);
        set64(layout.offPrivate, BigInt(p % 64 === 0 ? 3 : 0));
        break;
      case 1:
        set64(layout.offFlags, zone | flag(layout.pgLru));
        break;
      case 2:
        set64(layout.offFlags, zone | flag(layout.pgLru) | flag(layout.pgPrivate));
        break;
      case 3:
        set64(layout.offFlags, zone | flag(layout.pgLru) | flag(layout.pgSwapbacked));
        set64(layout.offMapping, ptr | 1n);
        break;
      case 4:
        set64(layout.offFlags, zone | flag(layout.pgSlab));
        break;
      case 5:
        set64(layout.offPrivate, ptr);
        break;
      case 6:
        set64(layout.offFlags, zone | flag(layout.pgSwapcache) | flag(layout.pgSwapbacked));
        break;
      case 7:
        set64(layout.offFlags, zone | flag(layout.pgHwpoison));
        break;
      case 8: {
        // compound head, order 0…2: anonymous, hugetlb or file
        const variant = (p >> 5) % 3;
        set64(layout.offFlags, zone | head | (variant === 2 ? flag(layout.pgLru) : 0n));
        set64(layout.offMapping, variant === 0 ? ptr | 1n : ptr);
        if (variant === 1 && layout.offCompoundDtor !== undefined && layout.hugetlbDtor !== undefined) {
          view.setUint8(o + layout.offCompoundDtor, layout.hugetlbDtor);
        }
        break;
      }
      case 9:
        tailOf(p - 1, (p >> 5) % 3);
        break;
      case 10:
        view.setInt32(o + layout.offMapcount, layout.offlineType ?? -257, true);
        break;
      case 11:
        view.setInt32(o + layout.offMapcount, -513, true);
        view.setInt32(o + layout.offRefcount, 0, true);
        break;
      case 12: // an impossible buddy order
        view.setInt32(o + layout.offMapcount, layout.buddyType ?? -129, true);
        set64(layout.offPrivate, 40n);
        break;
      case 13: // a misaligned compound head
        set64(layout.offFlags, zone | head);
        break;
      case 14:
        tailOf(p - 1, 2);
        break;
      case 15:
        view.setInt32(o + layout.offRefcount, 0, true);
        break;
      case 18: // free blocks of order 1 and 2 that start off a byte boundary of the bitmap
      case 20:
        view.setInt32(o + layout.offMapcount, layout.buddyType ?? -129, true);
        view.setInt32(o + layout.offRefcount, 0, true);
        set64(layout.offPrivate, kind === 18 ? 1n : 2n);
        break;
      default:
        break;
    }
  }
  const words = new Int32Array(buf);
  const bytes = new Uint8Array(buf);
  // Several calls over blocks (as classifyPages makes them), every level kind and both rules.
  const block = 8192;
  for (let round = 0; round < 3; round++) {
    for (const level of [31, 16, 2, 4, 8, 0]) {
      for (const rule of ['buddy', 'refcount-zero'] as const) {
        const c = new Classifier(layout, pages, level, rule, false);
        for (let b = 0; b < pages; b += block) c.classifyBlock(words, bytes, 0, pages, b, Math.min(pages, b + block));
      }
    }
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

/** Smallest read window, in struct pages (4 KiB of 64-byte struct pages): where free blocks follow each other. */
export const MIN_WINDOW_PAGES = 64;
/** Windows up to this many struct pages (64 KiB) are read synchronously: no thread-pool round trip per probe. */
export const SYNC_WINDOW_PAGES = 1024;
/** After this many synchronous windows in a row, let the event loop run (a long free region is all probes). */
const SYNC_WINDOWS_PER_TURN = 256;

/** A block's struct pages as physical runs; `at[i]` is the byte offset of `runs[i]` in the block. */
interface BlockRuns {
  readonly runs: readonly { pa: number; length: number }[];
  readonly at: readonly number[];
}

/** A read buffer with whole-buffer views (the hot loop indexes them from the window's first pfn). */
interface WindowBuffer {
  readonly words: Int32Array;
  readonly bytes: Uint8Array;
}

/** A window of struct pages being read or read: pfns [pfn, end) of block `k` into `buf`. */
interface Window {
  k: number;
  pfn: number;
  end: number;
  buf: WindowBuffer;
  done: Promise<void> | undefined;
}

/**
 * Classify all RAM pages below maxPfn.
 *
 * Reading follows the decode: struct pages the decode will skip — the tails of a free buddy block or
 * of an excluded compound page, beyond the window being decoded — are not read. The struct pages are
 * read in windows that start where the decode goes next and adapt to what the decode did with the
 * last one: a window mostly skipped (free memory: one head per 2^order pages) makes the next one
 * smaller, down to MIN_WINDOW_PAGES (one small synchronous read per free block); a window mostly
 * decoded (memory in use) makes the next one larger, up to `blockBytes`, and at full size up to
 * `readAhead` windows are read ahead while one is decoded. When the decode jumps past the window, the
 * next read starts at the jump target (read-ahead windows the jump passed are dropped: awaited, their
 * contents ignored). Cost: O(struct pages examined + free blocks and excluded compound pages), plus
 * what the window sizing over-reads where free and used memory alternate (at most the window size,
 * and the read-ahead, per change).
 *
 * Windows never cross a block (`blockBytes` of one section); a window that ends inside a 512-page
 * group decodes up to its last struct page but one, so a compound head always has its first tail
 * page in the buffer exactly when makedumpfile's PGMM_CACHED window would (see the header).
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
  const c = new Classifier(layout, maxPfn, level, rule, opts.native ?? true);
  const size = layout.size;
  const ram = ramPfnIntervals(ranges);
  const ramPages = ram.reduce((n, [s, e]) => n + (Math.min(e, maxPfn) - Math.min(s, maxPfn)), 0);
  const blockBytes = Math.max(PGMM_CACHED * size, Math.min(opts.blockBytes ?? 4 * 1024 * 1024, 256 * 1024 * 1024));
  const blockPages = Math.floor(blockBytes / size / PGMM_CACHED) * PGMM_CACHED;

  // The blocks: pieces of present sections that intersect RAM, in pfn order (a window never crosses one).
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

  const wMax = blocks.reduce((m, b) => Math.max(m, b.n), 1);
  const wMin = Math.min(wMax, MIN_WINDOW_PAGES);
  const syncMax = Math.min(wMax, SYNC_WINDOW_PAGES);
  const depth = Math.max(1, Math.min(opts.readAhead ?? 1, 64));
  let bytesRead = 0;

  const cannotRead = (blk: Block, va: bigint, e: unknown): unknown => {
    if (e instanceof VcvError && (e.code === 'VCV_ERR_TRANSLATION' || e.code === 'VCV_ERR_MEMORY_RANGE')) {
      return new VcvError(
        'VCV_ERR_INTROSPECTION',
        `the struct pages of pfns ${hex(blk.pfn)}…${hex(blk.pfn + blk.n)} (section ${blk.section.nr}, at ${hex(va)}) cannot be read: ${e.message}`,
        { section: blk.section.nr, va: hex(va), cause: e.code },
        { cause: e },
      );
    }
    return e;
  };
  // Each block's struct pages are translated once, when the decode first needs one of them.
  const runsCache: (BlockRuns | undefined)[] = new Array(blocks.length);
  const runsOf = (k: number): BlockRuns => {
    let r = runsCache[k];
    if (r) return r;
    const blk = blocks[k]!;
    const va = (blk.section.base + BigInt(blk.pfn) * BigInt(size)) & 0xffffffffffffffffn;
    try {
      const runs = kmem.paging.translateRange(va, blk.n * size);
      const at: number[] = [];
      let o = 0;
      for (const run of runs) {
        at.push(o);
        o += run.length;
      }
      r = { runs, at };
    } catch (e) {
      throw cannotRead(blk, va, e);
    }
    runsCache[k] = r;
    return r;
  };
  /** The physical pieces of bytes [off, off + len) of block k's struct pages. */
  const pieces = (k: number, off: number, len: number, each: (pa: number, bufOff: number, n: number) => void): void => {
    const { runs, at } = runsOf(k);
    let lo = 0;
    let hi = runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (at[mid]! <= off) lo = mid;
      else hi = mid - 1;
    }
    let done = 0;
    for (let i = lo; done < len && i < runs.length; i++) {
      const run = runs[i]!;
      const from = off + done - at[i]!;
      const n = Math.min(len - done, run.length - from);
      each(run.pa + from, done, n);
      done += n;
    }
  };
  const vaOf = (k: number, pfn: number): bigint => (blocks[k]!.section.base + BigInt(pfn) * BigInt(size)) & 0xffffffffffffffffn;
  const readSync = (w: Window): void => {
    const blk = blocks[w.k]!;
    const len = (w.end - w.pfn) * size;
    const off = (w.pfn - blk.pfn) * size;
    try {
      const { runs } = runsOf(w.k);
      if (runs.length === 1) kmem.source.readSync(runs[0]!.pa + off, w.buf.bytes, 0, len);
      else pieces(w.k, off, len, (pa, o, n) => kmem.source.readSync(pa, w.buf.bytes, o, n));
    } catch (e) {
      throw cannotRead(blk, vaOf(w.k, w.pfn), e);
    }
    bytesRead += len;
  };
  const readAsync = async (w: Window): Promise<void> => {
    const blk = blocks[w.k]!;
    const len = (w.end - w.pfn) * size;
    try {
      const parts: [number, number, number][] = [];
      pieces(w.k, (w.pfn - blk.pfn) * size, len, (pa, o, n) => parts.push([pa, o, n]));
      for (const [pa, o, n] of parts) await kmem.source.read(pa, w.buf.bytes, o, n);
    } catch (e) {
      throw cannotRead(blk, vaOf(w.k, w.pfn), e);
    }
    bytesRead += len;
  };

  // Buffers: one for synchronous windows, up to `depth` for windows read asynchronously (the one
  // being decoded and the read-ahead), allocated when first needed.
  const newBuffer = (pages: number): WindowBuffer => {
    const ab = new ArrayBuffer(pages * size);
    return { words: new Int32Array(ab), bytes: new Uint8Array(ab) };
  };
  let syncBuf: WindowBuffer | undefined;
  let syncWin: Window | undefined;
  const free: WindowBuffer[] = [];
  let allocated = 0;
  const takeBuffer = (): WindowBuffer => {
    const b = free.pop();
    if (b) return b;
    if (allocated >= depth + 1) throw new VcvError('VCV_ERR_INTERNAL', 'classifier: no free read buffer', {});
    allocated++;
    return newBuffer(wMax);
  };

  /** The end of a window of about `w` pages from pfn p in block k: 512-aligned when ≥ 1024 pages. */
  const windowEnd = (k: number, p: number, w: number): number => {
    const blk = blocks[k]!;
    const end = blk.pfn + blk.n;
    const q = p + w;
    if (q >= end) return end;
    if (w >= 2 * PGMM_CACHED) return q - (q % PGMM_CACHED);
    return q;
  };
  /** Where a window's decode stops: at its end, or one short when the next struct page is a tail it may need. */
  const decodeEnd = (w: Window): number => {
    const blk = blocks[w.k]!;
    return w.end === blk.pfn + blk.n || w.end % PGMM_CACHED === 0 ? w.end : w.end - 1;
  };

  const queue: Window[] = []; // read-ahead, in pfn order
  const drop = async (w: Window): Promise<void> => {
    // A dropped read may still be writing into its buffer: reuse the buffer only once it has settled.
    if (w.done) await w.done.catch(() => undefined);
    free.push(w.buf);
  };

  let W = Math.min(wMax, 4 * wMin);
  let syncRun = 0;
  let k = 0;
  let next = blocks.length ? blocks[0]!.ram[0]![0] : 0;
  try {
    for (;;) {
      aborted(opts.signal);
      // Where the decode goes next: the first RAM pfn of a block at or after max(next, skipUntil).
      const t = Math.max(next, c.skipUntil);
      let p = -1;
      for (; k < blocks.length; k++) {
        for (const [a, z] of blocks[k]!.ram) {
          if (z > t) {
            p = Math.max(a, t);
            break;
          }
        }
        if (p >= 0) break;
        runsCache[k] = undefined;
      }
      if (p < 0) break;
      const blk = blocks[k]!;

      // A read-ahead window that holds p, or a new window at p (read-ahead the jump passed is dropped).
      while (queue.length > 0 && (queue[0]!.k < k || (queue[0]!.k === k && decodeEnd(queue[0]!) <= p))) await drop(queue.shift()!);
      let win: Window;
      if (queue.length > 0 && queue[0]!.k === k && queue[0]!.pfn <= p) {
        win = queue.shift()!;
        syncRun = 0;
        await win.done;
      } else {
        while (queue.length > 0) await drop(queue.shift()!);
        const end = windowEnd(k, p, W);
        if (end - p <= syncMax) {
          syncBuf ??= newBuffer(syncMax);
          win = syncWin ??= { k, pfn: p, end, buf: syncBuf, done: undefined };
          win.k = k;
          win.pfn = p;
          win.end = end;
          if (++syncRun >= SYNC_WINDOWS_PER_TURN) {
            syncRun = 0;
            await new Promise((r) => setImmediate(r));
          }
          readSync(win);
        } else {
          win = { k, pfn: p, end, buf: takeBuffer(), done: undefined };
          syncRun = 0;
          await readAsync(win);
        }
      }

      // Dense memory at full window size: keep up to `depth` windows in flight behind this one.
      if (W === wMax && win.buf !== syncBuf) {
        let last = queue.length > 0 ? queue[queue.length - 1]! : win;
        while (queue.length < depth - 1 && (free.length > 0 || allocated < depth + 1)) {
          let nk = last.k;
          let np = decodeEnd(last);
          if (np >= blocks[nk]!.pfn + blocks[nk]!.n) {
            nk++;
            if (nk >= blocks.length) break;
            np = blocks[nk]!.ram[0]![0];
          }
          const w: Window = { k: nk, pfn: np, end: windowEnd(nk, np, wMax), buf: takeBuffer(), done: undefined };
          w.done = readAsync(w);
          w.done.catch(() => undefined); // observed when its turn comes, or dropped
          queue.push(w);
          last = w;
        }
      }

      // Decode [p, decodeEnd) of the window, RAM pieces only.
      const stop = decodeEnd(win);
      const before = c.structPagesRead;
      for (const [a, z] of blk.ram) {
        const from = Math.max(a, p);
        const to = Math.min(z, stop);
        if (to > from) c.classifyBlock(win.buf.words, win.buf.bytes, win.pfn, win.end - win.pfn, from, to);
      }
      if (win.buf !== syncBuf) free.push(win.buf);
      next = stop;

      // Size the next window by what this one was: mostly decoded → larger (twice: never more than
      // what was decoded to get here), mostly skipped or ending in a jump past it → smaller.
      const examined = c.structPagesRead - before;
      const span = stop - p;
      if (c.skipUntil > stop || examined * 4 < span) W = Math.max(wMin, W >> 3);
      else if (examined * 2 >= span) W = Math.min(wMax, W * 2);
    }
  } finally {
    // Never leave reads writing into buffers after we return (or throw).
    await Promise.allSettled(queue.map((w) => w.done));
  }

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
    decoder: c.decoder,
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
