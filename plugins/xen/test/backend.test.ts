/**
 * The Xen backend's walk without Xen: a stand-in `xl` (over a JSON state file) and a stand-in helper
 * (over a RAM image) — crash found by polling, capture (notes, disks detached, live report info),
 * memory, release with measured pages (PVH: freed; PV: nothing freed, releasesImmediately false), the
 * recovery domain's xl.cfg from `xl list -l`, growth with mem-set, destroy. The same walk on a real Xen
 * is `npm run test:xen`.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger, type CrashEvent } from '@vicover/core';
import { decodePrstatus } from '@vicover/dumpfmt';
import { XenBackend, type XenDefinition, type XenOptions } from '@vicover/plugin-xen';

const FIX = fileURLToPath(new URL('./fixtures/', import.meta.url));
const PAGE = 4096;

function options(dir: string, extra: Partial<XenOptions> = {}): XenOptions {
  return {
    domains: [{ name: 'web-pvh', recovery: { cmdline: { remove: ['vicover.load'] } } }],
    stateDir: path.join(dir, 'state'),
    helper: path.join(FIX, 'fake-helper.mjs'),
    xl: path.join(FIX, 'fake-xl.mjs'),
    xenstoreWatch: 'xenstore-watch',
    watch: false,
    pollMs: 100,
    detachDisks: true,
    pvRelease: 'none',
    rawPageTables: false,
    batchPages: 64,
    growGranularityMiB: 2,
    consoleDir: dir,
    cgroupRoot: path.join(dir, 'cgroup'),
    timeouts: { commandMs: 20_000, createMs: 20_000 },
    ...extra,
  };
}

describe('XenBackend with stand-in xl and helper', () => {
  let dir: string;
  let stateFile: string;
  let image: Buffer;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vicover-xen-backend-'));
    image = Buffer.alloc(2048 * PAGE);
    for (let p = 0; p < 2048; p++) image.writeUInt32LE(p, p * PAGE);
    writeFileSync(path.join(dir, 'ram.img'), image);
    process.env.FAKE_RAM = path.join(dir, 'ram.img');
    delete process.env.FAKE_RANGES;
    const config = JSON.parse(readFileSync(path.join(FIX, 'xl-list-l-pvh.json'), 'utf8'))[0].config;
    config.b_info.max_memkb = config.b_info.target_memkb = 8192;
    config.disks[0].backend = 'phy'; // no dom0 QEMU to find here
    stateFile = path.join(dir, 'xl.json');
    writeFileSync(stateFile, JSON.stringify({ nextId: 10, calls: [], domains: [{ name: 'web-pvh', id: 7, memMiB: 8, state: '---sc-', config }] }));
    process.env.FAKE_XL_STATE = stateFile;
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
    delete process.env.FAKE_PV;
  });

  const xlState = () => JSON.parse(readFileSync(stateFile, 'utf8')) as { calls: string[][]; domains: { name: string; id: number; memMiB: number; cfgText?: string }[] };

  it('PVH: finds the crash, captures, reads, releases chunk by chunk, starts and grows the recovery domain', async () => {
    const b = new XenBackend(options(dir), silentLogger());
    const crashes: CrashEvent[] = [];
    await b.start({ onCrash: (e) => crashes.push(e) });
    await b.stop();
    expect(crashes).toHaveLength(1);
    const vm = crashes[0]!.vm;
    expect(vm).toMatchObject({ id: 'web-pvh', memoryBytes: 8 * 1024 * 1024 });
    expect(crashes[0]!.reason).toMatch(/domain 7 state ---sc-/);

    const cap = await b.capture(vm);
    expect(cap.cpuNotes).toHaveLength(2);
    expect(decodePrstatus(cap.cpuNotes[0]!.desc).regs.rip).toBe(0xffffffff81a592ebn);
    expect(cap.info).toMatchObject({ domid: 7, type: 'pvh', translated: true, vcpus: 2, vcpuErrors: ['vcpu 2: No such process'], detachedDisks: [{ vdev: 'xvda', ok: true }] });
    expect(xlState().calls).toContainEqual(['block-detach', '-f', '7', 'xvda']);
    expect(b.releasesImmediately(vm)).toBe(true);

    const mem = await b.openMemory(vm);
    const buf = Buffer.alloc(4 * PAGE);
    await mem.read(100 * PAGE, buf, 0, buf.length);
    expect(buf.readUInt32LE(PAGE)).toBe(101);
    expect(await b.allocatedBytes(vm)).toBe(2048 * PAGE);
    // find: the helper looks at pages in place and answers only the hits (pfn 300 and 1800 hold the
    // marker at page offsets 24 and 0; offset 40 is not asked for).
    image.write('MARK', 300 * PAGE + 24, 'latin1');
    image.write('MARK', 1800 * PAGE, 'latin1');
    image.write('MARK', 900 * PAGE + 40, 'latin1');
    writeFileSync(process.env.FAKE_RAM!, image);
    const needle = Buffer.from('MARK', 'latin1');
    expect(await mem.findInPages!(0, 2048 * PAGE, needle, [0, 24], 8)).toEqual({ hits: [300 * PAGE + 24, 1800 * PAGE], truncated: false });
    expect(await mem.findInPages!(0, 2048 * PAGE, needle, [0, 24], 1)).toEqual({ hits: [300 * PAGE + 24], truncated: true });
    await expect(mem.findInPages!(0, 4096 * PAGE, needle, [0], 8)).rejects.toMatchObject({ code: 'VCV_ERR_MEMORY_RANGE' });

    const r = await b.release(vm, { start: 0, end: 512 * PAGE });
    expect(r.freedBytes).toBe(512 * PAGE);
    expect(await b.allocatedBytes(vm)).toBe(1536 * PAGE);
    const z = Buffer.alloc(PAGE, 1);
    mem.readSync(5 * PAGE, z, 0, PAGE);
    expect(z.every((x) => x === 0)).toBe(true);
    expect(cap.info!.release).toMatchObject({ calls: 1, releasedFrames: 512, domainPagesDropped: 512, xenFreePagesGained: 512, callsWithoutEffect: 0 });

    const def = (await b.definitionOf(vm)) as unknown as XenDefinition;
    expect(def).toMatchObject({ backend: 'xen', vm: 'web-pvh', domid: 7, type: 'pvh', maxMemKiB: 8192, overheadPages: 0 });
    const h = await b.startVm(def as never, { name: 'web-pvh-recovery', memoryBytes: 5 * 1024 * 1024, maxMemoryBytes: 8 * 1024 * 1024 });
    const rec = xlState().domains.find((d) => d.name === 'web-pvh-recovery')!;
    expect(rec.cfgText).toMatch(/^memory = 4$/m); // 5 MiB in 2 MiB steps
    expect(rec.cfgText).toMatch(/^maxmem = 8$/m);
    expect(rec.cfgText).toMatch(/^cmdline = ".*vicover\.stamp=1 tsc_early_khz=2096038"$/m);
    expect(rec.cfgText).not.toMatch(/vicover\.load/);
    await b.resizeVm(h, 6 * 1024 * 1024);
    expect(xlState().calls).toContainEqual(['mem-set', String(rec.id), '6144k']);
    // The toolstack restarts the recovery domain (a reboot, or a triple fault in boot): same name,
    // new domid, the memory of its configuration. The backend follows it and sets the target again.
    const st = JSON.parse(readFileSync(stateFile, 'utf8'));
    const again = st.domains.find((d: { name: string }) => d.name === 'web-pvh-recovery');
    again.id = st.nextId++;
    again.memMiB = 4;
    again.hiddenLists = 2; // not listed at first: the toolstack is between destroy and create
    again.creating = 2; // then listed before libxl has stored its configuration
    writeFileSync(stateFile, JSON.stringify(st));
    expect(again.id).not.toBe(rec.id);
    await b.resizeVm(h, 8 * 1024 * 1024);
    const calls = xlState().calls;
    const failed = calls.findLastIndex((c) => c[0] === 'mem-set' && c[1] === String(rec.id));
    expect(calls[failed]).toEqual(['mem-set', String(rec.id), '8192k']); // failed: that domid is gone
    // Retried while the toolstack had not stored the new domain's configuration (2 refusals), then the
    // target was set, and the call that failed was made again on the new domid.
    expect(calls.slice(failed).filter((c) => c[0] === 'mem-set')).toEqual([
      ['mem-set', String(rec.id), '8192k'],
      ...Array(4).fill(['mem-set', String(again.id), '8192k']),
    ]);
    expect(b.domidOf(h)).toBe(again.id);
    expect(b.vmInfo(h)).toEqual({ domid: again.id, restarts: 1 });
    expect(await b.vmAllocatedBytes(h)).toBe(24576 * PAGE);
    expect(await b.vmIoStats(h)).toEqual({ readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 });

    await b.destroy(vm);
    expect(xlState().domains.map((d) => d.name)).toEqual(['web-pvh-recovery']);
    await b.stopVm(h);
    expect(xlState().domains).toEqual([]);
  });

  it('a recovery domain whose disk backend is gone: the scheduler tick does not wait for the restart to be found', async () => {
    // createMs far above the test's time limit: a tick that waited for follow() would time the test out.
    const b = new XenBackend(options(dir, { timeouts: { commandMs: 20_000, createMs: 600_000 } }), silentLogger());
    const crashes: CrashEvent[] = [];
    await b.start({ onCrash: (e) => crashes.push(e) });
    await b.stop();
    const def = (await b.definitionOf(crashes[0]!.vm)) as unknown as XenDefinition;
    const h = await b.startVm(def as never, { name: 'web-pvh-recovery', memoryBytes: 4 * 1024 * 1024, maxMemoryBytes: 8 * 1024 * 1024 });
    // Its qdisk QEMU's cgroup, as adoptQdisk leaves it: counters, then emptied (the QEMU exited).
    const cg = path.join(dir, 'cgroup', 'qdisk');
    mkdirSync(cg, { recursive: true });
    writeFileSync(path.join(cg, 'io.stat'), '254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n');
    writeFileSync(path.join(cg, 'cgroup.events'), 'populated 1\nfrozen 0\n');
    const rec = (b as unknown as { recoveries: Map<string, { cgroup: string | null; device: string | null }> }).recoveries.get('web-pvh-recovery')!;
    rec.cgroup = cg;
    rec.device = '254:0';
    const before = await b.vmIoStats(h);
    expect(before).toEqual({ readBytes: 4096, writeBytes: 8192, readOps: 1, writeOps: 2 });
    // The toolstack destroyed the domain and has not created it again (or never will).
    const st = JSON.parse(readFileSync(stateFile, 'utf8'));
    st.domains.find((d: { name: string }) => d.name === 'web-pvh-recovery').hiddenLists = 1_000_000;
    writeFileSync(stateFile, JSON.stringify(st));
    writeFileSync(path.join(cg, 'cgroup.events'), 'populated 0\nfrozen 0\n');
    const following = (b as unknown as { following: Map<string, Promise<number>> }).following;
    // Both return at once with what was known, while follow() keeps looking.
    expect(await b.vmIoStats(h)).toEqual(before);
    await b.throttleVm(h, { bps: 1 << 20 });
    expect(following.has('web-pvh-recovery')).toBe(true);
    expect(b.vmInfo(h)).toMatchObject({ restarts: 0 });
    // stopVm ends the search (the domain was destroyed on purpose).
    const search = following.get('web-pvh-recovery')!;
    await b.stopVm(h);
    await expect(search).rejects.toMatchObject({ code: 'VCV_ERR_RECOVERY' });
  });

  it('PV: release frees nothing until destroy; with pvRelease none it is not even tried', async () => {
    process.env.FAKE_PV = '1';
    const b = new XenBackend(options(dir, { pvRelease: 'decrease-reservation' }), silentLogger());
    const crashes: CrashEvent[] = [];
    await b.start({ onCrash: (e) => crashes.push(e) });
    await b.stop();
    const vm = crashes[0]!.vm;
    const cap = await b.capture(vm);
    expect(b.releasesImmediately(vm)).toBe(false);
    await b.openMemory(vm);
    expect((await b.release(vm, { start: 0, end: 256 * PAGE })).freedBytes).toBe(0);
    expect(cap.info!.release).toMatchObject({ releasedFrames: 256, domainPagesDropped: 0, callsWithoutEffect: 1, mode: 'decrease-reservation' });
    await b.destroy(vm);

    const quiet = new XenBackend(options(dir), silentLogger());
    const c2: CrashEvent[] = [];
    writeFileSync(stateFile, JSON.stringify({ ...xlState(), domains: [{ name: 'web-pvh', id: 8, memMiB: 8, state: '---sc-', config: JSON.parse(readFileSync(path.join(FIX, 'xl-list-l-pvh.json'), 'utf8'))[0].config }] }));
    await quiet.start({ onCrash: (e) => c2.push(e) });
    await quiet.stop();
    const cap2 = await quiet.capture(c2[0]!.vm);
    expect((await quiet.release(c2[0]!.vm, { start: 0, end: 256 * PAGE })).freedBytes).toBe(0);
    expect(cap2.info!.release).toMatchObject({ calls: 0, releasedFrames: 0, mode: 'skipped (PV: pvRelease none)' });
    await quiet.destroy(c2[0]!.vm);
  });
});
