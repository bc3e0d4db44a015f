import { describe, expect, it } from 'vitest';
import { KernelMemory } from '../src/kmem.js';
import { memSectionLayout, structPageVa, walkMemSections } from '../src/mem-section.js';
import { X86_64Paging } from '../src/paging.js';
import { buildSyntheticKernel } from '../src/synth/index.js';
import { Vmcoreinfo } from '../src/vmcoreinfo.js';

const MiB = 1024 * 1024;

function open(levels: 4 | 5, ramBytes = 512 * MiB) {
  const k = buildSyntheticKernel({ ramBytes, levels });
  const kmem = new KernelMemory(k.mem, X86_64Paging.fromVmcoreinfo(k.mem, k.info));
  return { k, kmem, layout: memSectionLayout(k.info) };
}

describe('mem_section walk', () => {
  it.each([4, 5] as const)('finds every present section and the vmemmap base (%i-level)', (levels) => {
    const { k, kmem, layout } = open(levels);
    expect(layout.sectionsPerRoot).toBe(128);
    expect(layout.pagesPerSection).toBe(32768);
    expect(layout.roots).toBe(levels === 5 ? 262144 : 4096);
    const w = walkMemSections(kmem, layout, k.mem.maxPfn);
    expect(w.sections.map((s) => s.nr)).toEqual([0, 1, 2, 3]);
    expect(w.vmemmapBase).toBe(k.vmemmap);
    expect(structPageVa(layout, w.sections[2]!, 70000)).toBe(k.vmemmap + 70000n * 64n);
    // The struct page VA translates to where the synthetic kernel wrote it.
    expect(kmem.paging.translate(structPageVa(layout, w.sections[2]!, 70000))).toBe(k.structPagePa(70000));
  });

  it('skips absent sections and sections without a mem map', () => {
    const { k, kmem, layout } = open(4);
    k.mem.writeU64(k.memSectionEntryPa(1), 0n);
    k.mem.writeU64(k.memSectionEntryPa(2), k.vmemmap | 0x1n); // present, no mem map
    const w = walkMemSections(kmem, layout, k.mem.maxPfn);
    expect(w.sections.map((s) => s.nr)).toEqual([0, 3]);
    expect(w.presentWithoutMap).toBe(1);
  });

  it('rejects a section that disagrees with the others about the vmemmap base', () => {
    const { k, kmem, layout } = open(4);
    k.mem.writeU64(k.memSectionEntryPa(2), (k.vmemmap + 0x40000000n) | 0xfn);
    expect(() => walkMemSections(kmem, layout, k.mem.maxPfn)).toThrow(expect.objectContaining({ code: 'VCV_ERR_INTROSPECTION' }));
  });

  it('rejects a root pointer that goes nowhere with VCV_ERR_TRANSLATION', () => {
    const { k, kmem, layout } = open(4);
    k.mem.writeU64(k.memSectionRootPa, 0xffff888ff0000000n);
    expect(() => walkMemSections(kmem, layout, k.mem.maxPfn)).toThrow(expect.objectContaining({ code: 'VCV_ERR_TRANSLATION' }));
  });

  it('checks SYMBOL(vmemmap) when the kernel exports it', () => {
    const { k, kmem } = open(4);
    const good = memSectionLayout(Vmcoreinfo.parse(k.info.text + `SYMBOL(vmemmap)=${k.vmemmap.toString(16)}\n`));
    expect(walkMemSections(kmem, good, k.mem.maxPfn).sections).toHaveLength(4);
    const bad = memSectionLayout(Vmcoreinfo.parse(k.info.text + 'SYMBOL(vmemmap)=ffffea0040000000\n'));
    expect(() => walkMemSections(kmem, bad, k.mem.maxPfn)).toThrow(expect.objectContaining({ code: 'VCV_ERR_INTROSPECTION' }));
  });

  it('validates the layout values', () => {
    const { k } = open(4, 64 * MiB);
    const t = k.info.text;
    const bad = (from: RegExp, to: string) => () => memSectionLayout(Vmcoreinfo.parse(t.replace(from, to)));
    const invalid = expect.objectContaining({ code: 'VCV_ERR_VMCOREINFO_INVALID' });
    expect(bad(/LENGTH\(mem_section\)=\d+/, 'LENGTH(mem_section)=3')).toThrow(invalid);
    expect(bad(/NUMBER\(SECTION_SIZE_BITS\)=\d+/, 'NUMBER(SECTION_SIZE_BITS)=60')).toThrow(invalid);
    expect(bad(/NUMBER\(MAX_PHYSMEM_BITS\)=\d+/, 'NUMBER(MAX_PHYSMEM_BITS)=64')).toThrow(invalid);
    expect(bad(/SIZE\(mem_section\)=\d+/, 'SIZE(mem_section)=7')).toThrow(invalid);
    expect(bad(/SIZE\(page\)=\d+/, 'SIZE(page)=4')).toThrow(invalid);
    expect(bad(/OFFSET\(mem_section.section_mem_map\)=\d+/, 'OFFSET(mem_section.section_mem_map)=32')).toThrow(invalid);
  });
});
