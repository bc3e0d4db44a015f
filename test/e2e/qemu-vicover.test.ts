/**
 * End to end, mode vicover, on a real QEMU guest (two boots: the service guest and its recovery VM).
 *
 * A busybox httpd in the guest serves a value the guest wrote to its disk; a host client polls it
 * through QEMU user networking (hostfwd). The guest crashes (sysrq via the command port); the
 * in-process daemon (qemu + linux + shared-fs plugins) captures it, starts the recovery VM on the
 * same disk with the host memory available now, dumps selectively and hands memory over chunk by
 * chunk. Checked: the client gets the pre-crash value from the recovery VM; the dump passes
 * `makedumpfile --dump-dmesg` (panic line) and every page libkdumpfile reads from it equals the same
 * page of a sparse copy of the RAM file taken right after the crash; host memory (crashed RAM file +
 * recovery RAM files, sampled every 100 ms from outside) never exceeds the crashed VM's size plus the
 * configured margin. No timing is asserted.
 */
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KdumpReader } from '@vicover/dumpfmt';
import { loadConfig, STAGE, type CrashReport, type Daemon, type Vicover } from '@vicover/core';
import { startDaemon, type InProcessDaemon } from '../tools/daemon.mjs';
import type { QemuBackend } from '@vicover/plugin-qemu';
import {
  BudgetSampler,
  ClientPoller,
  dumpDmesg,
  haveKdumpfile,
  kdumpfilePageCheck,
  MiB,
  missingTools,
  PANIC,
  qemuOptions,
  sparseCopy,
  startServiceGuest,
  until,
  type ServiceGuest,
} from './helpers.js';

const missing = missingTools(['makedumpfile']);
const MEM_MIB = 768;
const MARGIN_MIB = 256;
/** The reference copy is taken before triage reads memory and before anything can be released. */
const REFERENCE_STAGE = STAGE.TRIAGE - 1;

