/**
 * `vicover report` and `vicover daemon` as a user runs them (the built CLI in a child process), and
 * the daemon hook-up through the core's Daemon: report.html lands next to report.json, 0600.
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { Daemon, type CrashReport } from '@vicover/core';
import { fmtSeconds, htmlReportWriter, parseReport } from '@vicover/report';
import { fixtureCore, runFixture } from './fixtures.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, '../../..');
const BIN = path.join(ROOT, 'packages/cli/bin/vicover.js');

function vicover(args: string[], cwd = ROOT): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

let dir: string;
let reportFile: string;
let report: CrashReport;

beforeAll(async () => {
  const fx = await runFixture({ mode: 'vicover', bandwidthMiBps: 80, panicLine: 'Kernel panic - not syncing: \u001b[31mred\u001b[0m <b>' });
  report = fx.report;
  reportFile = path.join(fx.session.directory!, 'report.json');
  dir = mkdtempSync(path.join(tmpdir(), 'vcv-report-cli-'));
});

describe('vicover report', () => {
  it('prints the key figures and writes the page 0600', async () => {
    const out = path.join(dir, 'out.html');
    writeFileSync(out, 'old');
    chmodSync(out, 0o644);
    const r = await vicover(['report', reportFile, '--html', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^crash of web1 — vicover — done\n/);
    // The downtime is whatever this run measured (ms under a second, seconds on a loaded machine).
    expect(r.stdout).toContain(`\n  downtime      ${fmtSeconds(report.serviceDowntimeSeconds)} (crash → web1-recovery healthy, tcp:80 answers)\n`);
    expect(r.stdout).toContain(`  html          ${out}\n`);
    // Guest text reaches the terminal without its escape sequences.
    expect(r.stdout).toContain('Kernel panic - not syncing: \\x1b[31mred\\x1b[0m <b>');
    expect(r.stdout).not.toContain('\u001b');
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const html = readFileSync(out, 'utf8');
    expect(html).toMatch(/^<!DOCTYPE html>/);
    expect(html).toContain(`from <code>${reportFile}</code>`);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('--json prints the figures for machines; a session directory stands for its report.json', async () => {
    const r = await vicover(['report', path.dirname(reportFile), '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.file).toBe(reportFile);
    expect(j.figures.serviceDowntimeSeconds).toBe(report.serviceDowntimeSeconds);
    expect(j.figures.pages.dumped).toBe(report.pages.dumped);
    expect(j.figures.memory.handedOverBytes).toBe(report.memory.handedOverBytes);
  });

  it('refuses what is not a report, with a coded error and exit status 65', async () => {
    const notJson = path.join(dir, 'vmcore');
    writeFileSync(notJson, Buffer.from([0x4b, 0x44, 0x55, 0x4d, 0x50, 0, 0, 0]));
    let r = await vicover(['report', notJson]);
    expect(r.code).toBe(65);
    expect(r.stderr).toMatch(/^vicover: error VCV_ERR_FORMAT_UNKNOWN: .*vmcore is not a Vicover crash report: it is not JSON/);

    const v2 = path.join(dir, 'v2.json');
    writeFileSync(v2, JSON.stringify({ ...report, reportVersion: 2 }));
    r = await vicover(['report', v2, '--json']);
    expect(r.code).toBe(65);
    expect(JSON.parse(r.stdout).error.code).toBe('VCV_ERR_FORMAT_UNSUPPORTED');

    const bad = path.join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ ...report, timeline: { ...report.timeline, shares: [{ tMs: 1, dumpBps: 'fast', recoveryBps: null }] } }));
    r = await vicover(['report', bad]);
    expect(r.code).toBe(65);
    expect(r.stderr).toContain('VCV_ERR_FORMAT_INVALID');
    expect(r.stderr).toContain('  timeline.shares[0].dumpBps must be a number or null (found "fast")');
  });

  it('a missing input exits 66, an output that cannot be created 73', async () => {
    let r = await vicover(['report', path.join(dir, 'nope.json')]);
    expect(r.code).toBe(66);
    expect(r.stderr).toContain('VCV_ERR_INPUT_NOT_FOUND');
    r = await vicover(['report', reportFile, '--html', path.join(dir, 'no/such/dir/r.html')]);
    expect(r.code).toBe(73);
    expect(r.stderr).toContain('VCV_ERR_OUTPUT_CREATE');
  });
});

describe('the daemon writes report.html next to report.json', () => {
  async function daemonRun(html: boolean) {
    const { core, backend, vm } = await fixtureCore({ mode: 'vicover' }, { report: { html } });
    const crashing = { ...backend, start: async (ctx: { onCrash(e: { vm: typeof vm; at: number; reason: string }): void }) => void setTimeout(() => ctx.onCrash({ vm, at: Date.now(), reason: 'test crash' }), 20) };
    await core.use({ name: 'test-backend', apply: (c) => c.registerBackend(crashing) });
    const pages = htmlReportWriter({ enabled: core.config.report.html });
    let sessionDir = '';
    let resolveEnded!: () => void;
    const ended = new Promise<void>((resolve) => (resolveEnded = resolve));
    const daemon = new Daemon({
      core,
      onReport: (r, s) => {
        pages.onReport(r, s);
        sessionDir = s.directory!;
        resolveEnded();
      },
    });
    await daemon.start();
    await ended;
    await daemon.stop('test');
    await pages.settled();
    return sessionDir;
  }

  it('for every session when report.html is on (the default)', async () => {
    const d = await daemonRun(true);
    const file = path.join(d, 'report.html');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const html = readFileSync(file, 'utf8');
    const r = parseReport(readFileSync(path.join(d, 'report.json'), 'utf8'));
    expect(html).toContain(r.sessionId);
    expect(html).toContain('<svg class="vcv-timeline"');
  });

  it('not when report.html is off', async () => {
    const d = await daemonRun(false);
    expect(existsSync(path.join(d, 'report.json'))).toBe(true);
    expect(existsSync(path.join(d, 'report.html'))).toBe(false);
  });

  /** A backend plugin file as a third party would write it: an 8 MiB guest that crashes at start. */
  function crashyDaemon(leak: boolean): { work: string; config: string } {
    const work = mkdtempSync(path.join(tmpdir(), 'vcv-report-daemon-'));
    const core = pathToFileURL(path.join(ROOT, 'packages/core/dist/index.bundle.js')).href;
    // leak: start() spawns a child with pipes that stop() never ends — it would hold the process open.
    const startLeak = leak ? `(await import('node:child_process')).spawn('sleep', ['30'], { stdio: ['ignore', 'pipe', 'pipe'] });` : '';
    writeFileSync(
      path.join(work, 'crashy.mjs'),
      `import { definePlugin } from ${JSON.stringify(core)};
const MiB = 1048576, size = 8 * MiB, mem = Buffer.alloc(size, 7);
const vm = { id: 'c1', name: 'crashy', memoryBytes: size };
let released = [];
const source = { description: 'crashy RAM', ranges: [{ start: 0, end: size }], maxPfn: size / 4096, notes: [],
  readSync: (a, d, o, l) => d.set(mem.subarray(a, a + l), o), read: async (a, d, o, l) => d.set(mem.subarray(a, a + l), o), close: async () => {} };
export default definePlugin({ name: 'crashy', apply(core) { core.registerBackend({
  name: 'crashy', growGranularityBytes: 2 * MiB,
  async start(ctx) { ${startLeak} setTimeout(() => ctx.onCrash({ vm, at: Date.now(), reason: 'crashy crash' }), 50); },
  async stop() {}, async list() { return [vm]; }, async capture() { return { cpuNotes: [] }; },
  async openMemory() { return source; }, async release(_v, r) { released.push(r); return { freedBytes: r.end - r.start }; },
  releasesImmediately: () => true, async allocatedBytes() { return size; }, async destroy() {}, async definitionOf() { return {}; },
  async startVm() { return { id: 'r', name: 'r' }; }, async resizeVm() {}, async throttleVm() {},
  async vmIoStats() { return { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 }; }, async vmAllocatedBytes() { return 0; }, async stopVm() {} }); } });
`,
    );
    writeFileSync(path.join(work, 'vicover.config.json'), JSON.stringify({ mode: 'vicover', plugins: ['./crashy.mjs'], dump: { dir: path.join(work, 'dumps') }, sessions: { recoveryTimeoutSec: 1 }, log: { level: 'warn' } }));
    return { work, config: path.join(work, 'vicover.config.json') };
  }

  it('`vicover daemon --once` with a configured backend plugin', async () => {
    const { work, config } = crashyDaemon(false);
    const r = await vicover(['daemon', '--once', '--config', config], work);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('still running');
    const [session] = readdirSync(path.join(work, 'dumps'));
    const d = path.join(work, 'dumps', session!);
    expect(readdirSync(d).sort()).toEqual(expect.arrayContaining(['report.html', 'report.json']));
    expect(statSync(path.join(d, 'report.html')).mode & 0o777).toBe(0o600);
    expect(readFileSync(path.join(d, 'report.html'), 'utf8')).toContain('Crash of crashy');
  });

  it('`vicover daemon --once` exits even when a plugin leaves a child process open, and names it', async () => {
    const { work, config } = crashyDaemon(true);
    const r = await vicover(['daemon', '--once', '--config', config], work);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/vicover: still running 10 s after the command finished \(open: .*ProcessWrap.*\); exiting/);
    expect(readdirSync(path.join(work, 'dumps'))).toHaveLength(1);
  });
});
