/**
 * x86-64 kernel address translation: a page-table walk from the kernel's own top-level table, as
 * makedumpfile's vtop4_x86_64() does (arch/x86_64.c):
 *
 *   root (physical) = SYMBOL(init_top_pgt) − __START_KERNEL_map (0xffffffff80000000) + NUMBER(phys_base)
 *   levels          = 5 when NUMBER(pgtable_l5_enabled) != 0, else 4
 *   entry address   = entry & ~0xfff0000000000fff & ~NUMBER(sme_mask)   (bits 12…51, SME C-bit stripped)
 *   leaves          = 1 GiB (PUD with PSE), 2 MiB (PMD with PSE), 4 KiB (PTE)
 *
 * Everything read from guest memory is untrusted: every entry is checked (present, PSE only where a
 * leaf may be, address below 2^52, leaf alignment), a walk has at most `levels` steps, a range walk
 * advances at least one page per step, and any failure is VCV_ERR_TRANSLATION. Physical addresses
 * are numbers (< 2^52); virtual addresses are bigint; the walk itself uses 32-bit halves so no BigInt
 * is created per step.
 */
import type { MemorySource } from '@vicover/core';
import { VcvError, isVcvError } from '@vicover/errors';
import { hex } from './reader.js';
import type { Vmcoreinfo } from './vmcoreinfo.js';

export const START_KERNEL_MAP = 0xffffffff80000000n;
export const PAGE_SIZE = 4096;
export const SIZE_2M = 2 * 1024 * 1024;
export const SIZE_1G = 1024 * 1024 * 1024;
/** Largest physical address + 1 on x86-64 (MAX_PHYSMEM_BITS ≤ 52). */
export const PHYS_LIMIT = 2 ** 52;

/** Page-table entry bits. */
export const PTE_PRESENT = 0x1;
export const PTE_PSE = 0x80;

export interface PagingConfig {
  /** Physical address of the top-level table (PML4 or PML5). */
  readonly rootPa: number;
  readonly levels: 4 | 5;
  /** SME encryption mask stripped from entries (NUMBER(sme_mask)); 0n when absent. */
  readonly smeMask: bigint;
  /** Table pages kept in the cache (default 64). */
  readonly cachePages?: number;
}

/** The paging configuration VMCOREINFO describes. Throws VCV_ERR_VMCOREINFO_INVALID / _TRANSLATION. */
export function pagingFromVmcoreinfo(info: Vmcoreinfo): PagingConfig {
  const top = info.symbol('init_top_pgt');
  const physBase = info.numberBig('phys_base');
  const root = top - START_KERNEL_MAP + physBase;
  if (top < START_KERNEL_MAP || root < 0n || root >= BigInt(PHYS_LIMIT) || root % BigInt(PAGE_SIZE) !== 0n) {
    throw new VcvError(
      'VCV_ERR_TRANSLATION',
      `the top-level page table is at an impossible physical address: init_top_pgt ${hex(top)} − __START_KERNEL_map + phys_base ${physBase} = ${root < 0n ? '-' : ''}${hex(root < 0n ? -root : root)}`,
      { initTopPgt: hex(top), physBase: physBase.toString() },
    );
  }
  const l5 = info.optNumberBig('pgtable_l5_enabled') ?? 0n;
  const sme = info.optNumberBig('sme_mask') ?? 0n;
  if (sme < 0n || sme >= 1n << 64n) {
    throw new VcvError('VCV_ERR_VMCOREINFO_INVALID', `NUMBER(sme_mask) ${sme} is not a mask`, { key: 'NUMBER(sme_mask)' });
  }
  return { rootPa: Number(root), levels: l5 !== 0n ? 5 : 4, smeMask: sme };
}

/** A physically contiguous piece of a virtual range. */
export interface PhysRun {
  readonly pa: number;
  readonly length: number;
}

const TWO32 = 2 ** 32;

/** The 9-bit table index at bit `shift` of a va split into 32-bit halves. */
function indexAt(hi: number, lo: number, shift: number): number {
  if (shift >= 32) return (hi >>> (shift - 32)) & 0x1ff;
  if (shift + 9 <= 32) return (lo >>> shift) & 0x1ff;
  return ((lo >>> shift) | (hi << (32 - shift))) & 0x1ff;
}

export class X86_64Paging {
  readonly rootPa: number;
  readonly levels: 4 | 5;
  readonly smeMask: bigint;
  private readonly addrMaskHi: number;
  private readonly addrMaskLo: number;
  private readonly cache = new Map<number, DataView>();
  private readonly cachePages: number;
  /** Leaf size of the last successful translate() (4 KiB, 2 MiB or 1 GiB). */
  lastLeafSize = PAGE_SIZE;

  constructor(
    private readonly source: MemorySource,
    cfg: PagingConfig,
  ) {
    if (!Number.isSafeInteger(cfg.rootPa) || cfg.rootPa < 0 || cfg.rootPa >= PHYS_LIMIT || cfg.rootPa % PAGE_SIZE !== 0) {
      throw new VcvError('VCV_ERR_TRANSLATION', `top-level page table address ${cfg.rootPa} is invalid`, {});
    }
    this.rootPa = cfg.rootPa;
    this.levels = cfg.levels;
    this.smeMask = cfg.smeMask;
    // ~0xfff0000000000fff & ~sme_mask, as two 32-bit halves.
    const sme = cfg.smeMask & 0xffffffffffffffffn;
    this.addrMaskHi = (0x000fffff & ~Number((sme >> 32n) & 0xffffffffn)) >>> 0;
    this.addrMaskLo = (0xfffff000 & ~Number(sme & 0xffffffffn)) >>> 0;
    this.cachePages = Math.max(4, Math.min(4096, cfg.cachePages ?? 64));
  }

