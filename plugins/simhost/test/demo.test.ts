/**
 * `vicover demo --json` end to end, as a user runs it (the built CLI in a child process): a small
 * simulated guest, all three modes. Checked: everything is labelled simulated; every mode finished;
 * pages by class add up to the total (and, in mode vicover, equal what the generator intended); all
 * memory is handed over at the end; downtime ordering restart-only ≤ vicover < coredump-restart. The
 * disk is slow (32 MiB/s) so that the dump competes with the recovery VM's boot. No timing is asserted.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CrashReport } from '@vicover/core';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = path.join(ROOT, 'packages/cli/bin/vicover.js');
const GUEST_GIB = 2;

interface DemoJson {
  simulated: boolean;
  settings: { guestGiB: number; modes: string[]; time: string };
  image: { intended: Record<string, number> };
  reports: Record<string, CrashReport>;
  summary: Record<string, { serviceDowntimeSeconds: number; totalSeconds: number; bytesWritten: number }>;
  measured: { dir: string };
}

function demo(args: string[]): Promise<{ code: number; json: DemoJson; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, 'demo', '--json', ...args], { maxBuffer: 64 << 20 }, (e, stdout, stderr) => {
      try {
        resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, json: JSON.parse(stdout.trim().split('\n').at(-1)!), stderr });
      } catch {
        reject(new Error(`vicover demo failed: ${e?.message}\n${stderr}`));
      }
    });
  });
}

describe('vicover demo --json (SIMULATED host, three modes)', () => {
  let res: { code: number; json: DemoJson; stderr: string };
  beforeAll(async () => {
    res = await demo(['--guest-gib', String(GUEST_GIB), '--free-percent', '50', '--bandwidth-mibps', '32', '--chunk-mib', '64']);
  }, 300_000);
  afterAll(() => {
    if (res?.json?.measured?.dir) rmSync(res.json.measured.dir, { recursive: true, force: true });
  });

  it('runs every mode to the end, labelled simulated everywhere', () => {
    expect(res.code).toBe(0);
    const j = res.json;
    expect(j.simulated).toBe(true);
    expect(Object.keys(j.reports).sort()).toEqual(['coredump-restart', 'restart-only', 'vicover']);
    for (const r of Object.values(j.reports)) {
      expect(r.simulated).toBe(true);
      expect(r.backend).toBe('simhost');
      expect(r.state).toBe('done');
      expect(r.error).toBeUndefined();
      expect(r.triage.panicLine).toBe('Kernel panic - not syncing: sysrq triggered crash');
      expect(r.crash.reason).toMatch(/^SIMULATED/);
      if (r.dump.sink) expect(r.dump.sink).toMatch(/^SIMULATED/);
    }
  });

  it('pages by class add up to the total', () => {
    const pagesTotal = (GUEST_GIB * 2 ** 30) / 4096;
    for (const mode of ['vicover', 'coredump-restart']) {
      const p = res.json.reports[mode]!.pages;
      expect(p.total).toBe(pagesTotal);
      const excluded = Object.values(p.excluded).reduce((a, b) => a + b, 0);
      expect(p.dumped + excluded).toBe(p.total);
    }
    expect(res.json.reports['coredump-restart']!.pages.dumped).toBe(pagesTotal);
    // Mode vicover excluded exactly what the generator put into the guest.
    const ex = res.json.reports.vicover!.pages.excluded;
    const want = res.json.image.intended;
    expect({ free: ex.free, cache: ex.cache, privateCache: ex.privateCache, user: ex.user, zero: ex.zero }).toEqual({
      free: want.free,
      cache: want.cache,
      privateCache: want.privateCache,
      user: want.user,
      zero: want.zero,
    });
    expect(res.json.reports.vicover!.pages.dumped).toBe(want.remaining);
  });

  it('hands all memory over by the end', () => {
    for (const r of Object.values(res.json.reports)) {
      expect(r.memory.handedOverBytes).toBe(r.vm.memoryBytes);
      expect(r.timeline.handover.at(-1)!.handedOverBytes).toBe(r.vm.memoryBytes);
      expect(r.memory.peakBytes).toBeLessThanOrEqual(r.memory.budgetBytes);
    }
    // Mode vicover hands memory over chunk by chunk.
    expect(res.json.reports.vicover!.timeline.handover.length).toBeGreaterThan(2);
  });

  it('downtime: restart-only ≤ vicover < coredump-restart', () => {
    const d = (m: string) => res.json.reports[m]!.serviceDowntimeSeconds!;
    for (const m of ['vicover', 'coredump-restart', 'restart-only']) expect(d(m)).toBeGreaterThan(0);
    expect(d('restart-only')).toBeLessThanOrEqual(d('vicover'));
    expect(d('vicover')).toBeLessThan(d('coredump-restart'));
  });
});
