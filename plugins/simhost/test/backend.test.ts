/**
 * The simhost backend under the real core Daemon, with the real linux and shared-fs plugins, in wall
 * time (a short modelled boot): shared-fs's default health check (HTTP on the recovery VM's {tcp/80})
 * passes on a simulated VM, a crash arrives on the command socket, the dump goes through the modelled
 * disk into a file (or into the counting sink when forced), host memory stays within the budget, and
 * the report says simulated.
 */
import * as net from 'node:net';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Daemon, loadConfig, silentLogger, Vicover, type CrashReport } from '@vicover/core';
import { KdumpReader } from '@vicover/dumpfmt';
import type { SimhostBackend } from '@vicover/plugin-simhost';

const work = mkdtempSync(path.join(tmpdir(), 'vcv-simhost-be-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function daemonWith(extra: Record<string, unknown>, health?: Record<string, unknown>) {
  const socket = path.join(work, `cmd-${Math.random().toString(36).slice(2)}.sock`);
  const { config, plugins } = await loadConfig({
    inline: {
      mode: 'vicover',
      dump: { dir: path.join(work, 'dumps'), chunkMiB: 32 },
      io: { bandwidthMiBps: 400 },
      sessions: { recoveryTimeoutSec: 120 },
      plugins: [
        ['simhost', { cacheDir: path.join(work, 'cache'), vms: [{ name: 'web1', memoryMiB: 512, freePercent: 50 }], recovery: { bootSeconds: 0.5, steps: 5, readMiB: 8 }, commandSocket: socket, ...extra }],
        'linux',
        health ? ['shared-fs', { health }] : 'shared-fs',
        'io-priority',
      ],
    },
  });
  const core = new Vicover({ config, logger: silentLogger() });
  for (const p of plugins) await core.use(p);
  let resolve!: (r: CrashReport) => void;
  const report = new Promise<CrashReport>((r) => (resolve = r));
  const daemon = new Daemon({ core, onReport: (r) => resolve(r) });
  await daemon.start();
  return { core, daemon, report, socket, backend: core.backend() as SimhostBackend };
}

function command(socket: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let got = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      got += d;
      if (got.includes('\n')) {
        c.end();
        resolve(got.trim());
      }
    });
    c.on('error', reject);
    c.write(`${line}\n`);
  });
}

describe('simhost backend with the core, linux and shared-fs', () => {
  it('crash on command → selective dump into a file, HTTP health check passes, memory within budget', async () => {
    const { daemon, report, socket, backend } = await daemonWith({});
    try {
      expect(await command(socket, 'crash web1')).toBe('OK crash web1');
      const r = await report;
      expect(r.simulated).toBe(true);
      expect(r.state).toBe('done');
      expect(r.recovery.check).toMatch(/^GET http:\/\/127\.0\.0\.1:\d+\/ → 200$/);
      expect(r.serviceDowntimeSeconds).not.toBeNull();
      expect(r.dump.sink).toMatch(/^SIMULATED: modelled disk/);
      expect(r.memory.handedOverBytes).toBe(512 * 1024 * 1024);
      expect(r.memory.peakBytes).toBeLessThanOrEqual(r.memory.budgetBytes);
      const intended = backend.imageOf('web1')!.meta.intended;
      expect(r.pages.dumped).toBe(intended.remaining);
      const k = await KdumpReader.open(r.dump.file!);
      expect(k.incomplete).toBe(false);
      expect(k.pages).toBe(intended.remaining + intended.zero);
      k.close();
      expect(statSync(r.dump.file!).size).toBeGreaterThan(intended.remaining * 4096);
      // The VM runs again after its recovery and can crash again; an unknown VM is refused.
      expect(await command(socket, 'crash nope')).toMatch(/^ERR .*unknown VM/);
    } finally {
      await daemon.stop();
      await backend.stopAll();
    }
  });

  it('a forced counting sink keeps nothing but counts every byte, and says so', async () => {
    const { daemon, report, backend } = await daemonWith({ dump: { sink: 'count' } }, { type: 'serial', lineRegex: 'VICOVER-READY' });
    try {
      backend.crash('web1');
      const r = await report;
      expect(r.state).toBe('done');
      expect(r.recovery.check).toBe('serial /VICOVER-READY/');
      expect(r.dump.sink).toMatch(/^SIMULATED: counting sink .* NOT stored/);
      expect(r.dump.bytesWritten).toBeGreaterThan(r.pages.dumped * 4096);
      expect(() => statSync(r.dump.file!)).toThrow();
      expect(backend.status().dumpSink).toMatchObject({ kind: 'count' });
    } finally {
      await daemon.stop();
      await backend.stopAll();
    }
  });
});
