import { describe, expect, it } from 'vitest';
import plugin, { linuxOnCrash, linuxSelectPages, type LinuxPluginOptions } from '../src/plugin.js';
import { fakeSession, fullPageSet } from './helpers.js';
import { buildSyntheticKernel, type SyntheticKernel } from '../src/synth/index.js';

const MiB = 1024 * 1024;

function guest(): SyntheticKernel {
  const k = buildSyntheticKernel({ ramBytes: 128 * MiB, physBase: 0x4000000n, kernelOffset: -0x800000n + 0x1000000n });
  k.addFreeBlock(8192, 10);
  k.addFreeBlock(9216, 10);
  k.setPage(12000, { flags: k.flags('lru'), mapping: 0xffff888000100000n, refcount: 1 });
  k.setPage(12001, { mapping: 0xffff888000100001n, refcount: 1, mapcount: 0 });
  k.setPage(12002, { refcount: 0, mapcount: -1 });
  k.log({ text: 'Linux version 6.1.0-synthetic', level: 5 });
  k.log({ text: 'sysrq: Trigger a crash', level: 6 });
  k.log({ text: 'Kernel panic - not syncing: sysrq triggered crash', level: 0 });
  return k;
}

async function run(k: SyntheticKernel, opts: Partial<LinuxPluginOptions> = {}, level = 31) {
  const f = fakeSession(k.mem);
  await linuxOnCrash(f.session, opts);
  const pages = fullPageSet(k.mem, level);
  const out = await linuxSelectPages(pages, f.session, opts);
  return { f, pages: out };
}

describe('linux plugin', () => {
  it('triages at onCrash and narrows the page set at selectPages', async () => {
    const k = guest();
    const { f, pages } = await run(k);
    expect(f.warnings).toEqual([]);
    expect(f.triage).toMatchObject({ panicLine: 'Kernel panic - not syncing: sysrq triggered crash', osrelease: '6.1.0-synthetic-amd64', vmcoreinfo: 'scan' });
    expect((f.triage!.lastLines as string[]).at(-1)).toMatch(/Kernel panic - not syncing/);
    expect(f.notes.map((n) => n.name)).toEqual(['VMCOREINFO']);
    expect(f.notes[0]!.desc.toString('latin1')).toBe(k.info.text);
    expect(f.session.dumpInfo.physBase).toBe(0x4000000n);
    expect(f.session.dumpInfo.utsname).toMatchObject({ release: '6.1.0-synthetic-amd64', machine: 'x86_64', sysname: 'Linux' });
    expect(pages.fallback).toBeUndefined();
    expect(pages.excluded).toMatchObject({ free: 2048, cache: 1, user: 1, privateCache: 0, offline: 0 });
    expect(pages.dump.count()).toBe(pages.ram.count() - 2050);
    expect(pages.dump.get(8192)).toBe(false);
    expect(pages.dump.get(12002)).toBe(true);
    expect(pages.notes.linux).toMatchObject({ rule: 'buddy', refcountZero: { extraPages: 1, excluded: false } });
  });

  it('applies the refcount-zero rule only when configured', async () => {
    const { pages } = await run(guest(), { freeRule: 'refcount-zero' });
    expect(pages.excluded.free).toBe(2049);
    expect(pages.dump.get(12002)).toBe(false);
  });

  const fallbacks: [string, (k: SyntheticKernel) => void, string][] = [
    ['no VMCOREINFO anywhere', (k) => {
      k.mem.write(k.vmcoreinfoPa!.text, new Uint8Array(16));
      k.mem.write(k.vmcoreinfoPa!.note + 24, new Uint8Array(16));
    }, 'VCV_ERR_VMCOREINFO_NOT_FOUND'],
    ['a section map pointing outside the vmemmap', (k) => k.mem.writeU64(k.memSectionEntryPa(0), 0xffffc90000000000n | 0xfn), 'VCV_ERR_INTROSPECTION'],
    ['a root pointer into nowhere', (k) => k.mem.writeU64(k.memSectionRootPa, 0x1234000n), 'VCV_ERR_TRANSLATION'],
    ['vmemmap not mapped', (k) => k.pt.setRawEntry(k.vmemmap, 2, 0n), 'VCV_ERR_INTROSPECTION'],
    ['nearly every page free', (k) => k.addFreeBlock(0, 15), 'VCV_ERR_INTROSPECTION'],
    ['a huge compound page over everything', (k) => {
      k.addCompound(0, 1, { mapping: 0xffff888000200001n, refcount: 1 });
      k.mem.writeU8(k.structPagePa(1) + 17, 20);
    }, 'VCV_ERR_INTROSPECTION'],
    ['impossible buddy orders', (k) => k.setPage(3000, { mapcount: -129, private: 50n }), 'VCV_ERR_INTROSPECTION'],
  ];
  it.each(fallbacks)('falls back to all RAM with a coded reason: %s', async (_what, corrupt, code) => {
    const k = guest();
    corrupt(k);
    const { pages } = await run(k);
    expect(pages.fallback).toMatchObject({ plugin: 'linux', code });
    expect(pages.fallback!.reason.length).toBeGreaterThan(10);
    expect(pages.dump.count()).toBe(pages.ram.count());
    expect(pages.excluded.free).toBe(0);
  });

  it('keeps classifying when only the kernel log is broken (warning, no fallback)', async () => {
    const k = guest();
    k.mem.writeU64(k.pa(k.symbols.prb!), 0xdeadbeefn);
    const { f, pages } = await run(k);
    expect(f.warnings.map((w) => w.code)).toEqual(['VCV_ERR_PRINTK']);
    expect(f.triage).toBeUndefined();
    expect(pages.fallback).toBeUndefined();
    expect(pages.excluded.free).toBe(2048);
  });

  it('taps the core hooks at the named stages', async () => {
    const { Vicover, silentLogger } = await import('@vicover/core');
    const core = new Vicover({ logger: silentLogger() } as never);
    await core.use(plugin, {});
    expect(core.hooks.onCrash.taps.map((t) => [t.name, t.stage])).toEqual([['linux', -100]]);
    expect(core.hooks.selectPages.taps.map((t) => [t.name, t.stage])).toEqual([['linux', 0]]);
    const k = guest();
    const f = fakeSession(k.mem);
    await core.hooks.onCrash.promise(f.session as never);
    const pages = await core.hooks.selectPages.promise(fullPageSet(k.mem), f.session as never);
    expect(pages.excluded.free).toBe(2048);
    expect(f.triage?.panicLine).toBe('Kernel panic - not syncing: sysrq triggered crash');
  });
});
