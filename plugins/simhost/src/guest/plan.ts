/**
 * The page-level picture of a simulated guest, one byte per 2 MiB pageblock (512 pages): what the
 * pageblock holds (free buddy blocks, a huge page, anonymous pages, page cache, kernel allocations, or
 * fixed kernel structures). Everything per page — its struct page, whether it holds data, its class —
 * follows from the kind and the page's index in the pageblock, so no per-page structure is ever kept
 * (a 1 TiB guest's plan is 512 KiB).
 *
 * Linux groups allocations by migrate type in pageblocks of the same size (pageblock_order 9), which
 * is why kernel memory sits in whole pageblocks here; the buddy allocator hands out high addresses
 * first, which is why free memory gathers at low addresses (`freeSpread` blurs the boundary).
 */
import type { GuestSpec } from './spec.js';

export const PAGE = 4096;
export const PB_PAGES = 512;
export const PB_BYTES = PB_PAGES * PAGE;

export const Kind = Object.freeze({
  /** Fixed kernel structures (image, page tables, mem_section, vmemmap, printk …): read from the file. */
  KREGION: 0,
  /** First half of an order-10 free block. */
  FREE_HEAD10: 1,
  /** Second half of an order-10 free block. */
  FREE_TAIL10: 2,
  /** One order-9 free block. */
  FREE9: 3,
  /** One anonymous transparent huge page (order 9). */
  USER_THP: 4,
  /** 512 anonymous 4 KiB pages. */
  USER_4K: 5,
  /** 512 page-cache pages, every n-th with PG_private. */
  CACHE: 6,
  /** Unmovable kernel allocations: slab, page tables, other, a few zeroed pages and small free blocks. */
  KERNEL: 7,
});
export type KindValue = (typeof Kind)[keyof typeof Kind];
export const KIND_NAMES = ['kregion', 'free-head10', 'free-tail10', 'free9', 'user-thp', 'user-4k', 'cache', 'kernel'] as const;

/** The 32-page pattern of a KERNEL pageblock (repeated 16 times). */
export const KERNEL_PATTERN = 32;
export const KP_SLAB_END = 20; // [0, 20) slab
export const KP_TABLE_END = 24; // [20, 24) page tables
export const KP_OTHER_END = 28; // [24, 28) other kernel allocations
export const KP_ZERO_END = 30; // [28, 30) zeroed kernel pages (kept, zero content)
//                                 [30, 32) one free order-1 buddy block

/** Does page `idx` (0–511) of a pageblock of `kind` hold data (non-zero content)? KREGION: see the file. */
export function pageHasData(kind: number, idx: number): boolean {
  switch (kind) {
    case Kind.USER_THP:
    case Kind.USER_4K:
    case Kind.CACHE:
      return true;
    case Kind.KERNEL:
      return idx % KERNEL_PATTERN < KP_OTHER_END;
    default:
      return false;
  }
}

/** Pages per level-31 class, per pageblock of each kind (KREGION: counted from the file). */
export interface ClassCounts {
  free: number;
  cache: number;
  privateCache: number;
  user: number;
  /** Kept by the struct-page rules, all-zero content (makedumpfile's "Pages filled with zero"). */
  zero: number;
  /** Kept with data (makedumpfile's "Remaining pages"). */
  remaining: number;
}

export function zeroCounts(): ClassCounts {
  return { free: 0, cache: 0, privateCache: 0, user: 0, zero: 0, remaining: 0 };
}

