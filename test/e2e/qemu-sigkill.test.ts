/**
 * SIGKILL mid-dump, on a real QEMU guest, with the real CLI (`vicover daemon --config …` as a child
 * process). Two boots: the service guest and its recovery VM (which outlives the killed daemon and is
 * adopted by the next one).
 *
 * The dump is slowed (a 12 MiB/s device shared through the io-priority policy, 16 MiB chunks, dump
 * level 1) so there is a window; the daemon is killed once some chunks with data were released and
 * others are still to come. Then, from the journal + the RAM file + the dump file alone:
 *   - every released chunk is durable in the journal, its RAM range is a hole, and its pages read back
 *     from the (incomplete) dump equal the RAM as it was right after the crash;
 *   - every chunk not released is still intact in the RAM file (byte for byte);
 * and a restarted daemon (`--once`) resumes the session: the dump completes and passes the oracles,
 * the recovery VM serves the pre-crash value.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KdumpReader } from '@vicover/dumpfmt';
import { readJournalSync, type CrashReport, type Journal } from '@vicover/core';
import {
  ClientPoller,
  dumpDmesg,
  haveKdumpfile,
  kdumpfilePageCheck,
  MiB,
  missingTools,
  PANIC,
  qemuOptions,
  ROOT,
  startServiceGuest,
  until,
  type ServiceGuest,
} from './helpers.js';

const missing = missingTools(['makedumpfile']);
const MEM_MIB = 512;
const CLI = path.join(ROOT, 'packages/cli/bin/vicover.js');

function findJournal(dumps: string): { dir: string; j: Journal } | null {
  let entries: string[] = [];
  try {
    entries = readdirSync(dumps);
  } catch {
    return null;
  }
  for (const e of entries) {
    try {
      const j = readJournalSync(path.join(dumps, e, 'session.json'));
      if (j) return { dir: path.join(dumps, e), j };
    } catch {
      /* not written yet */
    }
  }
  return null;
}

function readRange(file: string, start: number, len: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(len);
    let done = 0;
    while (done < len) {
      const n = readSync(fd, b, done, len - done, start + done);
      if (n <= 0) break;
      done += n;
    }
    return b;
  } finally {
    closeSync(fd);
  }
}