  static fromVmcoreinfo(source: MemorySource, info: Vmcoreinfo, cachePages?: number): X86_64Paging {
    return new X86_64Paging(source, { ...pagingFromVmcoreinfo(info), ...(cachePages ? { cachePages } : {}) });
  }

  /** Drop cached table pages (e.g. after guest memory changed). */
  clearCache(): void {
    this.cache.clear();
  }

  private table(pa: number, va: bigint, level: number): DataView {
    const hit = this.cache.get(pa);
    if (hit) return hit;
    const page = new Uint8Array(PAGE_SIZE);
    try {
      this.source.readSync(pa, page, 0, PAGE_SIZE);
    } catch (e) {
      if (isVcvError(e, 'VCV_ERR_MEMORY_RANGE')) {
        throw new VcvError(
          'VCV_ERR_TRANSLATION',
          `translating ${hex(va)}: the level-${level} page table at physical ${hex(pa)} is outside guest RAM`,
          { va: hex(va), level, tablePa: hex(pa) },
          { cause: e },
        );
      }
      throw e;
    }
    if (this.cache.size >= this.cachePages) {
      const oldest = this.cache.keys().next().value as number;
      this.cache.delete(oldest);
    }
    const view = new DataView(page.buffer);
    this.cache.set(pa, view);
    return view;
  }

  private fail(va: bigint, why: string, details: Record<string, unknown> = {}): never {
    throw new VcvError('VCV_ERR_TRANSLATION', `cannot translate ${hex(va)}: ${why}`, { va: hex(va), ...details });
  }

  /** True when va is canonical for the paging mode. */
  isCanonical(va: bigint): boolean {
    if (va < 0n || va >= 1n << 64n) return false;
    const bits = this.levels === 5 ? 57n : 48n;
    const top = va >> (bits - 1n);
    return top === 0n || top === (1n << (65n - bits)) - 1n;
  }

  /**
   * Translate a kernel virtual address to a guest-physical address. Sets `lastLeafSize`.
   * Throws VCV_ERR_TRANSLATION when the address is not mapped or the tables are nonsense.
   */
  translate(va: bigint): number {
    if (!this.isCanonical(va)) this.fail(va, `not a canonical ${this.levels}-level address`);
    const hi = Number((va >> 32n) & 0xffffffffn);
    const lo = Number(va & 0xffffffffn);
    let table = this.rootPa;
    for (let level: number = this.levels; level >= 1; level--) {
      const shift = 12 + 9 * (level - 1);
      const idx = indexAt(hi, lo, shift);
      const view = this.table(table, va, level);
      const eLo = view.getUint32(idx * 8, true);
      const eHi = view.getUint32(idx * 8 + 4, true);
      if ((eLo & PTE_PRESENT) === 0) {
        this.fail(va, `level-${level} entry ${idx} of the table at ${hex(table)} is not present`, { level, tablePa: hex(table) });
      }
      const addr = (eHi & this.addrMaskHi) * TWO32 + ((eLo & this.addrMaskLo) >>> 0);
      const pse = (eLo & PTE_PSE) !== 0;
      if (level === 3 && pse) {
        // 1 GiB leaf: bits 12…29 of the entry are PAT/reserved, not address.
        const base = addr - (addr % SIZE_1G);
        this.lastLeafSize = SIZE_1G;
        return base + (lo & (SIZE_1G - 1));
      }
      if (level === 2 && pse) {
        const base = addr - (addr % SIZE_2M);
        this.lastLeafSize = SIZE_2M;
        return base + (lo & (SIZE_2M - 1));
      }
      if (level === 1) {
        this.lastLeafSize = PAGE_SIZE;
        return addr + (lo & (PAGE_SIZE - 1));
      }
      if (pse) this.fail(va, `level-${level} entry ${idx} has the page-size bit, which is reserved at that level`, { level });
      table = addr;
    }
    /* c8 ignore next */
    this.fail(va, 'walk did not end');
  }

  /** translate(), or -1 when the address is not mapped (other errors still throw). */
  tryTranslate(va: bigint): number {
    try {
      return this.translate(va);
    } catch (e) {
      if (isVcvError(e, 'VCV_ERR_TRANSLATION')) return -1;
      throw e;
    }
  }

  /**
   * Translate [va, va + length) into physically contiguous runs (merged when adjacent), so a caller
   * reads, e.g., a section's struct page array (vmemmap, usually 2 MiB pages) in a few big reads.
   * Throws VCV_ERR_TRANSLATION when any page of the range is unmapped.
   */
  translateRange(va: bigint, length: number): PhysRun[] {
    if (!Number.isSafeInteger(length) || length < 0 || length > 2 ** 40) {
      this.fail(va, `range length ${length} is invalid`);
    }
    const runs: { pa: number; length: number }[] = [];
    let cur = va;
    let left = length;
    while (left > 0) {
      const pa = this.translate(cur);
      const leaf = this.lastLeafSize;
      const inLeaf = pa % leaf;
      const n = Math.min(left, leaf - inLeaf);
      const last = runs[runs.length - 1];
      if (last && last.pa + last.length === pa) last.length += n;
      else runs.push({ pa, length: n });
      cur += BigInt(n);
      left -= n;
    }
    return runs;
  }
}
