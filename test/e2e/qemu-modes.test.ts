/**
 * The same daemon in the two baseline modes, on real QEMU guests (two boots per mode: the service
 * guest and its recovery VM; small idle guests to keep CI time down).
 *
 * - coredump-restart: full dump (no filter), nothing released while dumping, then the crashed VM is
 *   destroyed and the recovery VM starts with all its memory (what xl/libvirt do with
 *   on_crash=coredump-restart).
 * - restart-only: no dump; the crashed VM is destroyed at once and the recovery VM starts with all
 *   its memory (the lower bound of downtime).
 *
 * In both the client gets the pre-crash value back and host memory stays within the budget.
 */
import { closeSync, existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, type CrashReport, type CrashSession, type Daemon } from '@vicover/core';
import { startDaemon, type InProcessDaemon } from '../tools/daemon.mjs';
import type { QemuBackend } from '@vicover/plugin-qemu';
import { BudgetSampler, ClientPoller, dumpDmesg, MiB, missingTools, PANIC, qemuOptions, startServiceGuest, until } from './helpers.js';

const missing = missingTools(['makedumpfile']);
const MEM_MIB = 512;
const MARGIN_MIB = 128;

interface Run {
  report: CrashReport;
  session: CrashSession;
  backend: QemuBackend;
  poller: ClientPoller;
  sampler: BudgetSampler;
  crashAt: number;
  ramPath: string;
  dir: string;
  cleanup: () => Promise<void>;
}

async function runMode(mode: 'coredump-restart' | 'restart-only'): Promise<Run> {
  const dir = mkdtempSync(path.join(tmpdir(), `vcv-${mode}-`));
  const shm = mkdtempSync(`/dev/shm/vcv-${mode}-`);
  const sg = await startServiceGuest({ name: mode === 'restart-only' ? 'ro' : 'cr', dir, memMiB: MEM_MIB, load: 'anon:64' });
  const logFd = openSync(path.join(dir, 'daemon.log'), 'w');
  let daemon: Daemon | null = null;
  let backend: QemuBackend | null = null;
  let h: InProcessDaemon<QemuBackend> | null = null;
  const cleanup = async () => {
    await daemon?.stop('test done');
    if (h?.session?.recovery) await backend?.stopVm(h.session.recovery).catch(() => undefined);
    await sg.guest.dispose();
    closeSync(logFd);
    rmSync(shm, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const name = sg.guest.name as string;
    const { config, plugins } = await loadConfig({
      inline: {
        mode,
        dump: { dir: path.join(dir, 'dumps'), chunkMiB: 32 },
        memory: { marginMiB: MARGIN_MIB },
        sessions: { recoveryTimeoutSec: 300 },
        plugins: [
          ['qemu', qemuOptions(sg, { name, stateDir: path.join(dir, 'state'), ramDir: shm })],
          'linux',
          ['shared-fs', { health: { type: 'http', url: 'http://{tcp/80}/cgi-bin/value', bodyRegex: `${mode}-value`, intervalMs: 100 } }],
        ],
      },
    });
    h = await startDaemon<QemuBackend>({ config, plugins, logFd, vm: name });
    daemon = h.daemon;
    backend = h.backend;
    const finished = h.finished;
    await sg.guest.waitReady();
    await sg.guest.command(`stamp ${mode}-value`);
    const poller = new ClientPoller(sg.url, new RegExp(`${mode}-value`));
    poller.start();
    await until('the service answers before the crash', () => poller.samples.some((s) => s.ok), 30_000);
    const sampler = new BudgetSampler(sg.guest.ramPath, shm);
    sampler.start();
    await sg.guest.crash();
    const crashAt = Date.now();
    const report = await finished;
    await until('the client sees the service again', () => poller.firstOkAfter(crashAt), 120_000);
    sampler.stop();
    poller.stop();
    return { report, session: h.session!, backend, poller, sampler, crashAt, ramPath: sg.guest.ramPath, dir, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

describe.skipIf(missing.length > 0)('crash daemon on QEMU, baseline modes', () => {
  const runs: Run[] = [];
  afterAll(async () => {
    for (const r of runs) await r.cleanup();
  });

  it('coredump-restart: full dump first, nothing released meanwhile, then a restart with all memory', async () => {
    const run = await runMode('coredump-restart');
    runs.push(run);
    const { report, backend, session, sampler } = run;
    expect(report.error).toBeUndefined();
    expect(report.state).toBe('done');
    expect(report.dump.complete).toBe(true);
    // Full dump: no filter ran, every RAM page is in the file.
    expect(report.pages.dumped).toBe(report.pages.total);
    expect(report.pages.total).toBe((MEM_MIB * MiB) / 4096);
    // Memory was handed over once, at the end, and the recovery VM started after the dump.
    expect(report.timeline.handover.length).toBe(1);
    expect(report.recovery.startedAtMs!).toBeGreaterThanOrEqual(report.dump.finishedAtMs!);
    expect(report.recovery.initialBytes).toBe(MEM_MIB * MiB);
    expect(backend.memoryOf(session.recovery!)).toBe(MEM_MIB * MiB);
    expect(backend.ramFilesOf(session.recovery!).length).toBe(1); // no virtio-mem
    expect(report.serviceDowntimeSeconds!).toBeGreaterThan(report.dump.seconds!);
    expect(existsSync(run.ramPath)).toBe(false);
    expect(await dumpDmesg(report.dump.file!, path.join(run.dir, 'dmesg.txt'))).toContain(PANIC);
    expect(sampler.peak).toBeLessThanOrEqual((MEM_MIB + MARGIN_MIB) * MiB);
    console.log(`e2e coredump-restart: downtime ${report.serviceDowntimeSeconds} s (client ${((run.poller.firstOkAfter(run.crashAt)! - run.crashAt) / 1000).toFixed(1)} s), dump ${report.dump.seconds} s, peak ${(sampler.peak / MiB).toFixed(0)} MiB`);
  }, 900_000);

  it('restart-only: no dump, the crashed VM goes at once, the recovery VM starts with all memory', async () => {
    const run = await runMode('restart-only');
    runs.push(run);
    const { report, backend, session, sampler } = run;
    expect(report.error).toBeUndefined();
    expect(report.state).toBe('done');
    expect(report.dump.bytesWritten).toBe(0);
    expect(report.dump.file).toBeUndefined();
    expect(report.timeline.handover.length).toBe(1);
    expect(report.recovery.initialBytes).toBe(MEM_MIB * MiB);
    expect(backend.memoryOf(session.recovery!)).toBe(MEM_MIB * MiB);
    expect(report.serviceDowntimeSeconds).not.toBeNull();
    expect(existsSync(run.ramPath)).toBe(false);
    expect(sampler.peak).toBeLessThanOrEqual((MEM_MIB + MARGIN_MIB) * MiB);
    console.log(`e2e restart-only: downtime ${report.serviceDowntimeSeconds} s (client ${((run.poller.firstOkAfter(run.crashAt)! - run.crashAt) / 1000).toFixed(1)} s), peak ${(sampler.peak / MiB).toFixed(0)} MiB`);
  }, 900_000);
});
