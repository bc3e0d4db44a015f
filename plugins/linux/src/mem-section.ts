/**
 * SPARSEMEM: from the mem_section array to each section's struct page array.
 *
 * Layout facts (all sizes and offsets from VMCOREINFO):
 * - `SYMBOL(mem_section)` is the *value* of the `mem_section` pointer (kernel/vmcore_info.c uses
 *   VMCOREINFO_SYMBOL_ARRAY under SPARSEMEM_EXTREME): the address of the root array, in the direct map.
 * - The root array has `LENGTH(mem_section)` (= NR_SECTION_ROOTS) pointers; each non-NULL root points
 *   to SECTIONS_PER_ROOT = PAGE_SIZE / SIZE(mem_section) `struct mem_section`s.
 * - Section n covers pfns [n << PFN_SECTION_SHIFT, (n+1) << PFN_SECTION_SHIFT), PFN_SECTION_SHIFT =
 *   NUMBER(SECTION_SIZE_BITS) − PAGE_SHIFT; there are 1 << (NUMBER(MAX_PHYSMEM_BITS) − SECTION_SIZE_BITS)
 *   sections.
 * - `section_mem_map` (at OFFSET(mem_section.section_mem_map)) holds the section's struct page array
 *   minus its first pfn (sparse_encode_mem_map), with flag bits in the low bits:
 *     bit 0 SECTION_MARKED_PRESENT, bit 1 SECTION_HAS_MEM_MAP, bit 2 SECTION_IS_ONLINE,
 *     bit 3 SECTION_IS_EARLY, bit 4 SECTION_TAINT_ZONE_DEVICE (5.12+); SECTION_MAP_LAST_BIT = 1 << 5
 *     on 6.1; newer kernels may add one more bit.
 *   These bit values are not in VMCOREINFO (kernel constants, include/linux/mmzone.h).
 *
 * Decision: a section is used when both PRESENT and HAS_MEM_MAP are set (makedumpfile checks PRESENT,
 * drgn HAS_MEM_MAP; requiring both is the safe intersection), and the flags are masked with
 * ~((1 << 6) − 1) as drgn does: that covers 6.1's five bits and one more, and cannot cut into a valid
 * pointer because the encoded value is the vmemmap base (see below), which is far more than 64-byte
 * aligned. A struct page's address is then `(section_mem_map & ~0x3f) + pfn × SIZE(page)`.
 *
 * With SPARSEMEM_VMEMMAP (always on x86-64) the encoded value *is* the vmemmap base for every section
 * (mem_map of section = vmemmap + first pfn), so all present sections must agree on it — a cheap,
 * strong check against corrupt section entries. When VMCOREINFO has SYMBOL(vmemmap) (newer kernels) it
 * must agree too.
 */
import { VcvError } from '@vicover/errors';
import type { KernelMemory } from './kmem.js';
import { hex } from './reader.js';
import type { Vmcoreinfo } from './vmcoreinfo.js';

export const SECTION_MARKED_PRESENT = 0x1;
export const SECTION_HAS_MEM_MAP = 0x2;
/** Flag bits masked off section_mem_map (drgn: ~((1 << 6) − 1)). */
export const SECTION_FLAG_BITS = 6;
const FLAG_MASK = (1n << BigInt(SECTION_FLAG_BITS)) - 1n;
const U64 = (1n << 64n) - 1n;

export interface MemSectionLayout {
  /** Root array address (SYMBOL(mem_section)). */
  readonly rootArray: bigint;
  /** LENGTH(mem_section): number of roots. */
  readonly roots: number;
  readonly sizeofMemSection: number;
  readonly offSectionMemMap: number;
  readonly sectionsPerRoot: number;
  readonly sectionSizeBits: number;
  readonly maxPhysmemBits: number;
  /** log2(pages per section). */
  readonly pfnSectionShift: number;
  readonly pagesPerSection: number;
  readonly sizeofPage: number;
  /** SYMBOL(vmemmap) when the kernel exports it. */
  readonly vmemmap?: bigint;
}

function bad(what: string, details: Record<string, unknown> = {}): VcvError {
  return new VcvError('VCV_ERR_VMCOREINFO_INVALID', `VMCOREINFO: ${what}`, details);
}

