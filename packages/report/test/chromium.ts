/**
 * Headless Chromium for the report tests: a screenshot or the rendered DOM of a local file. The flags
 * keep it off the network (this machine's is closed: no first-run, sync, component or QUIC traffic),
 * give it a fresh profile each time, and pin the colour profile so pixel colours are the page's.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

export const CHROMIUM = process.env.VICOVER_CHROMIUM ?? '/usr/bin/chromium';

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--hide-scrollbars',
  '--force-color-profile=srgb',
];

/** Chromium waits a lot (≈3 s a page, little CPU): a few at a time, not more (CI has two cores). */
const MAX_PARALLEL = 2;
let running = 0;
const waiting: (() => void)[] = [];

async function run(args: string[]): Promise<{ stdout: string; stderr: string }> {
  while (running >= MAX_PARALLEL) await new Promise<void>((r) => waiting.push(r));
  running++;
  try {
    return await runNow(args);
  } finally {
    running--;
    waiting.shift()?.();
  }
}

function runNow(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const profile = mkdtempSync(path.join(tmpdir(), 'vcv-chromium-'));
  return new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    execFile(CHROMIUM, [...FLAGS, `--user-data-dir=${profile}`, ...args], { env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: 'disabled:' }, timeout: 120_000, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${CHROMIUM} failed: ${err.message}\n${stderr.slice(-2000)}`));
      else resolve({ stdout, stderr });
    });
  }).finally(() => rmSync(profile, { recursive: true, force: true }));
}

export async function screenshot(file: string, out: string, width = 1400, height = 1800): Promise<void> {
  await run([`--screenshot=${out}`, `--window-size=${width},${height}`, pathToFileURL(file).href]);
}

export async function dumpDom(file: string): Promise<string> {
  return (await run(['--dump-dom', pathToFileURL(file).href])).stdout;
}
