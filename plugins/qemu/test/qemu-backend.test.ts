/**
 * The QEMU backend against a real guest (test/guest harness, QEMU under TCG): two boots in all — the
 * guest that crashes and one recovery VM on the same disk.
 *
 * attach over a second QMP socket (QMP serves one client per socket; the harness holds the first) →
 * GUEST_PANICKED → capture (CPU notes from HMP, QEMU quits, the RAM file stays) → memory reads →
 * punch-hole release measured with stat → a recovery VM on the same disk with part of the memory,
 * grown through virtio-mem, throttled, measured → destroy / stop leave nothing behind.
 */
import * as http from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePrstatus } from '@vicover/dumpfmt';
import { loadConfig, silentLogger, Vicover, type CrashEvent, type VmHandle, type VmRef } from '@vicover/core';
import type { QemuBackend, QemuDefinition } from '@vicover/plugin-qemu';
// @ts-ignore — plain ESM harness without type declarations
import { buildGuest, startGuest } from '../../../test/guest/guest.mjs';
import { missingCommands } from '../../../test/tools/commands.mjs';

const MiB = 1024 * 1024;

const missing = missingCommands(['qemu-system-x86_64', 'qemu-img', 'fallocate', 'busybox', 'mke2fs', 'apt-get']);

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as T;
    if (Date.now() > deadline) throw new Error(`timeout after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** GET a URL once (no connection reuse); the body, or null. */
function get(url: string): Promise<string | null> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? body : null));
      res.on('error', () => resolve(null));
    });
    req.on('error', () => resolve(null));
    req.setTimeout(2000, () => req.destroy());
  });
}

describe.skipIf(missing.length > 0)('QEMU backend on a real guest', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vcv-qb-'));
  const shm = mkdtempSync('/dev/shm/vcv-qb-');
  const vmQmp = path.join(dir, 'vicover.qmp');
  let guest: any;
  let backend: QemuBackend;
  let vm: VmRef;
  const crashes: CrashEvent[] = [];
  let rec: VmHandle | null = null;

  beforeAll(async () => {
    const build = await buildGuest();
    guest = await startGuest({
      build,
      name: 'qb',
      memMiB: 512,
      dir,
      httpd: true,
      stamp: true,
      extraArgs: ['-qmp', `unix:${vmQmp},server=on,wait=off`],
    });
    const { plugins, config } = await loadConfig({
      inline: {
        plugins: [
          [
            path.resolve('plugins/qemu'),
            {
              stateDir: path.join(dir, 'state'),
              reconnectMs: 100,
              recoveryDiesWithDaemon: true,
              vms: [
                {
                  name: 'qb',
                  qmp: vmQmp,
                  ramFile: guest.ramPath,
                  memoryMiB: 512,
                  recovery: { ramDir: shm, bootMiB: 192, append: { remove: ['vicover.stamp'] } },
                },
              ],
            },
          ],
        ],
      },
    });
    const core = new Vicover({ config, logger: silentLogger() });
    for (const p of plugins) await core.use(p);
    backend = core.backend() as QemuBackend;
    await backend.start({ onCrash: (e) => crashes.push(e) });
    [vm] = (await backend.list()) as VmRef[];
    await backend.attached('qb');
    await guest.waitReady();
  }, 300_000);

  afterAll(async () => {
    if (rec) await backend.stopVm(rec).catch(() => undefined);
    await backend?.stop();
    await guest?.dispose();
    rmSync(dir, { recursive: true, force: true });
    rmSync(shm, { recursive: true, force: true });
  });

  it('reads how the VM was started from the running process', async () => {
    const def = (await backend.definitionOf(vm)) as unknown as QemuDefinition;
    expect(def.source).toBe('proc-scan');
    expect(def.binary).toMatch(/qemu-system-x86_64$/);
    expect(def.argv.join(' ')).toContain(`mem-path=${guest.ramPath}`);
    expect(statSync(path.join(dir, 'state', 'qb.definition.json')).mode & 0o777).toBe(0o600);
  });

  it('detects the panic, captures CPU state, quits QEMU and keeps the RAM file', async () => {
    await guest.command('stamp before-crash-42');
    const { event } = await guest.crash();
    expect(event.data.action).toBe('pause');
    await until('crash event', () => crashes.length > 0, 10_000, 20);
    expect(crashes[0]!.reason).toBe('GUEST_PANICKED (pause)');
    expect(crashes[0]!.vm.name).toBe('qb');
    const cap = await backend.capture(vm);
    expect(cap.cpuNotes.length).toBe(2);
    for (const n of cap.cpuNotes) {
      const p = decodePrstatus(n.desc);
      expect(p.regs.rip >> 32n).toBe(0xffffffffn);
      expect(p.regs.rsp).toBeGreaterThan(0n);
    }
    expect(cap.info!.status).toBe('guest-panicked');
    await until('QEMU exited', () => guest.exited, 5000, 20); // QEMU is gone …
    expect(statSync(guest.ramPath).size).toBe(512 * MiB); // … its RAM stays
  });

  it('reads guest memory from the RAM file and releases ranges, measuring what was freed', async () => {
    const mem = await backend.openMemory(vm);
    expect(mem.ranges).toEqual([{ start: 0, end: 512 * MiB }]);
    // The kernel's VMCOREINFO text is somewhere in RAM.
    const buf = Buffer.alloc(16 * MiB);
    let found = false;
    for (let a = 0; a < 512 * MiB && !found; a += buf.length) {
      await mem.read(a, buf, 0, buf.length);
      found = buf.includes('OSRELEASE=6.1.0');
    }
    expect(found).toBe(true);
    const before = await backend.allocatedBytes(vm);
    expect(before).toBeGreaterThan(32 * MiB);
    const range = { start: 64 * MiB, end: 192 * MiB };
    const orig = Buffer.alloc(range.end - range.start);
    await mem.read(range.start, orig, 0, orig.length);
    const hadData = !orig.every((b) => b === 0);
    const { freedBytes } = await backend.release(vm, range);
    const after = await backend.allocatedBytes(vm);
    expect(before - after).toBe(freedBytes);
    if (hadData) expect(freedBytes).toBeGreaterThan(0);
    const z = Buffer.alloc(range.end - range.start, 1);
    await mem.read(range.start, z, 0, z.length);
    expect(z.every((b) => b === 0)).toBe(true);
    await mem.close();
  });

  it('starts a recovery VM on the same disk with part of the memory, grows it with virtio-mem, throttles and measures it', async () => {
    const def = await backend.definitionOf(vm);
    rec = await backend.startVm(def, { name: 'qb-recovery', memoryBytes: 320 * MiB, maxMemoryBytes: 512 * MiB });
    expect(backend.memoryOf(rec)).toBe(320 * MiB);
    const lines: string[] = [];
    const unwatch = backend.watchConsole(rec, (l) => lines.push(l));
    const endpoint = backend.endpointsOf(rec)['tcp/80'];
    expect(endpoint).toBe(`127.0.0.1:${guest.hostfwdPort}`);
    // The service comes back on the same port, serving what the crashed guest wrote to the shared disk.
    await until('recovery VM serves the pre-crash value', async () => (await get(`http://${endpoint}/cgi-bin/value`))?.includes('before-crash-42'), 180_000, 500);
    // The console line comes around the time httpd answers (printed by the guest's init, read by a
    // follower polling every 200 ms): wait for it rather than assume an order.
    await until('the recovery VM prints its ready line on the console', () => lines.some((l) => l.startsWith('VICOVER-READY')), 30_000);
    unwatch();
    // Boot memory + plugged virtio-mem memory, as the guest sees it. (A guest with hot-pluggable
    // memory above 4 GiB also reserves a 64 MiB swiotlb out of its boot memory.)
    const memTotalKiB = async () => Number(/MemTotal=(\d+)/.exec(await guest.command('meminfo'))![1]);
    await until('virtio-mem plugged at start', async () => (await backend.pluggedBytes(rec!)) === 128 * MiB, 60_000);
    const small = await until('plugged memory online', async () => {
      const m = await memTotalKiB();
      return m * 1024 > 160 * MiB ? m : null;
    }, 30_000, 500);
    expect(small * 1024).toBeLessThan(320 * MiB);
    await backend.resizeVm(rec, 512 * MiB);
    await until('virtio-mem plugged', async () => (await backend.pluggedBytes(rec!)) === 320 * MiB, 30_000);
    const big = await until('guest memory grew', async () => {
      const m = await memTotalKiB();
      return m * 1024 >= small * 1024 + 190 * MiB ? m : null;
    }, 30_000, 500);
    expect(big * 1024).toBeLessThanOrEqual(512 * MiB);
    // Disk I/O: measured, then limited.
    const io = await backend.vmIoStats(rec);
    expect(io.readBytes).toBeGreaterThan(0);
    await backend.throttleVm(rec, { bps: 2 * MiB });
    const q = (await (backend as any).recoveryClient((backend as any).rec(rec))).execute('query-block');
    const blk = (await q).find((b: any) => b.device === 'd0');
    expect(blk.inserted.bps).toBe(2 * MiB);
    await backend.throttleVm(rec, null);
    // Host memory of the recovery VM = allocated blocks of its RAM files.
    const files = backend.ramFilesOf(rec);
    expect(files.every((f) => f.startsWith(shm))).toBe(true);
    for (const f of files) expect(statSync(f).mode & 0o777).toBe(0o600); // guest memory is private
    const alloc = await backend.vmAllocatedBytes(rec);
    expect(alloc).toBe(files.reduce((s, f) => s + statSync(f).blocks * 512, 0));
    expect(alloc).toBeLessThanOrEqual(512 * MiB);
  }, 300_000);

  it('destroy removes the crashed RAM file; stopVm removes the recovery VM and its files', async () => {
    await backend.destroy(vm);
    expect(existsSync(guest.ramPath)).toBe(false);
    expect(await backend.allocatedBytes(vm)).toBe(0);
    const files = backend.ramFilesOf(rec!);
    const pid = backend.pidOf(rec!);
    await backend.stopVm(rec!);
    rec = null;
    expect(files.some((f) => existsSync(f))).toBe(false);
    expect(existsSync(`/proc/${pid}/cmdline`) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('qb-recovery')).toBe(false);
  });
});
