/**
 * struct page as the classifier reads it: field offsets, flag bits and page-type values, every one
 * taken from VMCOREINFO (kernel/vmcore_info.c). Nothing here is a hard-coded kernel constant except
 * PAGE_MAPPING_ANON (bit 0 of page->mapping, unchanged since 2.6 and hard-coded by makedumpfile too).
 *
 * The same layout is used to *encode* struct pages (`encodeStructPage`), so synthetic guests built for
 * tests and the simulated host agree with the classifier by construction.
 */
import { VcvError } from '@vicover/errors';
import type { Vmcoreinfo } from './vmcoreinfo.js';

/** Bit 0 of page->mapping marks an anonymous page (include/linux/page-flags.h). */
export const PAGE_MAPPING_ANON = 1;

/** A page-flag bit as (32-bit word index, mask) so the hot loop tests it without BigInt. */
export interface FlagBit {
  readonly word: 0 | 1;
  readonly mask: number;
}

/** Where the order of a compound page lives. */
export type CompoundOrderSource =
  /** ≤ 6.2: a byte at OFFSET(page.compound_order) of the first tail page. */
  | { readonly kind: 'tail-byte'; readonly offset: number }
  /** 6.3–6.5: a byte at OFFSET(folio._folio_order), relative to the head page. */
  | { readonly kind: 'folio-byte'; readonly offset: number }
  /** 6.6+: the low byte of the first tail page's flags (folio._flags_1). */
  | { readonly kind: 'tail-flags-byte' }
  /** Unknown: compound heads are treated as single pages (their tails are kept — safe). */
  | { readonly kind: 'none' };

export interface PageLayout {
  readonly size: number;
  readonly offFlags: number;
  readonly offMapping: number;
  readonly offMapcount: number;
  readonly offRefcount: number;
  readonly offPrivate: number;
  readonly offCompoundHead: number;
  readonly compoundOrder: CompoundOrderSource;
  /** Offset of the compound destructor byte relative to the head page (6.1: first tail + OFFSET(page.compound_dtor)). */
  readonly offCompoundDtor: number | undefined;
  readonly pgLru: FlagBit;
  readonly pgPrivate: FlagBit;
  readonly pgSwapcache: FlagBit;
  readonly pgSwapbacked: FlagBit | undefined;
  /** PG_slab (≤ 6.9); newer kernels mark slab pages by page type (slabType). */
  readonly pgSlab: FlagBit | undefined;
  readonly pgHwpoison: FlagBit | undefined;
  /** PG_buddy (≤ 2.6.37 only). */
  readonly pgBuddy: FlagBit | undefined;
  /** PG_hugetlb (6.6–6.8), tested on the first tail page. */
  readonly pgHugetlb: FlagBit | undefined;
  /** PG_head_mask as two 32-bit halves. */
  readonly headMaskLo: number;
  readonly headMaskHi: number;
  /** Page-type values of _mapcount (int32), undefined when the kernel does not export them. */
  readonly buddyType: number | undefined;
  readonly offlineType: number | undefined;
  readonly slabType: number | undefined;
  readonly hugetlbType: number | undefined;
  readonly unacceptedType: number | undefined;
  /** NUMBER(HUGETLB_PAGE_DTOR) (≤ 6.8 with hugetlb). */
  readonly hugetlbDtor: number | undefined;
  /** LENGTH(zone.free_area): NR_PAGE_ORDERS; a free block's order must be below it. */
  readonly freeAreaOrders: number;
}

function invalid(what: string): VcvError {
  return new VcvError('VCV_ERR_VMCOREINFO_INVALID', `VMCOREINFO: ${what}`, {});
}

function flagBit(info: Vmcoreinfo, name: string): FlagBit | undefined {
  const nr = info.optNumber(name);
  if (nr === undefined) return undefined;
  if (!Number.isInteger(nr) || nr < 0 || nr > 63) throw invalid(`NUMBER(${name}) = ${nr} is not a bit number`);
  return nr < 32 ? { word: 0, mask: (1 << nr) >>> 0 } : { word: 1, mask: (1 << (nr - 32)) >>> 0 };
}

function needFlag(info: Vmcoreinfo, name: string): FlagBit {
  const f = flagBit(info, name);
  if (!f) throw invalid(`NUMBER(${name}) is missing`);
  return f;
}

/** A type value compared with the int32 _mapcount, cast like makedumpfile's `(int)NUMBER(x)`. */
function typeValue(info: Vmcoreinfo, name: string): number | undefined {
  const v = info.optNumberBig(name);
  return v === undefined ? undefined : Number(BigInt.asIntN(32, v));
}