describe.skipIf(missing.length > 0 || !existsSync(path.join(ROOT, 'packages/cli/dist/bin.js')))('SIGKILL of the daemon mid-dump, then a restart', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vcv-kill-'));
  const shm = mkdtempSync('/dev/shm/vcv-kill-');
  const dumps = path.join(dir, 'dumps');
  const stateDir = path.join(dir, 'state');
  const refRam = path.join(dir, 'ram.ref');
  const cfgFile = path.join(dir, 'vicover.config.json');
  let sg: ServiceGuest;
  let first: ChildProcess | null = null;
  let killedJournal: Journal;
  let sessionDir: string;
  let poller: ClientPoller;
  let secondExit: { code: number | null; signal: string | null };

  const runDaemon = (logName: string, once: boolean) => {
    const log = openSync(path.join(dir, logName), 'w');
    const child = spawn(process.execPath, [CLI, 'daemon', '--config', cfgFile, '--log-format', 'json', ...(once ? ['--once'] : [])], { stdio: ['ignore', log, log] });
    closeSync(log);
    return child;
  };

  beforeAll(async () => {
    sg = await startServiceGuest({ name: 'kill', dir, memMiB: MEM_MIB, load: 'tmpfs:64,anon:128' });
    const name = sg.guest.name as string;
    const config = {
      mode: 'vicover',
      dump: { dir: dumps, chunkMiB: 16, level: 1 },
      io: { bandwidthMiBps: 12 },
      sessions: { recoveryTimeoutSec: 300 },
      log: { level: 'debug', format: 'json' },
      plugins: [
        // The recovery VM must outlive the killed daemon (as on a real host): it is adopted on restart.
        ['qemu', qemuOptions(sg, { name, stateDir, ramDir: shm, diesWithDaemon: false })],
        'linux',
        ['shared-fs', { health: { type: 'http', url: 'http://{tcp/80}/cgi-bin/value', bodyRegex: 'kill-value', intervalMs: 100 } }],
        'io-priority',
        [path.join(ROOT, 'test/e2e/fixtures/reference-copy.mjs'), { from: sg.guest.ramPath, to: refRam }],
      ],
    };
    writeFileSync(cfgFile, JSON.stringify(config, null, 2));
    first = runDaemon('daemon-1.log', false);
    await until('the daemon attached to the VM', () => readFileSync(path.join(dir, 'daemon-1.log'), 'utf8').includes('attached (QMP connected)'), 60_000);
    await sg.guest.waitReady();
    await sg.guest.command('stamp kill-value');
    poller = new ClientPoller(sg.url, /kill-value/);
    poller.start();
    await sg.guest.crash();
    // Kill once a chunk with data was released and several are still to be written.
    const k = await until(
      'a release with more chunks to come',
      () => {
        const r = findJournal(dumps);
        if (!r || r.j.state !== 'dumping') return null;
        const withData = r.j.released.filter((i) => r.j.chunks[i]!.selectedPages > 0).length;
        return withData >= 2 && r.j.chunks.length - r.j.durable.length >= 4 ? r : null;
      },
      240_000,
      20,
    );
    first.kill('SIGKILL');
    await new Promise((r) => first!.once('exit', r));
    first = null;
    sessionDir = k.dir;
    killedJournal = readJournalSync(path.join(sessionDir, 'session.json'))!;
  }, 900_000);

  afterAll(async () => {
    poller?.stop();
    first?.kill('SIGKILL');
    // The recovery VM was started detached by the daemon (on our behalf): stop it by its pidfile.
    for (const f of readdirSync(stateDir).filter((x) => x.endsWith('.recovery.json'))) {
      const r = JSON.parse(readFileSync(path.join(stateDir, f), 'utf8')) as { pid: number; qmpPath: string; files: { boot: string; vmem: string | null } };
      try {
        if (readFileSync(`/proc/${r.pid}/cmdline`, 'utf8').includes(r.qmpPath)) process.kill(r.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await sg?.guest.dispose();
    rmSync(shm, { recursive: true, force: true });
    if (process.env.VICOVER_KEEP_E2E) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  });

  it('after the kill: nothing was released that is not durable, and unreleased memory is intact', async () => {
    const j = killedJournal;
    expect(j.state).toBe('dumping');
    expect(j.released.length).toBeGreaterThan(0);
    expect(j.durable.length).toBeLessThan(j.chunks.length);
    for (const i of j.released) expect(j.durable).toContain(i);
    const r = await KdumpReader.open(j.dumpFile!);
    expect(r.incomplete).toBe(true);
    let checkedPages = 0;
    for (let i = 0; i < j.chunks.length; i++) {
      const c = j.chunks[i]!;
      const len = c.end - c.start;
      const ref = readRange(refRam, c.start, len);
      const ram = readRange(sg.guest.ramPath, c.start, len);
      if (j.released.includes(i)) {
        expect(ram.every((b) => b === 0), `chunk ${i} released: a hole`).toBe(true);
      } else {
        expect(ram.equals(ref), `chunk ${i} not released: intact`).toBe(true);
      }
      if (j.durable.includes(i)) {
        for (let pfn = c.start / 4096; pfn < c.end / 4096; pfn++) {
          if (!r.isDumpable(pfn)) continue;
          const off = pfn * 4096 - c.start;
          expect(r.readPage(pfn).equals(ref.subarray(off, off + 4096)), `pfn ${pfn} of durable chunk ${i}`).toBe(true);
          checkedPages++;
        }
      }
    }
    r.close();
    expect(checkedPages).toBeGreaterThan(0);
    console.log(`e2e sigkill: killed with ${j.durable.length}/${j.chunks.length} chunks durable, ${j.released.length} released; ${checkedPages} durable pages checked`);
  });

  it('a restarted daemon resumes: the dump completes, the recovery VM serves the pre-crash value', async () => {
    const second = runDaemon('daemon-2.log', true);
    secondExit = await new Promise((resolve) => second.once('exit', (code, signal) => resolve({ code, signal })));
    expect(secondExit).toEqual({ code: 0, signal: null });
    const report = JSON.parse(readFileSync(path.join(sessionDir, 'report.json'), 'utf8')) as CrashReport;
    expect(report.error).toBeUndefined();
    expect(report.state).toBe('done');
    expect(report.dump.complete).toBe(true);
    expect(report.timeline.events.map((e) => e.event)).toContain('resumed');
    expect(report.memory.handedOverBytes).toBe(MEM_MIB * MiB);
    // The downtime counts from the crash, across the daemon's own outage.
    expect(report.serviceDowntimeSeconds).not.toBeNull();
    const j = readJournalSync(path.join(sessionDir, 'session.json'))!;
    expect(j.state).toBe('done');
    expect(j.durable.length).toBe(j.chunks.length);
    expect(existsSync(sg.guest.ramPath)).toBe(false);
    const log2 = readFileSync(path.join(dir, 'daemon-2.log'), 'utf8');
    expect(log2).toContain('resuming an interrupted session');
    expect(log2).toContain('adopting it');
    const t = Date.now();
    await until('the client gets the pre-crash value from the recovery VM', () => poller.firstOkAfter(t - 1), 120_000);
    expect(await dumpDmesg(j.dumpFile!, path.join(dir, 'dmesg.txt'))).toContain(PANIC);
    if (haveKdumpfile()) {
      const check = kdumpfilePageCheck(j.dumpFile!, refRam);
      expect(check.mismatch).toBe(0);
      expect(check.missing).toBeLessThan(check.maxPfn);
      const kr = await KdumpReader.open(j.dumpFile!);
      expect(check.read).toBe(kr.pageCounts.dumpable);
      expect(kr.incomplete).toBe(false);
      kr.close();
    }
  }, 900_000);
});
