import { describe, expect, it } from 'vitest';
import { isVcvError } from '@vicover/errors';
import { Vmcoreinfo, formatVmcoreinfo, MAX_VMCOREINFO_BYTES } from '../src/vmcoreinfo.js';
import { LINUX_6_1_LAYOUT } from '../src/synth/index.js';

const TEXT = formatVmcoreinfo([
  ['OSRELEASE', '6.1.0-56-amd64'],
  ['BUILD-ID', 'eb4fbcd037e7253717950bf2b93bd5566f47c56f'],
  ['PAGESIZE', '4096'],
  ['SYMBOL(init_uts_ns)', 'ffffffffae3fb000'],
  ['SYMBOL(mem_section)', 'ffff8f166ffd5000'],
  ...LINUX_6_1_LAYOUT,
  ['NUMBER(phys_base)', '-442499072'],
  ['SYMBOL(init_top_pgt)', 'ffffffffae210000'],
  ['NUMBER(pgtable_l5_enabled)', '0'],
  ['KERNELOFFSET', '2b800000'],
  ['NUMBER(sme_mask)', '0'],
]);

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (!isVcvError(e)) throw e;
    return e.code;
  }
  return undefined;
}

describe('Vmcoreinfo.parse', () => {
  const info = Vmcoreinfo.parse(TEXT, { origin: 'test' });

  it('reads every kind of value with its own grammar', () => {
    expect(info.osrelease).toBe('6.1.0-56-amd64');
    expect(info.pageSize).toBe(4096);
    expect(info.symbol('init_top_pgt')).toBe(0xffffffffae210000n);
    expect(info.size('page')).toBe(64);
    expect(info.offset('page._mapcount')).toBe(48);
    expect(info.length('zone.free_area')).toBe(11);
    expect(info.number('PAGE_BUDDY_MAPCOUNT_VALUE')).toBe(-129);
    expect(info.number('phys_base')).toBe(-442499072);
    expect(info.numberBig('phys_base')).toBe(-442499072n);
    expect(info.kernelOffset).toBe(0x2b800000n);
    expect(info.kernelVersion).toEqual([6, 1, 0]);
    expect(info.optSymbol('vmemmap')).toBeUndefined();
    expect(info.optNumber('PAGE_SLAB_MAPCOUNT_VALUE')).toBeUndefined();
  });

  it('names the missing key in VCV_ERR_VMCOREINFO_INVALID', () => {
    try {
      info.symbol('vmemmap');
      expect.unreachable();
    } catch (e) {
      expect(isVcvError(e, 'VCV_ERR_VMCOREINFO_INVALID')).toBe(true);
      expect((e as Error).message).toContain('SYMBOL(vmemmap)');
      expect((e as Error).message).toContain('missing');
    }
  });

  it('rejects malformed values per grammar', () => {
    const bad = Vmcoreinfo.parse(TEXT.replace('SIZE(page)=64', 'SIZE(page)=6x4').replace('SYMBOL(init_top_pgt)=ffffffffae210000', 'SYMBOL(init_top_pgt)=fffffffgae210000'));
    expect(code(() => bad.size('page'))).toBe('VCV_ERR_VMCOREINFO_INVALID');
    expect(code(() => bad.symbol('init_top_pgt'))).toBe('VCV_ERR_VMCOREINFO_INVALID');
    const big = Vmcoreinfo.parse(TEXT + 'NUMBER(huge)=123456789012345678901\nSYMBOL(long)=12345678901234567\n');
    expect(code(() => big.numberBig('huge'))).toBe('VCV_ERR_VMCOREINFO_INVALID');
    expect(code(() => big.symbol('long'))).toBe('VCV_ERR_VMCOREINFO_INVALID');
    const n = Vmcoreinfo.parse(TEXT + 'NUMBER(big)=18446744073709551615\n');
    expect(n.numberBig('big')).toBe(2n ** 64n - 1n);
    expect(code(() => n.number('big'))).toBe('VCV_ERR_VMCOREINFO_INVALID');
  });

  it('stops at NUL and keeps the text for the note', () => {
    const bytes = Buffer.concat([Buffer.from(TEXT, 'latin1'), Buffer.alloc(100), Buffer.from('garbage')]);
    const v = Vmcoreinfo.parse(bytes);
    expect(v.text).toBe(TEXT);
    const note = v.toNote();
    expect(note.name).toBe('VMCOREINFO');
    expect(note.type).toBe(0);
    expect(Vmcoreinfo.fromNote(note).text).toBe(TEXT);
  });

  it('rejects truncated, binary or foreign text with a coded error', () => {
    // Cut in the middle of a key: the last line has no '='.
    expect(code(() => Vmcoreinfo.parse(TEXT.slice(0, TEXT.indexOf('SYMBOL(mem_section)') + 9)))).toBe('VCV_ERR_VMCOREINFO_INVALID');
    expect(code(() => Vmcoreinfo.parse(TEXT.replace('PAGESIZE=4096', 'PAGESIZE=4\x0196')))).toBe('VCV_ERR_VMCOREINFO_INVALID');
    expect(code(() => Vmcoreinfo.parse('hello world\n'))).toBe('VCV_ERR_VMCOREINFO_INVALID');
    expect(code(() => Vmcoreinfo.parse(TEXT.replace('OSRELEASE=', 'OSRELEASF=')))).toBe('VCV_ERR_VMCOREINFO_INVALID');
    expect(code(() => Vmcoreinfo.parse(TEXT.replace('PAGESIZE=4096', 'PAGESIZE=65536')))).toBe('VCV_ERR_VMCOREINFO_INVALID');
    expect(code(() => Vmcoreinfo.parse('OSRELEASE=x\n'.repeat(MAX_VMCOREINFO_BYTES / 8)))).toBe('VCV_ERR_VMCOREINFO_INVALID');
    expect(code(() => Vmcoreinfo.parse(''))).toBe('VCV_ERR_VMCOREINFO_INVALID');
  });

  it('never throws anything but VcvError on random bytes', () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(TEXT, 'latin1');
      for (let k = 0; k < 5; k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      try {
        const v = Vmcoreinfo.parse(b);
        for (const key of v.keys()) {
          const m = /^(SYMBOL|SIZE|OFFSET|LENGTH|NUMBER)\((.*)\)$/.exec(key);
          if (!m) continue;
          try {
            if (m[1] === 'SYMBOL') v.symbol(m[2]!);
            else if (m[1] === 'NUMBER') v.numberBig(m[2]!);
            else if (m[1] === 'SIZE') v.size(m[2]!);
            else if (m[1] === 'OFFSET') v.offset(m[2]!);
            else v.length(m[2]!);
          } catch (e) {
            expect(isVcvError(e)).toBe(true);
          }
        }
      } catch (e) {
        expect(isVcvError(e)).toBe(true);
      }
    }
  });
});
