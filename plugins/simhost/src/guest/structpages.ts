/**
 * Struct pages of a pageblock of each kind, encoded with the layout parsed from the guest's own
 * VMCOREINFO (plugin-linux's `encodeStructPage`), so the introspection reads exactly what was meant.
 * One 32 KiB template per kind; per pageblock only the compound-head pointers of huge-page tails
 * change (they point at the head's struct page).
 */
import { encodeStructPage, type PageLayout, type StructPageFields } from '@vicover/plugin-linux';
import { Kind, KERNEL_PATTERN, KP_SLAB_END, KP_TABLE_END, KP_ZERO_END, PB_PAGES } from './plan.js';
import type { FreeTails } from './spec.js';

/** Node/zone bits Linux keeps high in page->flags (ZONE_NORMAL, node 0, as on the test guests). */
const ZONE_FLAGS = 0x0017ffffc0000000n;
/** 6.1 flag bits VMCOREINFO does not carry (include/linux/page-flags.h): only for realism. */
const PG_REFERENCED = 1n << 1n;
const PG_UPTODATE = 1n << 2n;
const PG_RESERVED = 1n << 12n;
/** 6.1 page types live in _mapcount: PAGE_TYPE_BASE with the type bit cleared. PG_table = 0x200. */
const PAGE_TABLE_MAPCOUNT = ~0x200;
/** enum compound_dtor_id: TRANSHUGE_PAGE_DTOR (≠ HUGETLB_PAGE_DTOR, so the page is not hugetlb). */
const TRANSHUGE_PAGE_DTOR = 3;
const DIRECT_MAP = 0xffff888000000000n;

export interface StructPageTemplates {
  readonly layout: PageLayout;
  /** One template per kind (32 KiB each); KREGION is "reserved". */
  readonly byKind: readonly Buffer[];
  /** Whether struct page `idx` of a pageblock of `kind` is written (false: a hole, with `freeTails: holes`). */
  written(kind: number, idx: number): boolean;
  /** Patch the compound-head pointers of a USER_THP pageblock whose head is `pfn`, in `buf` at `off`. */
  patchThp(buf: Buffer, off: number, pfn: number): void;
}

