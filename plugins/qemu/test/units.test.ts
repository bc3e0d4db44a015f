/**
 * The QEMU backend's pieces without a guest: register parsing against QEMU's own notes, command-line
 * surgery, GPA → file ranges (pc layout), hole punching measured on a real tmpfs file, and the QMP
 * client against a scripted QMP server (greeting, capabilities, ids, errors, events, timeouts,
 * reconnect). The real-guest tests are in qemu-backend.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync, openSync, writeSync, closeSync, statSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodePrstatus } from '@vicover/dumpfmt';
import {
  cpuNotes,
  drivesOf,
  endpointsOf,
  fileRangesOf,
  formatProps,
  parseArgv,
  parseInfoRegisters,
  parseProps,
  punchHoles,
  QmpClient,
  QmpWatcher,
  qmpSocketsOf,
  ramOf,
  recoveryArgv,
  allocatedBytes,
} from '@vicover/plugin-qemu';

const FIX = path.join(path.dirname(new URL(import.meta.url).pathname), 'fixtures');
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

describe('info registers -a → NT_PRSTATUS', () => {
  it('gives byte for byte the notes QEMU dump-guest-memory wrote for the same crash', () => {
    const cpus = parseInfoRegisters(readFileSync(path.join(FIX, 'info-registers-a.txt'), 'utf8'));
    expect(cpus.map((c) => c.index)).toEqual([0, 1]);
    const ours = cpuNotes(cpus);
    const qemu = readFileSync(path.join(FIX, 'qemu-prstatus.hex'), 'utf8').trim().split('\n').map((h) => Buffer.from(h, 'hex'));
    expect(ours.length).toBe(qemu.length);
    ours.forEach((n, i) => {
      expect(n.name).toBe('CORE');
      expect(n.type).toBe(1);
      expect(n.desc.equals(qemu[i]!)).toBe(true);
    });
    const r0 = decodePrstatus(ours[0]!.desc).regs;
    expect(r0.rip >> 32n).toBe(0xffffffffn); // a kernel text address
    expect(r0.cs).toBe(0x10n);
    expect(cpus[0]!.cr3).toBe(0x14410000n);
  });

  it('rejects text that is not x86-64 registers', () => {
    expect(() => parseInfoRegisters('CPU#0\nPC=0000 SP=0000\n')).toThrow(/cannot parse CPU#0/);
    expect(() => parseInfoRegisters('')).toThrow();
  });
});

describe('QEMU command lines', () => {
  const argv = [
    '-accel', 'tcg', '-cpu', 'max,la57=off', '-smp', '2', '-m', '1024M',
    '-object', 'memory-backend-file,id=ram,size=1024M,mem-path=/dev/shm/web1.ram,share=on',
    '-machine', 'pc,memory-backend=ram',
    '-kernel', '/k/vmlinuz', '-initrd', '/k/initrd.gz', '-append', 'console=ttyS0 panic=0 vicover.stamp=1 vicover.load=anon:100',
    '-device', 'pvpanic', '-action', 'panic=pause',
    '-drive', 'file=/vm/web1.qcow2,format=qcow2,if=none,id=d0', '-device', 'virtio-blk-pci,drive=d0',
    '-qmp', 'unix:/run/web1.qmp,server=on,wait=off', '-qmp', 'unix:/run/web1-vicover.qmp,server=on,wait=off',
    '-serial', 'file:/var/log/web1.serial', '-serial', 'unix:/run/web1.cmd,server=on,wait=off',
    '-netdev', 'user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp::2222-:22', '-device', 'virtio-net-pci,netdev=n0',
    '-display', 'none', '-nodefaults', '-no-user-config', '-daemonize', '-pidfile', '/run/web1.pid',
  ];
  const args = parseArgv(argv);

  it('reads RAM, QMP sockets, disks, forwarded ports', () => {
    expect(ramOf(args)).toEqual({ backendId: 'ram', memPath: '/dev/shm/web1.ram', sizeBytes: GiB, share: true });
    expect(qmpSocketsOf(args)).toEqual(['/run/web1.qmp', '/run/web1-vicover.qmp']);
    expect(drivesOf(args).map((d) => [d.file, d.ref])).toEqual([['/vm/web1.qcow2', { device: 'd0' }]]);
    expect(endpointsOf(args)).toEqual({ 'tcp/80': '127.0.0.1:8080', 'tcp/22': '127.0.0.1:2222' });
  });

  it('comma lists round-trip, with ",," escapes', () => {
    const s = 'memory-backend-file,id=ram,mem-path=/a,,b/c.ram,share=on';
    const p = parseProps(s);
    expect(p.find((x) => x.key === 'mem-path')!.value).toBe('/a,b/c.ram');
    expect(formatProps(p)).toBe(s);
  });

  it('a growable recovery VM: new RAM files, virtio-mem, its own QMP and pidfile, same disk and ports', () => {
    const out = recoveryArgv({
      args,
      crashedQmp: '/run/web1-vicover.qmp',
      qmpPath: '/state/r.qmp',
      pidfile: '/state/r.pid',
      consoleLog: '/state/r.console.log',
      bootFile: '/dev/shm/r.ram',
      bootBytes: 256 * MiB,
      fullBytes: GiB,
      vmem: { file: '/dev/shm/r.vmem', pluggedBytes: 128 * MiB, blockBytes: 2 * MiB, regionBytes: 768 * MiB },
      append: { remove: ['vicover.stamp'] },
    });
    const a = parseArgv(out);
    const get = (opt: string) => a.filter((x) => x.opt === opt).map((x) => x.value);
    expect(get('m')).toEqual(['size=256M,maxmem=1024M']);
    expect(ramOf(a)).toEqual({ backendId: 'ram', memPath: '/dev/shm/r.ram', sizeBytes: 256 * MiB, share: true });
    expect(get('object')).toContain(`memory-backend-file,id=vcv-vmem,size=${768 * MiB},mem-path=/dev/shm/r.vmem,share=on`);
    expect(get('device')).toContain(`virtio-mem-pci,id=vcv-vmem0,memdev=vcv-vmem,requested-size=${128 * MiB},block-size=${2 * MiB}`);
    expect(get('qmp')).toEqual(['unix:/state/r.qmp,server=on,wait=off']);
    expect(get('pidfile')).toEqual(['/state/r.pid']);
    expect(get('daemonize')).toEqual([]);
    expect(get('serial')).toEqual(['file:/state/r.console.log', 'unix:/run/web1.cmd,server=on,wait=off']);
    expect(get('append')).toEqual(['console=ttyS0 panic=0 vicover.load=anon:100 memhp_default_state=online']);
    expect(get('drive')).toEqual(['file=/vm/web1.qcow2,format=qcow2,if=none,id=d0']);
    expect(endpointsOf(a)).toEqual(endpointsOf(args));
  });

  it('a recovery VM with all its memory is the VM as it was (no virtio-mem)', () => {
    const a = parseArgv(recoveryArgv({ args, crashedQmp: '/run/web1-vicover.qmp', qmpPath: '/q', pidfile: '/p', consoleLog: null, bootFile: '/dev/shm/r.ram', bootBytes: GiB, fullBytes: GiB, vmem: null }));
    expect(a.filter((x) => x.opt === 'm').map((x) => x.value)).toEqual(['1024M']);
    expect(a.some((x) => x.value?.includes('virtio-mem'))).toBe(false);
    expect(a.find((x) => x.opt === 'append')!.value).toBe('console=ttyS0 panic=0 vicover.stamp=1 vicover.load=anon:100');
  });

  it('refuses a definition without a RAM file', () => {
    expect(() => recoveryArgv({ args: parseArgv(['-m', '1G']), crashedQmp: '', qmpPath: '', pidfile: '', consoleLog: null, bootFile: '', bootBytes: 1, fullBytes: 1, vmem: null })).toThrow(/memory-backend-file/);
  });
});

describe('RAM file ranges and holes', () => {
  it('pc layout: GPA [4G, …) lives at file offset 3G; below 3.5 GiB pc is flat', () => {
    const size = 4608 * MiB;
    expect(fileRangesOf({ start: 0, end: 128 * MiB }, size, 'pc')).toEqual([{ offset: 0, length: 128 * MiB }]);
    expect(fileRangesOf({ start: 4 * GiB, end: 4 * GiB + 128 * MiB }, size, 'pc')).toEqual([{ offset: 3 * GiB, length: 128 * MiB }]);
    expect(fileRangesOf({ start: 3 * GiB - 64 * MiB, end: 3 * GiB }, size, 'pc')).toEqual([{ offset: 3 * GiB - 64 * MiB, length: 64 * MiB }]);
    // The PCI hole [3G, 4G) is no RAM: nothing to punch.
    expect(fileRangesOf({ start: 3 * GiB, end: 4 * GiB }, size, 'pc')).toEqual([]);
    expect(fileRangesOf({ start: 4 * GiB, end: 4 * GiB + MiB }, size, 'flat')).toEqual([{ offset: 4 * GiB, length: MiB }]);
    expect(fileRangesOf({ start: 0, end: MiB }, GiB, 'pc')).toEqual([{ offset: 0, length: MiB }]);
  });

  const shm = mkdtempSync('/dev/shm/vcv-units-');
  afterAll(() => rmSync(shm, { recursive: true, force: true }));

  it('punching holes frees exactly the allocated blocks of the range, measured with stat', async () => {
    const f = path.join(shm, 'ram');
    const fd = openSync(f, 'w');
    const page = Buffer.alloc(4096, 0xab);
    // 16 MiB file; pages written only in the first 8 MiB, every other page.
    for (let p = 0; p < 2048; p += 2) writeSync(fd, page, 0, 4096, p * 4096);
    writeSync(fd, Buffer.alloc(1), 0, 1, 16 * MiB - 1);
    closeSync(fd);
    const before = await allocatedBytes(f);
    expect(before).toBe(1024 * 4096 + 4096);
    const freed = await punchHoles(f, fileRangesOf({ start: 0, end: 4 * MiB }, 16 * MiB, 'flat'));
    expect(freed).toBe(512 * 4096);
    expect(await allocatedBytes(f)).toBe(before - freed);
    expect(statSync(f).size).toBe(16 * MiB); // keep size
    expect(readFileSync(f).subarray(0, 4 * MiB).every((b) => b === 0)).toBe(true);
    // Untouched memory costs nothing to give back.
    expect(await punchHoles(f, fileRangesOf({ start: 8 * MiB, end: 12 * MiB }, 16 * MiB, 'flat'))).toBe(0);
    expect(await allocatedBytes(path.join(shm, 'missing'))).toBe(0);
  });
});

/** A scripted QMP server: greeting, capabilities, a few commands, events on demand. */
function fakeQmp(sockPath: string) {
  const clients = new Set<net.Socket>();
  const server = net.createServer((c) => {
    clients.add(c);
    c.on('close', () => clients.delete(c));
    c.write(JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: [] } }) + '\r\n');
    let buf = '';
    let negotiated = false;
    c.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const m = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        const reply = (o: object) => c.write(JSON.stringify({ ...o, id: m.id }) + '\r\n');
        if (m.execute === 'qmp_capabilities') {
          negotiated = true;
          reply({ return: {} });
        } else if (!negotiated) reply({ error: { class: 'CommandNotFound', desc: 'Expecting capabilities negotiation' } });
        else if (m.execute === 'query-status') reply({ return: { status: 'running', running: true } });
        else if (m.execute === 'human-monitor-command') reply({ return: `echo ${m.arguments['command-line']}` });
        else if (m.execute === 'slow') void 0; // never answers
        else reply({ error: { class: 'CommandNotFound', desc: `The command ${m.execute} has not been found` } });
      }
    });
  });
  return {
    listen: () => new Promise<void>((r) => server.listen(sockPath, () => r())),
    event: (event: string, data: object) => {
      for (const c of clients) c.write(JSON.stringify({ event, data, timestamp: { seconds: 1700000000, microseconds: 123456 } }) + '\r\n');
    },
    dropClients: () => {
      for (const c of clients) c.destroy();
    },
    close: () => new Promise<void>((r) => {
      for (const c of clients) c.destroy();
      server.close(() => r());
    }),
  };
}