describe.skipIf(missing.length > 0)('crash daemon on QEMU, mode vicover', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vcv-e2e-'));
  const shm = mkdtempSync('/dev/shm/vcv-e2e-');
  let sg: ServiceGuest;
  let daemon: Daemon;
  let backend: QemuBackend;
  let report: CrashReport;
  let h: InProcessDaemon<QemuBackend> | null = null;
  let value: string;
  let crashAt = 0;
  const refRam = path.join(dir, 'ram.ref');
  let poller: ClientPoller;
  let sampler: BudgetSampler;
  let logFd = -1;

  beforeAll(async () => {
    sg = await startServiceGuest({ name: 'e2e', dir, memMiB: MEM_MIB, load: 'cache:64,meta:500,tmpfs:64,anon:320' });
    const { config, plugins } = await loadConfig({
      inline: {
        mode: 'vicover',
        dump: { dir: path.join(dir, 'dumps'), chunkMiB: 32 },
        memory: { marginMiB: MARGIN_MIB },
        // A disk of 50 MiB/s shared by the dump and the recovery VM (the recovery VM first).
        io: { bandwidthMiBps: 50 },
        sessions: { recoveryTimeoutSec: 300 },
        plugins: [
          ['qemu', qemuOptions(sg, { name: 'e2e', stateDir: path.join(dir, 'state'), ramDir: shm })],
          'linux',
          ['shared-fs', { health: { type: 'http', url: 'http://{tcp/80}/cgi-bin/value', bodyRegex: 'e2e-value-', intervalMs: 100 } }],
          'io-priority',
        ],
      },
    });
    logFd = openSync(path.join(dir, 'daemon.log'), 'w');
    h = await startDaemon<QemuBackend>({
      config,
      plugins,
      logFd,
      vm: 'e2e',
      // Test-only: a sparse copy of the RAM file right after capture, as the page oracle's reference.
      extraPlugins: [
        {
          name: 'test-reference',
          apply(c: Vicover) {
            c.hooks.onCrash.tapPromise({ name: 'test-reference', stage: REFERENCE_STAGE }, async () => sparseCopy(sg.guest.ramPath, refRam));
          },
        },
      ],
    });
    daemon = h.daemon;
    backend = h.backend;
    const finished = h.finished;
    await sg.guest.waitReady();

    value = `e2e-value-${Date.now()}`;
    await sg.guest.command(`stamp ${value}`);
    poller = new ClientPoller(sg.url, new RegExp(value));
    poller.start();
    await until('the service answers before the crash', () => poller.samples.some((s) => s.ok), 30_000);
    sampler = new BudgetSampler(sg.guest.ramPath, shm);
    sampler.start();
    await sg.guest.crash();
    crashAt = Date.now(); // GUEST_PANICKED arrived: the service is down from here
    report = await finished;
    // Keep polling until the client has seen the service again (the strategy's check may be first).
    await until('the client sees the service again', () => poller.firstOkAfter(crashAt), 120_000);
    sampler.stop();
    poller.stop();
  }, 900_000);

  afterAll(async () => {
    poller?.stop();
    sampler?.stop();
    await daemon?.stop('test done');
    if (h?.session?.recovery) await backend.stopVm(h.session.recovery).catch(() => undefined);
    await sg?.guest.dispose();
    if (logFd >= 0) closeSync(logFd);
    rmSync(shm, { recursive: true, force: true });
    if (process.env.VICOVER_KEEP_E2E) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  });

  it('finishes the session: dump complete, all memory handed over, service recovered', () => {
    expect(report.error).toBeUndefined();
    expect(report.state).toBe('done');
    expect(report.mode).toBe('vicover');
    expect(report.backend).toBe('qemu');
    expect(report.simulated).toBe(false);
    expect(report.crash.reason).toBe('GUEST_PANICKED (pause)');
    expect(report.dump.complete).toBe(true);
    expect(report.memory.handedOverBytes).toBe(MEM_MIB * MiB);
    expect(report.serviceDowntimeSeconds).not.toBeNull();
    expect(report.totalSeconds).not.toBeNull();
    expect(report.recovery.vm).toBeTruthy();
    expect((report.extra.capture as { cpus: number }).cpus).toBe(2);
    // The crashed VM's RAM file is gone; the recovery VM runs with all the memory.
    expect(existsSync(sg.guest.ramPath)).toBe(false);
    expect(backend.memoryOf(h!.session!.recovery!)).toBe(MEM_MIB * MiB);
    // The recovery VM started before the dump ended (that is the point of the mode) and with less
    // than the full memory (the crashed guest still held its RAM).
    expect(report.recovery.startedAtMs!).toBeLessThan(report.dump.finishedAtMs!);
    expect(report.recovery.initialBytes!).toBeLessThan(MEM_MIB * MiB);
    // Chunks were handed over one by one during the dump.
    expect(report.timeline.handover.length).toBeGreaterThan(2);
    // The I/O policy ran and its shares were enforced on the recovery VM's drive.
    expect(report.timeline.shares.length).toBeGreaterThan(0);
    expect(report.warnings.filter((w) => /throttl/i.test(w.message))).toEqual([]);
  });

  it('the client gets the value written before the crash from the recovery VM', async () => {
    const back = poller.firstOkAfter(crashAt);
    expect(back).not.toBeNull();
    const last = poller.lastOkBefore(crashAt);
    expect(last).not.toBeNull();
    console.log(`e2e vicover: outside-client downtime ${((back! - crashAt) / 1000).toFixed(1)} s, report downtime ${report.serviceDowntimeSeconds} s, total ${report.totalSeconds?.toFixed(1)} s, dump ${report.dump.seconds} s`);
  });

  it('the dump passes makedumpfile --dump-dmesg with the panic line', async () => {
    const text = await dumpDmesg(report.dump.file!, path.join(dir, 'dmesg.txt'));
    expect(text).toContain(PANIC);
    expect(report.triage.panicLine).toContain('sysrq triggered crash');
  });

  it.runIf(haveKdumpfile())('every page libkdumpfile reads from the dump equals the RAM right after the crash', async () => {
    const r = await KdumpReader.open(report.dump.file!);
    const dumpable = r.pageCounts.dumpable;
    expect(r.incomplete).toBe(false);
    r.close();
    const check = kdumpfilePageCheck(report.dump.file!, refRam);
    expect(check.mismatch).toBe(0);
    expect(check.read).toBe(dumpable);
    expect(check.read).toBeGreaterThan(1000);
    // The filter left pages out (free, cache, …): a selective dump.
    expect(check.read).toBeLessThan((MEM_MIB * MiB) / 4096);
    expect(check.cpu0rip).toMatch(/^0xffffffff[0-9a-f]{8}$/); // a kernel text address
  });

  it('host memory never exceeded the crashed VM size plus the margin', () => {
    const limit = (MEM_MIB + MARGIN_MIB) * MiB;
    console.log(`e2e vicover: host memory peak ${(sampler.peak / MiB).toFixed(0)} MiB (limit ${limit / MiB} MiB) over ${sampler.samples} samples; report peak ${(report.memory.peakBytes / MiB).toFixed(0)} MiB`);
    expect(sampler.samples).toBeGreaterThan(10);
    expect(sampler.withRecovery).toBeGreaterThan(0);
    expect(sampler.peak).toBeLessThanOrEqual(limit);
    expect(report.memory.peakBytes).toBeLessThanOrEqual(limit);
    expect(report.memory.budgetBytes).toBe(limit);
    expect(statSync(refRam).size).toBe(MEM_MIB * MiB);
  });
});
