/**
 * Builds x86-64 page tables in synthetic guest memory (4- or 5-level, 4 KiB / 2 MiB / 1 GiB leaves),
 * the inverse of paging.ts. Tables are allocated from a PhysAllocator; entries carry present|rw
 * (and PSE for large leaves) plus the SME mask when one is given.
 */
import { VcvError } from '@vicover/errors';
import { PAGE_SIZE, PTE_PRESENT, PTE_PSE, SIZE_1G, SIZE_2M } from '../paging.js';
import type { PhysAllocator, SyntheticRam } from './memory.js';

export type LeafSize = typeof PAGE_SIZE | typeof SIZE_2M | typeof SIZE_1G;
const PTE_RW = 0x2;

function index(va: bigint, level: number): number {
  return Number((va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
}

export class PageTableBuilder {
  readonly rootPa: number;

  constructor(
    private readonly mem: SyntheticRam,
    private readonly alloc: PhysAllocator,
    readonly levels: 4 | 5,
    readonly smeMask = 0n,
    /** Where the top-level table lives (default: a fresh page from the allocator). */
    rootPa?: number,
  ) {
    if (rootPa === undefined) this.rootPa = this.newTable();
    else {
      this.mem.write(rootPa, new Uint8Array(PAGE_SIZE));
      this.rootPa = rootPa;
    }
  }

  private newTable(): number {
    const pa = this.alloc.alloc(PAGE_SIZE, PAGE_SIZE);
    this.mem.write(pa, new Uint8Array(PAGE_SIZE));
    return pa;
  }

  private entry(pa: number, flags: number): bigint {
    return BigInt(pa) | BigInt(flags) | this.smeMask;
  }

  /** Physical address of the entry for `va` at `level` (walking/creating the tables above it). */
  entryAddress(va: bigint, level: number, create = true): number {
    let table = this.rootPa;
    for (let l = this.levels; l > level; l--) {
      const ea = table + index(va, l) * 8;
      const e = this.mem.readU64(ea);
      if ((e & 1n) === 0n) {
        if (!create) throw new VcvError('VCV_ERR_INTERNAL', `no level-${l} table for 0x${va.toString(16)}`, {});
        const t = this.newTable();
        this.mem.writeU64(ea, this.entry(t, PTE_PRESENT | PTE_RW));
        table = t;
      } else {
        if ((e & BigInt(PTE_PSE)) !== 0n) throw new VcvError('VCV_ERR_INTERNAL', `0x${va.toString(16)} is inside a large leaf`, {});
        table = Number(e & 0x000ffffffffff000n & ~this.smeMask);
      }
    }
    return table + index(va, level) * 8;
  }

  /** Map one leaf: va → pa, both aligned to `size`. */
  map(va: bigint, pa: number, size: LeafSize = PAGE_SIZE): void {
    if (va % BigInt(size) !== 0n || pa % size !== 0) throw new VcvError('VCV_ERR_INTERNAL', 'unaligned synthetic mapping', {});
    const level = size === SIZE_1G ? 3 : size === SIZE_2M ? 2 : 1;
    const flags = PTE_PRESENT | PTE_RW | (level > 1 ? PTE_PSE : 0);
    this.mem.writeU64(this.entryAddress(va, level), this.entry(pa, flags));
  }

  /** Map [va, va+length) → [pa, …) with leaves of `size`. */
  mapRange(va: bigint, pa: number, length: number, size: LeafSize = PAGE_SIZE): void {
    for (let off = 0; off < length; off += size) this.map(va + BigInt(off), pa + off, size);
  }

  /** Overwrite a raw entry (hostile tests). */
  setRawEntry(va: bigint, level: number, value: bigint): void {
    this.mem.writeU64(this.entryAddress(va, level, false), value);
  }
}