export function pageLayoutFromVmcoreinfo(info: Vmcoreinfo): PageLayout {
  const size = info.size('page');
  if (size < 32 || size > 1024 || size % 8 !== 0) throw invalid(`SIZE(page) = ${size} is impossible`);
  const field = (name: string, width: number): number => {
    const off = info.offset(name);
    if (off % width !== 0 || off + width > size) throw invalid(`OFFSET(${name}) = ${off} does not fit SIZE(page) = ${size}`);
    return off;
  };
  const offFlags = field('page.flags', 8);
  const offMapping = field('page.mapping', 8);
  const offMapcount = field('page._mapcount', 4);
  const offRefcount = info.has('OFFSET(page._refcount)') ? field('page._refcount', 4) : field('page._count', 4);
  const offPrivate = field('page.private', 8);
  const offCompoundHead = info.has('OFFSET(page.compound_head)') ? field('page.compound_head', 8) : field('page.compound_info', 8);

  let compoundOrder: CompoundOrderSource = { kind: 'none' };
  let offCompoundDtor: number | undefined;
  const pco = info.optOffset('page.compound_order');
  const fco = info.optOffset('folio._folio_order');
  const version = info.kernelVersion;
  // makedumpfile treats offset 0 as "absent" for these two; so do we.
  if (pco !== undefined && pco > 0) {
    if (pco >= size) throw invalid(`OFFSET(page.compound_order) = ${pco} is outside SIZE(page)`);
    compoundOrder = { kind: 'tail-byte', offset: pco };
  } else if (fco !== undefined && fco > 0) {
    if (fco >= 2 * size) throw invalid(`OFFSET(folio._folio_order) = ${fco} is outside the first tail page`);
    compoundOrder = { kind: 'folio-byte', offset: fco };
  } else if (version && (version[0] > 6 || (version[0] === 6 && version[1] >= 6))) {
    compoundOrder = { kind: 'tail-flags-byte' };
  }
  const pcd = info.optOffset('page.compound_dtor');
  const fcd = info.optOffset('folio._folio_dtor');
  if (pcd !== undefined && pcd > 0) {
    if (pcd >= size) throw invalid(`OFFSET(page.compound_dtor) = ${pcd} is outside SIZE(page)`);
    offCompoundDtor = size + pcd;
  } else if (fcd !== undefined && fcd > 0) {
    if (fcd >= 2 * size) throw invalid(`OFFSET(folio._folio_dtor) = ${fcd} is outside the first tail page`);
    offCompoundDtor = fcd;
  }

  const headMask = info.numberBig('PG_head_mask');
  if (headMask <= 0n || headMask >= 1n << 64n) throw invalid(`NUMBER(PG_head_mask) = ${headMask} is not a mask`);
  const freeAreaOrders = info.length('zone.free_area');
  if (freeAreaOrders < 1 || freeAreaOrders > 20) throw invalid(`LENGTH(zone.free_area) = ${freeAreaOrders} is impossible`);

  const layout: PageLayout = {
    size,
    offFlags,
    offMapping,
    offMapcount,
    offRefcount,
    offPrivate,
    offCompoundHead,
    compoundOrder,
    offCompoundDtor,
    pgLru: needFlag(info, 'PG_lru'),
    pgPrivate: needFlag(info, 'PG_private'),
    pgSwapcache: needFlag(info, 'PG_swapcache'),
    pgSwapbacked: flagBit(info, 'PG_swapbacked'),
    pgSlab: flagBit(info, 'PG_slab'),
    pgHwpoison: flagBit(info, 'PG_hwpoison'),
    pgBuddy: flagBit(info, 'PG_buddy'),
    pgHugetlb: flagBit(info, 'PG_hugetlb'),
    headMaskLo: Number(headMask & 0xffffffffn) >>> 0,
    headMaskHi: Number((headMask >> 32n) & 0xffffffffn) >>> 0,
    buddyType: typeValue(info, 'PAGE_BUDDY_MAPCOUNT_VALUE'),
    offlineType: typeValue(info, 'PAGE_OFFLINE_MAPCOUNT_VALUE'),
    slabType: typeValue(info, 'PAGE_SLAB_MAPCOUNT_VALUE'),
    hugetlbType: typeValue(info, 'PAGE_HUGETLB_MAPCOUNT_VALUE'),
    unacceptedType: typeValue(info, 'PAGE_UNACCEPTED_MAPCOUNT_VALUE'),
    hugetlbDtor: info.optNumber('HUGETLB_PAGE_DTOR'),
    freeAreaOrders,
  };
  if (layout.buddyType === undefined && layout.pgBuddy === undefined) {
    throw invalid('neither NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE) nor NUMBER(PG_buddy) is present: free pages cannot be recognised');
  }
  if (layout.pgSlab === undefined && layout.slabType === undefined) {
    throw invalid('neither NUMBER(PG_slab) nor NUMBER(PAGE_SLAB_MAPCOUNT_VALUE) is present');
  }
  return layout;
}

/** Fields of one struct page, for building synthetic guests. Absent fields are written as 0. */
export interface StructPageFields {
  flags?: bigint;
  mapping?: bigint;
  mapcount?: number;
  refcount?: number;
  private?: bigint;
  compoundHead?: bigint;
}

/** Write one struct page at `view`'s byte offset `off` (little-endian). */
export function encodeStructPage(layout: PageLayout, view: DataView, off: number, f: StructPageFields): void {
  for (let i = 0; i < layout.size; i++) view.setUint8(off + i, 0);
  view.setBigUint64(off + layout.offFlags, f.flags ?? 0n, true);
  view.setBigUint64(off + layout.offMapping, f.mapping ?? 0n, true);
  view.setInt32(off + layout.offMapcount, f.mapcount ?? -1, true);
  view.setInt32(off + layout.offRefcount, f.refcount ?? 0, true);
  view.setBigUint64(off + layout.offPrivate, f.private ?? 0n, true);
  view.setBigUint64(off + layout.offCompoundHead, f.compoundHead ?? 0n, true);
}

/** The flags word with the given PG_ bits set. */
export function flagsOf(...bits: (FlagBit | undefined)[]): bigint {
  let v = 0n;
  for (const b of bits) {
    if (!b) continue;
    v |= BigInt(b.mask >>> 0) << (b.word === 1 ? 32n : 0n);
  }
  return v;
}