describe('QMP client', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vcv-qmp-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('greeting, capabilities, commands by id, errors, HMP, events, timeouts', async () => {
    const sock = path.join(dir, 'a.sock');
    const srv = fakeQmp(sock);
    await srv.listen();
    const c = await QmpClient.connect(sock);
    expect(c.greeting?.version?.qemu?.major).toBe(7);
    const [a, b] = await Promise.all([c.execute<{ status: string }>('query-status'), c.hmp('info registers -a')]);
    expect(a.status).toBe('running');
    expect(b).toBe('echo info registers -a');
    await expect(c.execute('nope')).rejects.toMatchObject({ code: 'VCV_ERR_BACKEND', message: expect.stringMatching(/CommandNotFound/) });
    await expect(c.execute('slow', undefined, { timeoutMs: 100 })).rejects.toMatchObject({ code: 'VCV_ERR_TIMEOUT' });
    const ev = c.waitEvent('GUEST_PANICKED', { timeoutMs: 2000 });
    srv.event('GUEST_PANICKED', { action: 'pause' });
    const e = await ev;
    expect(e.data).toEqual({ action: 'pause' });
    expect(e.at).toBe(1700000000123);
    // A command in flight when QEMU goes away fails at once.
    const pending = c.execute('slow', undefined, { timeoutMs: 5000 });
    srv.dropClients();
    await expect(pending).rejects.toMatchObject({ message: expect.stringMatching(/closed/) });
    await srv.close();
  });

  it('connecting to nothing fails with a coded error', async () => {
    await expect(QmpClient.connect(path.join(dir, 'none.sock'), { timeoutMs: 500 })).rejects.toMatchObject({ code: 'VCV_ERR_BACKEND' });
  });

  it('the watcher connects when QEMU appears, and reconnects after it restarts', async () => {
    const sock = path.join(dir, 'w.sock');
    const w = new QmpWatcher(sock, { retryMs: 50 });
    const events: string[] = [];
    w.on('event', (e) => events.push(e.event));
    w.start();
    await new Promise((r) => setTimeout(r, 150)); // nothing there yet
    let srv = fakeQmp(sock);
    await srv.listen();
    await w.ready(3000);
    srv.event('GUEST_PANICKED', { action: 'pause' });
    await new Promise((r) => setTimeout(r, 100));
    expect(events).toEqual(['GUEST_PANICKED']);
    await srv.close(); // QEMU exits
    rmSync(sock, { force: true });
    srv = fakeQmp(sock); // and runs again
    await srv.listen();
    await new Promise<void>((r) => w.once('connected', () => r()));
    srv.event('SHUTDOWN', {});
    await new Promise((r) => setTimeout(r, 100));
    expect(events).toEqual(['GUEST_PANICKED', 'SHUTDOWN']);
    w.stop();
    await srv.close();
  });
});