export function buildTemplates(layout: PageLayout, vmemmap: bigint, freeTails: FreeTails, privateEvery: number): StructPageTemplates {
  const size = layout.size;
  const f = (...bits: (bigint | { word: 0 | 1; mask: number } | undefined)[]) => {
    let v = ZONE_FLAGS;
    for (const b of bits) {
      if (b === undefined) continue;
      v |= typeof b === 'bigint' ? b : BigInt(b.mask >>> 0) << (b.word === 1 ? 32n : 0n);
    }
    return v;
  };
  const headMask = BigInt(layout.headMaskLo >>> 0) | (BigInt(layout.headMaskHi >>> 0) << 32n);
  const make = (fill: (idx: number) => StructPageFields | null): Buffer => {
    const b = Buffer.alloc(PB_PAGES * size);
    const view = new DataView(b.buffer, b.byteOffset, b.length);
    for (let i = 0; i < PB_PAGES; i++) {
      const fields = fill(i);
      if (fields) encodeStructPage(layout, view, i * size, fields);
    }
    return b;
  };
  const holes = freeTails === 'holes';
  const tail: StructPageFields = { flags: f(), mapcount: -1, refcount: 0 };
  const freeHead = (order: number): StructPageFields => ({ flags: f(), mapcount: layout.buddyType ?? -129, refcount: 0, private: BigInt(order) });
  const anonMapping = DIRECT_MAP + 0x7a000000n + 1n; // an anon_vma | PAGE_MAPPING_ANON
  const fileMapping = DIRECT_MAP + 0x7b000000n; // an address_space
  const reserved: StructPageFields = { flags: f(PG_RESERVED), mapcount: -1, refcount: 1 };

  const byKind: Buffer[] = [];
  byKind[Kind.KREGION] = make(() => reserved);
  byKind[Kind.FREE_HEAD10] = make((i) => (i === 0 ? freeHead(10) : holes ? null : tail));
  byKind[Kind.FREE_TAIL10] = make(() => (holes ? null : tail));
  byKind[Kind.FREE9] = make((i) => (i === 0 ? freeHead(9) : holes ? null : tail));
  byKind[Kind.USER_THP] = make((i) => {
    if (i === 0) return { flags: f(headMask, layout.pgLru, layout.pgSwapbacked, PG_UPTODATE), mapping: anonMapping, mapcount: 0, refcount: 1 };
    if (i === 1 || !holes) return { flags: f(), mapcount: -1, refcount: 0, compoundHead: 1n }; // head pointer patched per pageblock
    return null;
  });
  {
    // The first tail carries the compound order and destructor (6.1: OFFSET(page.compound_order/dtor)).
    const t = byKind[Kind.USER_THP]!;
    if (layout.compoundOrder.kind === 'tail-byte') t[size + layout.compoundOrder.offset] = 9;
    else if (layout.compoundOrder.kind === 'tail-flags-byte') t[size + layout.offFlags] = 9;
    else if (layout.compoundOrder.kind === 'folio-byte') t[layout.compoundOrder.offset] = 9;
    if (layout.offCompoundDtor !== undefined) t[layout.offCompoundDtor] = TRANSHUGE_PAGE_DTOR;
  }
  byKind[Kind.USER_4K] = make(() => ({ flags: f(layout.pgLru, layout.pgSwapbacked, PG_UPTODATE), mapping: anonMapping, mapcount: 0, refcount: 1 }));
  byKind[Kind.CACHE] = make((i) =>
    i % privateEvery === 0
      ? { flags: f(layout.pgLru, layout.pgPrivate, PG_UPTODATE, PG_REFERENCED), mapping: fileMapping, mapcount: -1, refcount: 2, private: DIRECT_MAP + 0x7c000000n + BigInt(i * 104) }
      : { flags: f(layout.pgLru, PG_UPTODATE, PG_REFERENCED), mapping: fileMapping, mapcount: -1, refcount: 1 },
  );
  byKind[Kind.KERNEL] = make((i) => {
    const p = i % KERNEL_PATTERN;
    if (p < KP_SLAB_END) return { flags: f(layout.pgSlab), mapping: DIRECT_MAP + 0x7d000000n, mapcount: -1, refcount: 1 };
    if (p < KP_TABLE_END) return { flags: f(), mapcount: PAGE_TABLE_MAPCOUNT, refcount: 1 };
    if (p < KP_ZERO_END) return { flags: f(PG_RESERVED), mapcount: -1, refcount: 1 };
    return p === KP_ZERO_END ? freeHead(1) : tail;
  });

  const headLo = (pfn: number) => {
    const off = pfn * size;
    return { lo: (Number(vmemmap & 0xffffffffn) + off) % 2 ** 32, hi: Number(vmemmap >> 32n) + Math.floor((Number(vmemmap & 0xffffffffn) + off) / 2 ** 32) };
  };
  const ch = layout.offCompoundHead;
  return {
    layout,
    byKind,
    written(kind, idx) {
      if (!holes) return true;
      if (kind === Kind.FREE_TAIL10) return false;
      if (kind === Kind.FREE_HEAD10 || kind === Kind.FREE9) return idx === 0;
      if (kind === Kind.USER_THP) return idx <= 1;
      return true;
    },
    patchThp(buf, off, pfn) {
      const { lo, hi } = headLo(pfn);
      const last = holes ? 2 : PB_PAGES;
      for (let i = 1; i < last; i++) {
        const at = off + i * size + ch;
        buf.writeUInt32LE((lo | 1) >>> 0, at);
        buf.writeUInt32LE(hi >>> 0, at + 4);
      }
    },
  };
}
