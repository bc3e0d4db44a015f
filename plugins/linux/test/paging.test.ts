import { describe, expect, it } from 'vitest';
import { isVcvError } from '@vicover/errors';
import { X86_64Paging, pagingFromVmcoreinfo, SIZE_1G, SIZE_2M, PAGE_SIZE } from '../src/paging.js';
import { KernelMemory } from '../src/kmem.js';
import { PageTableBuilder, PhysAllocator, SyntheticMemory, buildSyntheticKernel } from '../src/synth/index.js';
import { Vmcoreinfo } from '../src/vmcoreinfo.js';

const MiB = 1024 * 1024;

function setup(levels: 4 | 5, smeMask = 0n) {
  const mem = new SyntheticMemory([{ start: 0, end: 2048 * MiB }]);
  const alloc = new PhysAllocator(64 * MiB, 2048 * MiB);
  const pt = new PageTableBuilder(mem, alloc, levels, smeMask);
  const paging = new X86_64Paging(mem, { rootPa: pt.rootPa, levels, smeMask });
  return { mem, alloc, pt, paging };
}

function errCode(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (!isVcvError(e)) throw e;
    return e.code;
  }
  return undefined;
}

describe.each([4, 5] as const)('x86-64 %i-level translation', (levels) => {
  const hiVa = levels === 5 ? 0xff11000000000000n : 0xffff888000000000n;

  it('walks 4 KiB, 2 MiB and 1 GiB leaves', () => {
    const { pt, paging } = setup(levels);
    pt.map(hiVa + 0x1000n, 0x5000, PAGE_SIZE);
    pt.map(hiVa + 0x40000000n + 0x200000n, 0x800000, SIZE_2M);
    pt.map(hiVa + 0x80000000n, SIZE_1G, SIZE_1G);
    pt.map(0xffffffff81000000n, 0x2000000, SIZE_2M);
    expect(paging.translate(hiVa + 0x1234n)).toBe(0x5234);
    expect(paging.lastLeafSize).toBe(PAGE_SIZE);
    expect(paging.translate(hiVa + 0x40200000n + 0x12345n)).toBe(0x812345);
    expect(paging.lastLeafSize).toBe(SIZE_2M);
    expect(paging.translate(hiVa + 0x80000000n + 0x12345678n)).toBe(SIZE_1G + 0x12345678);
    expect(paging.lastLeafSize).toBe(SIZE_1G);
    expect(paging.translate(0xffffffff81001234n)).toBe(0x2001234);
  });

  it('yields merged physical runs for a range', () => {
    const { pt, paging } = setup(levels);
    // Two adjacent 2 MiB leaves on contiguous physical memory, then a 4 KiB page elsewhere.
    pt.map(hiVa, 0x1000000, SIZE_2M);
    pt.map(hiVa + BigInt(SIZE_2M), 0x1000000 + SIZE_2M, SIZE_2M);
    pt.map(hiVa + BigInt(2 * SIZE_2M), 0x3000000, PAGE_SIZE);
    const runs = paging.translateRange(hiVa + 0x1000n, 2 * SIZE_2M);
    expect(runs).toEqual([
      { pa: 0x1001000, length: 2 * SIZE_2M - 0x1000 },
      { pa: 0x3000000, length: 0x1000 },
    ]);
    expect(() => paging.translateRange(hiVa, 3 * SIZE_2M)).toThrow(/not present/);
  });

  it('strips the SME mask from entries', () => {
    const sme = 1n << 47n;
    const { pt, paging } = setup(levels, sme);
    pt.map(hiVa + 0x200000n, 0x400000, SIZE_2M);
    pt.map(hiVa + 0x1000n, 0x7000, PAGE_SIZE);
    expect(paging.translate(hiVa + 0x200010n)).toBe(0x400010);
    expect(paging.translate(hiVa + 0x1010n)).toBe(0x7010);
    // Without stripping it the address would be ≥ 2^47 and outside RAM.
    const naive = new X86_64Paging(pt['mem' as never] as SyntheticMemory, { rootPa: pt.rootPa, levels, smeMask: 0n });
    expect(errCode(() => naive.translate(hiVa + 0x1010n))).toBe('VCV_ERR_TRANSLATION');
  });

  it('refuses non-canonical, unmapped and nonsense addresses with VCV_ERR_TRANSLATION', () => {
    const { mem, pt, paging } = setup(levels);
    pt.map(hiVa, 0x5000, PAGE_SIZE);
    expect(errCode(() => paging.translate(levels === 5 ? 0x0100000000000000n : 0x0000800000000000n))).toBe('VCV_ERR_TRANSLATION');
    expect(errCode(() => paging.translate(hiVa + 0x10000000n))).toBe('VCV_ERR_TRANSLATION');
    expect(errCode(() => paging.translate(-1n))).toBe('VCV_ERR_TRANSLATION');
    expect(errCode(() => paging.translate(1n << 64n))).toBe('VCV_ERR_TRANSLATION');
    // A top-level entry with PSE (reserved there).
    pt.setRawEntry(hiVa, levels, 0x200000n | 0x83n);
    paging.clearCache();
    expect(errCode(() => paging.translate(hiVa))).toBe('VCV_ERR_TRANSLATION');
    // A table outside RAM.
    const p2 = setup(levels);
    p2.pt.map(hiVa, 0x5000, PAGE_SIZE);
    p2.pt.setRawEntry(hiVa, levels - 1, 0x7ff00000000n | 0x3n);
    expect(() => p2.paging.translate(hiVa)).toThrow(/outside guest RAM/);
    void mem;
  });

  it('terminates on page-table loops (an entry pointing back at the root)', () => {
    const { pt, paging } = setup(levels);
    pt.map(hiVa, 0x5000, PAGE_SIZE);
    for (let l = levels - 1; l >= 1; l--) pt.setRawEntry(hiVa, l, BigInt(pt.rootPa) | 0x3n);
    // Every level now points at the root: the walk is bounded by the number of levels.
    const r = (() => {
      try {
        return paging.translate(hiVa);
      } catch (e) {
        expect(isVcvError(e)).toBe(true);
        return -1;
      }
    })();
    expect(typeof r).toBe('number');
    expect(() => paging.translateRange(hiVa, 64 * PAGE_SIZE)).not.toThrow(TypeError);
  });

  it('random page tables never throw anything but VcvError', () => {
    const { mem, pt, paging } = setup(levels);
    pt.map(hiVa, 0x5000, PAGE_SIZE);
    let seed = levels * 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    // Fill the root and a few other pages with random entries.
    for (const base of [pt.rootPa, 64 * MiB + 4096, 64 * MiB + 8192]) {
      const page = new Uint8Array(PAGE_SIZE);
      for (let i = 0; i < PAGE_SIZE; i++) page[i] = Math.floor(rnd() * 256);
      mem.write(base, page);
    }
    paging.clearCache();
    for (let i = 0; i < 2000; i++) {
      const va = (BigInt(Math.floor(rnd() * 2 ** 32)) << 32n) | BigInt(Math.floor(rnd() * 2 ** 32));
      try {
        const pa = paging.translate(va);
        expect(pa).toBeGreaterThanOrEqual(0);
        expect(pa).toBeLessThan(2 ** 52);
      } catch (e) {
        expect(isVcvError(e)).toBe(true);
      }
    }
  });
});

