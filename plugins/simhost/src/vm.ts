/**
 * A simulated recovery VM: its boot is a modelled demand on the host — time, reads and writes on the
 * shared (modelled) disk under the VM's throttle, and guest memory touched — and it reports on a
 * serial console (`VICOVER-READY …` when its service answers, like the real test guests) and, when
 * asked, on a local HTTP port (503 while booting, 200 once ready) for `http` health checks.
 *
 * The boot runs in `steps`; each step needs its share of the memory touched — it waits while the VM
 * has less memory than the boot has touched so far (it stalls until the recovery strategy grows it) —
 * then its share of CPU time (a timer), then its share of the reads and writes through the disk (under
 * the VM's throttle, shared with the dump writer). With the disk to itself the boot takes
 * `bootSeconds` plus its I/O at the disk's bandwidth; every byte the dump takes from the disk while the
 * VM waits for its reads makes the boot longer.
 */
import * as http from 'node:http';
import type { IoStats } from '@vicover/core';
import type { BootModel } from './calibration.js';
import type { ModelledDisk } from './disk.js';

const MiB = 1024 * 1024;

export type VmPhase = 'booting' | 'ready' | 'stopped';

export interface SimVmStatus {
  readonly name: string;
  readonly phase: VmPhase;
  /** 0–1. */
  readonly bootProgress: number;
  readonly memoryBytes: number;
  readonly touchedBytes: number;
  /** Seconds the boot waited for memory so far. */
  readonly stalledSeconds: number;
  readonly startedAt: number;
  readonly readyAt: number | null;
}

export class SimRecoveryVm {
  phase: VmPhase = 'booting';
  memoryBytes: number;
  touchedBytes = 0;
  bootProgress = 0;
  stalledMs = 0;
  readonly startedAt = performance.now();
  readyAt: number | null = null;
  private readonly lines: string[] = [];
  private readonly watchers = new Set<(line: string) => void>();
  private memoryWaiter: (() => void) | null = null;
  private server: http.Server | null = null;
  private port = 0;
  readonly stream: string;

  constructor(
    readonly id: string,
    readonly name: string,
    memoryBytes: number,
    readonly maxMemoryBytes: number,
    private readonly disk: ModelledDisk,
    private readonly boot: BootModel,
    private readonly info: { vm: string; bootCount: number },
  ) {
    this.memoryBytes = Math.min(memoryBytes, maxMemoryBytes);
    this.stream = `vm:${id}`;
  }

  /** Start the HTTP endpoint (before the boot, like QEMU's hostfwd: connections fail until ready). */
  async listen(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const ok = this.phase === 'ready';
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain', connection: 'close' });
      res.end(ok ? `SIMULATED service ${this.info.vm} (recovery VM ${this.name}) boot=${this.info.bootCount}\n` : 'booting (SIMULATED)\n');
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as { port: number }).port;
  }

  get endpoints(): Record<string, string> {
    return this.port ? { 'tcp/80': `127.0.0.1:${this.port}` } : {};
  }

  private say(line: string): void {
    const t = ((performance.now() - this.startedAt) / 1000).toFixed(6).padStart(12);
    const l = `[${t}] ${line}`;
    this.lines.push(l);
    if (this.lines.length > 1000) this.lines.shift();
    for (const w of this.watchers) w(l);
  }

  /** Follow the console from its first line. */
  watch(onLine: (line: string) => void): () => void {
    for (const l of this.lines) onLine(l);
    this.watchers.add(onLine);
    return () => this.watchers.delete(onLine);
  }

  resize(bytes: number): void {
    this.memoryBytes = Math.max(this.touchedBytes, Math.min(this.maxMemoryBytes, bytes));
    const w = this.memoryWaiter;
    this.memoryWaiter = null;
    w?.();
  }

  /** Run the boot (resolves when ready or stopped). */
  async run(): Promise<void> {
    const b = this.boot;
    const n = Math.max(1, b.steps);
    const milestones = new Map<number, string>([
      [0, `SeaBIOS (SIMULATED recovery VM ${this.name} of ${this.info.vm})`],
      [Math.floor(n * 0.1), 'Linux version 6.1.0-simhost-amd64 (SIMULATED)'],
      [Math.floor(n * 0.3), 'EXT4-fs (vda): recovery complete'],
      [Math.floor(n * 0.35), 'EXT4-fs (vda): mounted filesystem with ordered data mode'],
      [Math.floor(n * 0.5), `simhost: warming up the service (reading ${b.readMiB} MiB)`],
    ]);
    for (let i = 0; i < n; i++) {
      if (this.stopped) return;
      const m = milestones.get(i);
      if (m) this.say(m);
      const needTouched = Math.round((b.touchedMiB * MiB * (i + 1)) / n);
      if (this.memoryBytes < needTouched) {
        const t0 = performance.now();
        if (this.stalledMs === 0) this.say(`simhost: out of memory (${Math.round(this.memoryBytes / MiB)} MiB): waiting for more (SIMULATED)`);
        while (this.memoryBytes < needTouched && !this.stopped) await new Promise<void>((r) => (this.memoryWaiter = r));
        this.stalledMs += performance.now() - t0;
      }
      this.touchedBytes = Math.max(this.touchedBytes, needTouched);
      // CPU time, then the step's reads and writes: a boot waits for its disk (init, mount, warm-up).
      await new Promise((r) => setTimeout(r, (b.bootSeconds * 1000) / n));
      try {
        if (b.readMiB > 0) await this.disk.transfer(this.stream, (b.readMiB * MiB) / n, false);
        if (b.writeMiB > 0) await this.disk.transfer(this.stream, (b.writeMiB * MiB) / n, true);
      } catch {
        return; // stopped: the disk dropped our requests
      }
      this.bootProgress = (i + 1) / n;
    }
    if (this.stopped) return;
    this.phase = 'ready';
    this.readyAt = performance.now();
    this.say(`VICOVER-READY name=${this.info.vm} boot=${this.info.bootCount} simulated=1 uptime=${((this.readyAt - this.startedAt) / 1000).toFixed(2)}`);
  }

  private get stopped(): boolean {
    return this.phase === 'stopped';
  }

  ioStats(): IoStats {
    return this.disk.stats(this.stream);
  }

  status(): SimVmStatus {
    return {
      name: this.name,
      phase: this.phase,
      bootProgress: this.bootProgress,
      memoryBytes: this.memoryBytes,
      touchedBytes: this.touchedBytes,
      stalledSeconds: this.stalledMs / 1000,
      startedAt: this.startedAt,
      readyAt: this.readyAt,
    };
  }

  async stop(): Promise<void> {
    this.phase = 'stopped';
    this.disk.drop(this.stream, `recovery VM ${this.name} stopped`);
    this.memoryWaiter?.();
    this.watchers.clear();
    const s = this.server;
    this.server = null;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }
}
