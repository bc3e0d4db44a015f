/**
 * Helpers for the CLI-level tests of `vicover dump` on real crashed guests (test/guest image sets):
 * run the built CLI as a user would, and the independent oracles (makedumpfile, readelf,
 * python3-libkdumpfile under /usr/bin/python3).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { missingCommands } from '../tools/commands.mjs';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = path.join(ROOT, 'packages/cli/bin/vicover.js');
export const PY = '/usr/bin/python3';
export const PS = 4096;
export const PANIC = 'Kernel panic - not syncing: sysrq triggered crash';

/** The image sets under test: the CI pair, plus the ≥ 4 GiB ones with VICOVER_BIG_IMAGES=1. */
export const IMAGES: readonly string[] = ['small4', 'mixed5', ...(process.env.VICOVER_BIG_IMAGES === '1' ? ['big4', 'big5'] : [])];

/** Tools these tests need (building the images needs QEMU; the oracles need the rest). */
export function missingTools(): string[] {
  return missingCommands(['qemu-system-x86_64', 'makedumpfile', 'readelf'], { python: ['kdumpfile'] });
}

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON (with --json), else undefined. */
  json: any;
  args: string[];
}

/** `node packages/cli/bin/vicover.js ARGS…`, synchronously (the dump is the only thing running). */
export function vicover(args: string[], opts: { timeoutMs?: number } = {}): CliRun {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', maxBuffer: 1 << 28, timeout: opts.timeoutMs ?? 15 * 60_000 });
  if (r.error) throw r.error;
  let json: any;
  if (args.includes('--json')) {
    try {
      json = JSON.parse(r.stdout);
    } catch {
      json = undefined;
    }
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, json, args };
}

/** A readable summary of a failed run for assertion messages. */
export function explain(r: CliRun): string {
  return `vicover ${r.args.join(' ')} → exit ${r.status}\nstdout: ${r.stdout.slice(0, 2000)}\nstderr: ${r.stderr.slice(-3000)}`;
}

export function run(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface RawRange {
  fileOffset: number;
  gpa: number;
  size: number;
}
export type PageSource = { kind: 'raw'; path: string; ranges: RawRange[] } | { kind: 'elf'; path: string };
export interface PageCheck {
  dump: string;
  format: string;
  maxPfn: number;
  dumped: number;
  checked: number;
  mismatches: number;
  firstMismatches: number[];
  outsideSource: number;
  readErrors: number;
  firstReadErrors: string[];
}

/**
 * Read every page of each kdump file with libkdumpfile and compare it with the source image
 * (test/dump/pagecheck.py): one Python process for all files.
 */
export function pageCheck(jobs: { dump: string; source: PageSource }[]): PageCheck[] {
  const r = spawnSync(PY, [path.join(ROOT, 'test/dump/pagecheck.py')], { input: JSON.stringify(jobs), encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`pagecheck.py exited ${r.status}: ${r.stderr.slice(-3000)}`);
  return JSON.parse(r.stdout) as PageCheck[];
}

/** makedumpfile's page report (`--message-level 31`) → numbers by label. */
export function mdReport(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [, k, v] of text.matchAll(/^\s*([A-Za-z][A-Za-z -]+?)\s*: (0x[0-9a-f]+)\s*$/gm)) out[k!.trim()] = Number(v);
  return out;
}

export function mode(file: string): number {
  return fs.statSync(file).mode & 0o777;
}

/** The `--json` object's documented shape (docs/cli.md). */
export const EXCLUDED_KEYS = ['cache', 'free', 'offline', 'privateCache', 'user', 'zero'];