export function memSectionLayout(info: Vmcoreinfo): MemSectionLayout {
  const pageShift = Math.log2(info.pageSize);
  const sectionSizeBits = info.number('SECTION_SIZE_BITS');
  const maxPhysmemBits = info.number('MAX_PHYSMEM_BITS');
  const sizeofMemSection = info.size('mem_section');
  const offSectionMemMap = info.offset('mem_section.section_mem_map');
  const sizeofPage = info.size('page');
  const roots = info.length('mem_section');
  if (maxPhysmemBits < 32 || maxPhysmemBits > 52) throw bad(`NUMBER(MAX_PHYSMEM_BITS) = ${maxPhysmemBits} is outside 32…52`);
  if (sectionSizeBits <= pageShift || sectionSizeBits > maxPhysmemBits || sectionSizeBits > 40) {
    throw bad(`NUMBER(SECTION_SIZE_BITS) = ${sectionSizeBits} is impossible`);
  }
  if (sizeofMemSection < 8 || sizeofMemSection > info.pageSize || sizeofMemSection % 8 !== 0) {
    throw bad(`SIZE(mem_section) = ${sizeofMemSection} is impossible`);
  }
  if (offSectionMemMap + 8 > sizeofMemSection || offSectionMemMap % 8 !== 0) {
    throw bad(`OFFSET(mem_section.section_mem_map) = ${offSectionMemMap} is outside SIZE(mem_section)`);
  }
  if (sizeofPage < 32 || sizeofPage > 1024 || sizeofPage % 8 !== 0) throw bad(`SIZE(page) = ${sizeofPage} is impossible`);
  const sectionsPerRoot = Math.floor(info.pageSize / sizeofMemSection);
  const nrSections = 2 ** (maxPhysmemBits - sectionSizeBits);
  if (roots < 1 || roots * sectionsPerRoot < nrSections) {
    // Only SPARSEMEM_EXTREME exists on x86-64; a root count that cannot cover the sections is corrupt.
    throw bad(`LENGTH(mem_section) = ${roots} roots × ${sectionsPerRoot} do not cover ${nrSections} sections`);
  }
  const vmemmap = info.optSymbol('vmemmap');
  return {
    rootArray: info.symbol('mem_section'),
    roots,
    sizeofMemSection,
    offSectionMemMap,
    sectionsPerRoot,
    sectionSizeBits,
    maxPhysmemBits,
    pfnSectionShift: sectionSizeBits - pageShift,
    pagesPerSection: 2 ** (sectionSizeBits - pageShift),
    sizeofPage,
    ...(vmemmap !== undefined ? { vmemmap } : {}),
  };
}

/** A present section with a struct page array. */
export interface MemSection {
  readonly nr: number;
  readonly startPfn: number;
  /** One past the last pfn of the section. */
  readonly endPfn: number;
  /** Raw section_mem_map (flags included). */
  readonly rawMap: bigint;
  /** Kernel virtual address of the struct page of pfn 0 in this section's encoding (flags masked). */
  readonly base: bigint;
}

export interface SectionWalk {
  readonly sections: MemSection[];
  /** The common vmemmap base of all present sections (undefined when there are none). */
  readonly vmemmapBase: bigint | undefined;
  /** Sections marked present but without a mem map (skipped). */
  readonly presentWithoutMap: number;
}

/** Virtual address of pfn's struct page in `section`. */
export function structPageVa(layout: MemSectionLayout, section: MemSection, pfn: number): bigint {
  return (section.base + BigInt(pfn) * BigInt(layout.sizeofPage)) & U64;
}

/**
 * Walk mem_section for sections below `maxPfn`. Reads only the roots that cover [0, maxPfn).
 * Throws VCV_ERR_INTROSPECTION when sections disagree about the vmemmap base, VCV_ERR_TRANSLATION
 * when a root or section array is unmapped.
 */
export function walkMemSections(kmem: KernelMemory, layout: MemSectionLayout, maxPfn: number): SectionWalk {
  const nSections = Math.ceil(maxPfn / layout.pagesPerSection);
  const nRoots = Math.min(layout.roots, Math.ceil(nSections / layout.sectionsPerRoot));
  const sections: MemSection[] = [];
  let presentWithoutMap = 0;
  let vmemmapBase: bigint | undefined;
  if (nRoots === 0) return { sections, vmemmapBase, presentWithoutMap };
  const rootBytes = kmem.struct(layout.rootArray, nRoots * 8, 'mem_section root array');
  for (let r = 0; r < nRoots; r++) {
    const rootPtr = rootBytes.u64(r * 8);
    if (rootPtr === 0n) continue;
    const first = r * layout.sectionsPerRoot;
    const count = Math.min(layout.sectionsPerRoot, nSections - first);
    if (count <= 0) break;
    const arr = kmem.struct(rootPtr, count * layout.sizeofMemSection, `mem_section root ${r}`);
    for (let i = 0; i < count; i++) {
      const nr = first + i;
      const map = arr.u64(i * layout.sizeofMemSection + layout.offSectionMemMap);
      if (map === 0n) continue;
      const flags = Number(map & FLAG_MASK);
      if ((flags & SECTION_MARKED_PRESENT) === 0) continue;
      if ((flags & SECTION_HAS_MEM_MAP) === 0) {
        presentWithoutMap++;
        continue;
      }
      const base = map & ~FLAG_MASK & U64;
      if (vmemmapBase === undefined) vmemmapBase = base;
      else if (base !== vmemmapBase) {
        throw new VcvError(
          'VCV_ERR_INTROSPECTION',
          `mem_section[${nr}] encodes struct pages at ${hex(base)}, but earlier sections use the vmemmap base ${hex(vmemmapBase)}`,
          { section: nr, base: hex(base), vmemmap: hex(vmemmapBase) },
        );
      }
      const startPfn = nr * layout.pagesPerSection;
      sections.push({ nr, startPfn, endPfn: startPfn + layout.pagesPerSection, rawMap: map, base });
    }
  }
  if (layout.vmemmap !== undefined && vmemmapBase !== undefined && layout.vmemmap !== vmemmapBase) {
    throw new VcvError(
      'VCV_ERR_INTROSPECTION',
      `mem_section encodes the vmemmap base ${hex(vmemmapBase)} but SYMBOL(vmemmap) is ${hex(layout.vmemmap)}`,
      { base: hex(vmemmapBase), vmemmap: hex(layout.vmemmap) },
    );
  }
  return { sections, vmemmapBase, presentWithoutMap };
}