export function kindCounts(kind: number, privateEvery: number): ClassCounts {
  const c = zeroCounts();
  switch (kind) {
    case Kind.FREE_HEAD10:
    case Kind.FREE_TAIL10:
    case Kind.FREE9:
      c.free = PB_PAGES;
      break;
    case Kind.USER_THP:
    case Kind.USER_4K:
      c.user = PB_PAGES;
      break;
    case Kind.CACHE:
      c.privateCache = Math.ceil(PB_PAGES / privateEvery);
      c.cache = PB_PAGES - c.privateCache;
      break;
    case Kind.KERNEL: {
      const reps = PB_PAGES / KERNEL_PATTERN;
      c.free = reps * (KERNEL_PATTERN - KP_ZERO_END);
      c.zero = reps * (KP_ZERO_END - KP_OTHER_END);
      c.remaining = reps * KP_OTHER_END;
      break;
    }
    default:
      break;
  }
  return c;
}

/**
 * Vmemmap pages (4 KiB = 64 struct pages) of a pageblock's 8 that stay all-zero when tails are holes:
 * only the first one holds the head of a free block or a huge page; a free order-10 block's second
 * half has no head at all.
 */
export function zeroVmemmapPages(kind: number): number {
  switch (kind) {
    case Kind.FREE_HEAD10:
    case Kind.FREE9:
    case Kind.USER_THP:
      return 7;
    case Kind.FREE_TAIL10:
      return 8;
    default:
      return 0;
  }
}

/** A small, fast, seedable PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0 || 0x9e3779b9;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Assign a kind to every pageblock not already marked KREGION. `kinds` has one byte per pageblock;
 * KREGION entries are left alone.
 */
export function assignKinds(spec: GuestSpec, kinds: Uint8Array): void {
  const rnd = prng(spec.seed);
  const n = kinds.length;
  const open: number[] = [];
  for (let i = 0; i < n; i++) if (kinds[i] !== Kind.KREGION) open.push(i);
  const m = open.length;
  // Free: the lowest keys, key = position + spread × noise (free memory gathers at low addresses).
  const nFree = Math.min(m, Math.round((spec.freePercent / 100) * n));
  const keys = new Float64Array(m);
  for (let j = 0; j < m; j++) keys[j] = j / m + spec.freeSpread * rnd();
  const order = new Uint32Array(m);
  for (let j = 0; j < m; j++) order[j] = j;
  order.sort((a, b) => keys[a]! - keys[b]!);
  const FREE = 255; // placeholder until pairs are formed
  for (let r = 0; r < nFree; r++) kinds[open[order[r]!]!] = FREE;
  // The rest, shuffled: kernel, cache, then anonymous (huge pages first).
  const used: number[] = [];
  for (let r = nFree; r < m; r++) used.push(open[order[r]!]!);
  for (let j = used.length - 1; j > 0; j--) {
    const k = Math.floor(rnd() * (j + 1));
    const t = used[j]!;
    used[j] = used[k]!;
    used[k] = t;
  }
  const nKernel = Math.round((spec.kernelPercent / 100) * used.length);
  const nCache = Math.round((spec.cachePercent / 100) * (used.length - nKernel));
  const nUser = used.length - nKernel - nCache;
  const nThp = Math.round((spec.thpPercent / 100) * nUser);
  used.forEach((pb, j) => {
    kinds[pb] = j < nKernel ? Kind.KERNEL : j < nKernel + nCache ? Kind.CACHE : j < nKernel + nCache + nThp ? Kind.USER_THP : Kind.USER_4K;
  });
  // Free pageblocks pair into order-10 blocks where two aligned ones meet (MAX_ORDER 11 on 6.1).
  for (let i = 0; i < n; i++) {
    if (kinds[i] !== FREE) continue;
    if (i % 2 === 0 && i + 1 < n && kinds[i + 1] === FREE) {
      kinds[i] = Kind.FREE_HEAD10;
      kinds[i + 1] = Kind.FREE_TAIL10;
      i++;
    } else {
      kinds[i] = Kind.FREE9;
    }
  }
}

/** Pageblocks per kind. */
export function kindHistogram(kinds: Uint8Array): number[] {
  const h = new Array<number>(KIND_NAMES.length).fill(0);
  for (let i = 0; i < kinds.length; i++) h[kinds[i]!]!++;
  return h;
}
