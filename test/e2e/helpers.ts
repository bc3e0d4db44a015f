/**
 * Helpers for the crash daemon's end-to-end tests on real QEMU guests (test/guest harness): a service
 * guest with a second QMP socket for Vicover, the plugin configuration, an outside HTTP client that
 * measures downtime, an independent host-memory sampler, and the dump oracles (makedumpfile,
 * libkdumpfile under /usr/bin/python3).
 */
import { execFile, spawnSync } from 'node:child_process';
import { promises as fsp, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
// @ts-ignore — plain ESM harness without type declarations
import { buildGuest, startGuest } from '../guest/guest.mjs';
import { missingCommands } from '../tools/commands.mjs';
import { allocatedBytes } from '../tools/service.mjs';

export { ClientPoller, httpGet, until } from '../tools/service.mjs';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const MiB = 1024 * 1024;
export const PANIC = 'Kernel panic - not syncing: sysrq triggered crash';
const execFileP = promisify(execFile);

export function missingTools(extra: string[] = []): string[] {
  return missingCommands(['qemu-system-x86_64', 'qemu-img', 'fallocate', 'busybox', 'mke2fs', 'apt-get', ...extra]);
}

export interface ServiceGuest {
  guest: any;
  /** Vicover's own QMP socket (QMP serves one client per socket; the harness holds the other). */
  vmQmp: string;
  memMiB: number;
  url: string;
}

/** A guest running busybox httpd behind hostfwd, with a stamp on the shared disk. */
export async function startServiceGuest(o: { name: string; dir: string; memMiB: number; load?: string; warm?: string; smp?: number }): Promise<ServiceGuest> {
  const build = await buildGuest();
  const vmQmp = path.join(o.dir, 'vicover.qmp');
  const guest = await startGuest({
    build,
    name: o.name,
    memMiB: o.memMiB,
    dir: o.dir,
    load: o.load,
    warm: o.warm,
    smp: o.smp,
    httpd: true,
    stamp: true,
    extraArgs: ['-qmp', `unix:${vmQmp},server=on,wait=off`],
  });
  return { guest, vmQmp, memMiB: o.memMiB, url: `http://127.0.0.1:${guest.hostfwdPort}/cgi-bin/value` };
}

/** The qemu plugin's options for one service guest. */
export function qemuOptions(g: ServiceGuest, o: { name: string; stateDir: string; ramDir: string; bootMiB?: number; ioLimitMiBps?: number; diesWithDaemon?: boolean }) {
  return {
    stateDir: o.stateDir,
    reconnectMs: 100,
    recoveryDiesWithDaemon: o.diesWithDaemon ?? true,
    vms: [
      {
        name: o.name,
        qmp: g.vmQmp,
        ramFile: g.guest.ramPath,
        memoryMiB: g.memMiB,
        recovery: {
          ramDir: o.ramDir,
          bootMiB: o.bootMiB ?? 256,
          // The recovery VM serves what the crashed one wrote: no new stamp, no memory hog.
          append: { remove: ['vicover.stamp', 'vicover.load'] },
          ...(o.ioLimitMiBps ? { ioLimitMiBps: o.ioLimitMiBps } : {}),
        },
      },
    ],
  };
}

/**
 * Samples host memory held for a crash, independently of Vicover: allocated blocks of the crashed
 * VM's RAM file plus every file in the recovery VMs' RAM directory.
 */
export class BudgetSampler {
  peak = 0;
  samples = 0;
  withRecovery = 0;
  readonly series: { t: number; crashed: number; recovery: number }[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly crashedFile: string,
    private readonly recoveryDir: string,
    private readonly everyMs = 100,
  ) {}

  sample(): void {
    const crashed = allocatedBytes(this.crashedFile);
    let recovery = 0;
    let files: string[] = [];
    try {
      files = readdirSync(this.recoveryDir);
    } catch {
      /* not there yet */
    }
    for (const f of files) recovery += allocatedBytes(path.join(this.recoveryDir, f));
    const total = crashed + recovery;
    this.samples++;
    if (recovery > 0) this.withRecovery++;
    this.series.push({ t: Date.now(), crashed, recovery });
    if (total > this.peak) this.peak = total;
  }

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.sample();
  }
}

/** `makedumpfile --dump-dmesg DUMP OUT` → the kernel log text. */
export async function dumpDmesg(dump: string, out: string): Promise<string> {
  await fsp.rm(out, { force: true });
  await execFileP('makedumpfile', ['--dump-dmesg', dump, out], { timeout: 120_000 });
  return fsp.readFile(out, 'utf8');
}

const PAGE_CHECK = fileURLToPath(new URL('../tools/kdump-pagecheck.py', import.meta.url));

export interface PageCheck {
  read: number;
  mismatch: number;
  missing: number;
  firstMismatch: number | null;
  maxPfn: number;
  cpus: number;
  /** cpu0's rip from the dump's NT_PRSTATUS, hex (`0xffffffff8…`). */
  cpu0rip: string | null;
}

/**
 * libkdumpfile (Debian's python3-libkdumpfile, importable only under /usr/bin/python3) reads every
 * page of our dump; each page it can read must equal the same page of the reference RAM copy
 * (flat layout: file offset = physical address).
 */
export function kdumpfilePageCheck(dump: string, refRam: string): PageCheck {
  const r = spawnSync('/usr/bin/python3', [PAGE_CHECK, dump, refRam], { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 600_000 });
  if (r.status !== 0) throw new Error(`libkdumpfile check failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as PageCheck;
}

/** libkdumpfile for the page checks (in CI a missing module fails the run: test/tools/commands.mjs). */
export function haveKdumpfile(): boolean {
  return missingCommands([], { python: ['kdumpfile'] }).length === 0;
}

/** A sparse copy of a RAM file (the reference for page checks); reading holes allocates nothing. */
export async function sparseCopy(src: string, dst: string): Promise<void> {
  await fsp.rm(dst, { force: true });
  await execFileP('cp', ['--sparse=always', src, dst], { timeout: 300_000 });
}