describe('pagingFromVmcoreinfo', () => {
  it('computes the root from init_top_pgt, phys_base (negative under KASLR) and the level', () => {
    const k = buildSyntheticKernel({ ramBytes: 256 * MiB, levels: 5, physBase: -0x1000000n, kernelOffset: 0x3000000n });
    const cfg = pagingFromVmcoreinfo(k.info);
    expect(cfg.levels).toBe(5);
    expect(cfg.rootPa).toBe(k.pa(k.symbols.init_top_pgt!));
    const paging = new X86_64Paging(k.mem, cfg);
    expect(paging.translate(k.symbols.init_top_pgt!)).toBe(cfg.rootPa);
    const kmem = new KernelMemory(k.mem, paging);
    expect(kmem.u64(k.symbols.prb!)).toBe(k.symbols.printk_rb_static);
  });

  it('rejects an impossible root', () => {
    const base = buildSyntheticKernel({ ramBytes: 64 * MiB }).info.text;
    const bad = Vmcoreinfo.parse(base.replace(/NUMBER\(phys_base\)=.*/, 'NUMBER(phys_base)=-9223372036854775808'));
    expect(errCode(() => pagingFromVmcoreinfo(bad))).toBe('VCV_ERR_TRANSLATION');
    const unaligned = Vmcoreinfo.parse(base.replace(/NUMBER\(phys_base\)=.*/, 'NUMBER(phys_base)=123'));
    expect(errCode(() => pagingFromVmcoreinfo(unaligned))).toBe('VCV_ERR_TRANSLATION');
    const low = Vmcoreinfo.parse(base.replace(/SYMBOL\(init_top_pgt\)=.*/, 'SYMBOL(init_top_pgt)=1000'));
    expect(errCode(() => pagingFromVmcoreinfo(low))).toBe('VCV_ERR_TRANSLATION');
  });
});
