/**
 * The Xen plugin without Xen: parsers and converters on real toolstack output (captured in the nested
 * test environment, test/xen), the helper protocol (async and synchronous clients) against a stand-in
 * helper serving a RAM image, the memory source's contract, and the native helper's build and its
 * clear refusal outside dom0. The real thing runs in `npm run test:xen` (docs/xen.md).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePrstatus } from '@vicover/dumpfmt';
import {
  CgroupIo,
  HelperClient,
  SyncHelper,
  XenMemorySource,
  ioMaxLine,
  locateHelper,
  parseIoStat,
  parseVcpus,
  parseXlList,
  toXlConfig,
  vcpuNotes,
  vdevId,
  type DomainLayout,
} from '@vicover/plugin-xen';

const FIX = fileURLToPath(new URL('./fixtures/', import.meta.url));
const FAKE = path.join(FIX, 'fake-helper.mjs');
const PAGE = 4096;

describe('toolstack output', () => {
  it('parses xl list, names with spaces and the crashed flag included', () => {
    const doms = parseXlList(readFileSync(path.join(FIX, 'xl-list.txt'), 'utf8'));
    expect(doms.map((d) => [d.name, d.id, d.memMiB, d.state])).toEqual([
      ['Domain-0', 0, 1024, 'r-----'],
      ['web-pv', 2, 256, '---sc-'],
      ['web pvh spaced', 3, 96, '-b----'],
    ]);
    expect(doms[1]!.state[4]).toBe('c');
  });

  it('turns xl list -l JSON back into an xl.cfg for a recovery domain', () => {
    const cfg = JSON.parse(readFileSync(path.join(FIX, 'xl-list-l-pvh.json'), 'utf8'))[0].config;
    const c = toXlConfig(cfg, { name: 'web-pvh-rec', memoryKiB: 96 * 1024, maxMemKiB: 262144, cmdline: { remove: ['vicover.load', 'vicover.stamp'] } });
    expect(c.type).toBe('pvh');
    expect(c.maxMemKiB).toBe(262144);
    expect(c.unmapped).toEqual([]);
    expect(c.disks).toEqual([{ target: '/tmp/disk-pvh.img', vdev: 'xvda', backend: 'qdisk' }]);
    expect(c.lines).toEqual([
      'name = "web-pvh-rec"',
      'type = "pvh"',
      'memory = 96',
      'maxmem = 256',
      'vcpus = 2',
      'tsc_mode = "native"',
      'kernel = "/var/lib/vicover-test/vmlinuz"',
      'ramdisk = "/var/lib/vicover-test/domu-initrd.gz"',
      'cmdline = "console=hvc0 xen_legacy_crash panic=1 vicover.name=web-pvh tsc_early_khz=2096038"',
      'disk = [ "vdev=xvda, format=raw, access=rw, backendtype=qdisk, target=/tmp/disk-pvh.img" ]',
      'on_reboot = "restart"',
      'on_crash = "preserve"',
      'on_soft_reset = "soft-reset"',
    ]);
  });

  it('names what it cannot carry over', () => {
    const c = toXlConfig({ c_info: { type: 'hvm', name: 'x' }, b_info: { max_memkb: 1024, 'type.hvm': { firmware: 'bios' } }, pcidevs: [{ bdf: '00:01.0' }] }, { name: 'y' });
    expect(c.unmapped).toEqual(['pcidevs', 'b_info.type.hvm (HVM guests need configFile)']);
  });

  it('writes io.max lines and reads io.stat', () => {
    expect(ioMaxLine('252:0', null)).toBe('252:0 rbps=max wbps=max riops=max wiops=max');
    expect(ioMaxLine('252:0', { bps: 0, iops: 250.4 })).toBe('252:0 rbps=4096 wbps=4096 riops=250 wiops=250');
    expect(parseIoStat('8:0 rbytes=1 wbytes=2 rios=3 wios=4\n252:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n', '252:0')).toEqual({ readBytes: 4096, writeBytes: 8192, readOps: 1, writeOps: 2 });
    expect(vdevId('xvda')).toBe(51712);
    expect(vdevId('xvdb')).toBe(51728);
    expect(vdevId('hda')).toBeNull();
  });

  it('tells a cgroup whose processes are gone (a restarted domain\'s old qdisk QEMU) from one in use', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vicover-cgroup-'));
    try {
      const io = new CgroupIo(dir);
      const g = io.groupOf('web-pvh-recovery');
      execFileSync('mkdir', ['-p', g]);
      expect(await io.populated(g)).toBe(true); // no cgroup.events: not known to be empty
      writeFileSync(path.join(g, 'cgroup.events'), 'populated 1\nfrozen 0\n');
      expect(await io.populated(g)).toBe(true);
      writeFileSync(path.join(g, 'cgroup.events'), 'populated 0\nfrozen 0\n');
      expect(await io.populated(g)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('turns the helper\'s vCPU registers into NT_PRSTATUS notes and keeps the errors', () => {
    const { cpus, errors } = parseVcpus([
      { id: 1, online: true, regs: { rip: '0xffffffff81a44000', rsp: '0x10', rax: '0x2', cs: '0xe033', gs_base: '0xffff88800f900000', cr0: '0x1' }, cr3: '0x6a20000' },
      { id: 0, online: true, regs: { rip: '0xffffffff81a592eb', rsp: '0x20' }, cr3: '0x2a10000' },
      { id: 2, online: false, error: 'No such process' },
    ]);
    expect(errors).toEqual(['vcpu 2: No such process']);
    expect(cpus.map((c) => c.id)).toEqual([0, 1]);
    expect(cpus[1]!.cr3).toBe(0x6a20000n);
    const notes = vcpuNotes(cpus);
    expect(notes).toHaveLength(2);
    const p = decodePrstatus(notes[1]!.desc);
    expect(p.pid).toBe(2);
    expect(p.regs.rip).toBe(0xffffffff81a44000n);
    expect(p.regs.cs).toBe(0xe033n);
    expect(p.regs.gs_base).toBe(0xffff88800f900000n);
  });
});

describe('helper protocol and memory source (stand-in helper over a RAM image)', () => {
  let dir: string;
  let ram: string;
  let image: Buffer;
  const ranges: [number, number][] = [
    [0, 16],
    [17, 300],
    [1000, 1009],
  ];

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vicover-xen-unit-'));
    ram = path.join(dir, 'ram.img');
    image = Buffer.alloc(1009 * PAGE);
    for (let p = 0; p < 1009; p++) image.fill(p % 251, p * PAGE, (p + 1) * PAGE);
    for (let i = 0; i < image.length; i += 997) image[i] = (i / 997) & 0xff;
    writeFileSync(ram, image);
    process.env.FAKE_RAM = ram;
    process.env.FAKE_RANGES = JSON.stringify(ranges);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    delete process.env.FAKE_RANGES;
  });

  it('answers queued requests in order, payloads straight into the caller\'s buffer', async () => {
    const h = HelperClient.start(FAKE);
    try {
      const open = await h.request<DomainLayout>('open 5');
      expect(open.json.ranges).toEqual(ranges);
      const a = Buffer.alloc(8 * PAGE, 0xee);
      const b = Buffer.alloc(3 * PAGE + 10);
      const [ra, rb, st] = await Promise.all([
        h.request('read 17 8 0', { buf: a, offset: 0, length: 8 * PAGE }),
        h.request('read 1000 3 0', { buf: b, offset: 10, length: 3 * PAGE }),
        h.request<{ nrPages: number }>('stat'),
      ]);
      expect(ra.payloadBytes).toBe(8 * PAGE);
      expect(a.equals(image.subarray(17 * PAGE, 25 * PAGE))).toBe(true);
      expect(rb.payloadBytes).toBe(3 * PAGE);
      expect(b.subarray(10).equals(image.subarray(1000 * PAGE, 1003 * PAGE))).toBe(true);
      expect(st.json.nrPages).toBe(16 + 283 + 9);
      await expect(h.request('bogus')).rejects.toMatchObject({ code: 'VCV_ERR_BACKEND', details: { errno: 'EINVAL' } });
    } finally {
      await h.close();
    }
  });

  it('fails pending requests (never hangs) when the helper dies', async () => {
    process.env.FAKE_DIE_AFTER = '1';
    const h = HelperClient.start(FAKE);
    delete process.env.FAKE_DIE_AFTER;
    await h.request('open 5');
    await expect(h.request('stat')).rejects.toMatchObject({ code: 'VCV_ERR_BACKEND' });
    await expect(h.request('stat')).rejects.toMatchObject({ code: 'VCV_ERR_BACKEND' });
  });

  it('answers synchronously over FIFOs; its death is an error, not a hang', () => {
    const s = new SyncHelper(FAKE);
    s.request('open 5');
    const buf = Buffer.alloc(2 * PAGE);
    s.request('read 299 1 0', { buf, offset: 0, length: PAGE });
    expect(buf.subarray(0, PAGE).equals(image.subarray(299 * PAGE, 300 * PAGE))).toBe(true);
    expect(() => s.request('bogus')).toThrow(/unknown or incomplete/);
    s.close();
    process.env.FAKE_DIE_AFTER = '1';
    const d = new SyncHelper(FAKE);
    delete process.env.FAKE_DIE_AFTER;
    d.request('open 5');
    expect(() => d.request('stat')).toThrow(/exited|gone/);
    d.close();
  });

  it('reads like a MemorySource: ranges, unaligned and batched reads, sync reads, released ranges as zero', async () => {
    const h = HelperClient.start(FAKE);
    let sync: SyncHelper | null = null;
    try {
      const layout = (await h.request<DomainLayout>('open 5')).json;
      const mem = new XenMemorySource(layout, h, () => (sync ??= (() => { const s = new SyncHelper(FAKE); s.request('open 5'); return s; })()), { batchPages: 7, cachePages: 4 });
      expect(mem.ranges).toEqual([{ start: 0, end: 16 * PAGE }, { start: 17 * PAGE, end: 300 * PAGE }, { start: 1000 * PAGE, end: 1009 * PAGE }]);
      expect(mem.maxPfn).toBe(1009);
      // Aligned, spanning several batches.
      const big = Buffer.alloc(40 * PAGE);
      await mem.read(20 * PAGE, big, 0, 40 * PAGE);
      expect(big.equals(image.subarray(20 * PAGE, 60 * PAGE))).toBe(true);
      // Unaligned.
      const u = Buffer.alloc(9000);
      await mem.read(100 * PAGE + 123, u, 0, 9000);
      expect(u.equals(image.subarray(100 * PAGE + 123, 100 * PAGE + 9123))).toBe(true);
      // Synchronous: small (cached pages) and large.
      const s1 = Buffer.alloc(100);
      mem.readSync(1001 * PAGE + 4050, s1, 0, 100);
      expect(s1.equals(image.subarray(1001 * PAGE + 4050, 1001 * PAGE + 4150))).toBe(true);
      const s2 = Buffer.alloc(30 * PAGE);
      mem.readSync(200 * PAGE, s2, 0, 30 * PAGE);
      expect(s2.equals(image.subarray(200 * PAGE, 230 * PAGE))).toBe(true);
      // Outside RAM: the hole at pfn 16, past the end.
      expect(() => mem.readSync(16 * PAGE, s1, 0, 8)).toThrow(expect.objectContaining({ code: 'VCV_ERR_MEMORY_RANGE' }));
      await expect(mem.read(15 * PAGE, big, 0, 2 * PAGE)).rejects.toMatchObject({ code: 'VCV_ERR_MEMORY_RANGE' });
      await expect(mem.read(1009 * PAGE, big, 0, 1)).rejects.toMatchObject({ code: 'VCV_ERR_MEMORY_RANGE' });
      // Released ranges read as zero, cached pages included.
      mem.readSync(1001 * PAGE, s1, 0, 100);
      mem.markReleased({ start: 1000 * PAGE, end: 1004 * PAGE });
      const z = Buffer.alloc(6 * PAGE, 0xff);
      await mem.read(1000 * PAGE, z, 0, 6 * PAGE);
      expect(z.subarray(0, 4 * PAGE).every((x) => x === 0)).toBe(true);
      expect(z.subarray(4 * PAGE).equals(image.subarray(1004 * PAGE, 1006 * PAGE))).toBe(true);
      mem.readSync(1001 * PAGE, s1, 0, 100);
      expect(s1.every((x) => x === 0)).toBe(true);
      expect(mem.releasedRanges).toEqual([{ start: 1000 * PAGE, end: 1004 * PAGE }]);
    } finally {
      sync?.close();
      await h.close();
    }
  });
});

describe('native helper', () => {
  const haveHeaders = existsSync('/usr/include/xenctrl.h') && existsSync('/usr/include/xenforeignmemory.h');
  it.skipIf(!haveHeaders)('builds against libxen-dev and, outside dom0, refuses clearly', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vicover-xen-build-'));
    try {
      const bin = await locateHelper({ buildDir: dir, usePrebuilt: false });
      expect(existsSync(bin)).toBe(true);
      const out = execFileSync(bin, { input: 'version\nquit\n', encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'] });
      const inXen = existsSync('/proc/xen/privcmd') || existsSync('/dev/xen/privcmd');
      if (inXen) expect(out).toMatch(/^OK 0 \{"helper":"vicover-xen-helper","protocol":1/);
      else expect(out).toMatch(/^ERR EACCES cannot open the Xen control interfaces/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the missing package when it cannot be built', async () => {
    await expect(locateHelper({ helper: '/nonexistent/helper', buildDir: tmpdir() })).rejects.toMatchObject({ code: 'VCV_ERR_CONFIG_INVALID' });
  });
});
