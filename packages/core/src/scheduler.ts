/**
 * The I/O scheduler mechanism: every tick it builds an IoState, asks the `scheduleIo` taps (the
 * policy) for shares, and enforces them for real — a token bucket on the dump writer, and the backend's
 * throttle on the recovery VM's disk. The policy decides; this file only measures and enforces.
 */
import { VcvError, isVcvError } from '@vicover/errors';
import type { Backend, VmHandle } from './contracts.js';
import type { Hooks, IoShares, IoState } from './hooks.js';
import type { Logger } from './log.js';
import type { TokenBucket } from './tokenbucket.js';

export interface IoSchedulerOptions {
  session: { id: string; elapsedMs(): number; warn(code: string, message: string, plugin?: string): void };
  hooks: Hooks;
  backend: Backend;
  bucket: TokenBucket;
  deviceBps: number;
  deviceIops: number;
  tickMs: number;
  /** Upper bound of bytes the dump will write (selected pages, uncompressed). */
  bytesTotal: number;
  recoveryVm(): VmHandle | null;
  isHealthy(): boolean;
  dumpActive(): boolean;
  handedOver(): number;
  /** Guest memory to hand over in all (the crashed VM's size). */
  memoryTotal: number;
  onShares(s: IoShares, tMs: number): void;
  onRecoveryIo(readBps: number, writeBps: number, tMs: number): void;
  onDumpIo(writeBps: number, tMs: number): void;
  log: Logger;
}

/** Throttle changes smaller than this fraction are not sent to the backend (QMP round trips). */
const RETHROTTLE_FRACTION = 0.05;
/**
 * The recovery VM's limit changes at most this often. Measured with a real backend: each new limit
 * forgave the throttle's accumulated debt, so a 6 MiB/s limit re-sent every 100 ms let a guest read
 * at 19 MiB/s (docs/io-policies.md). A policy whose share moves every tick would otherwise leak.
 */
const MIN_RETHROTTLE_MS = 1000;

export function validShares(s: unknown, deviceBps: number): s is IoShares {
  if (!s || typeof s !== 'object') return false;
  const { dumpBps, recoveryBps } = s as IoShares;
  const ok = (x: unknown) => typeof x === 'number' && !Number.isNaN(x) && x >= 0;
  return ok(dumpBps) && ok(recoveryBps) && deviceBps > 0;
}

export class IoScheduler {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private lastTaken = 0;
  private lastTickAt = 0;
  private lastStats: { readBytes: number; writeBytes: number; readOps: number; writeOps: number; at: number } | null = null;
  private lastVm: VmHandle | null = null;
  private applied: number | null = null; // recovery bps last sent to the backend (Infinity = unlimited)
  private appliedAt = -Infinity;
  private previous: IoShares;
  private lastRecordedKey = '';
  private lastRecordAt = -Infinity;
  private ticking = false;
  private readonly warned = new Set<string>();

  constructor(private readonly o: IoSchedulerOptions) {
    this.previous = { dumpBps: o.deviceBps, recoveryBps: o.deviceBps, policy: 'none' };
  }

  start(): void {
    this.lastTickAt = performance.now();
    this.lastTaken = this.o.bucket.taken;
    void this.tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.o.bucket.setRate(Infinity);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.o.tickMs);
    this.timer.unref?.();
  }

  private async tick(): Promise<void> {
    if (this.stopped || this.ticking) return;
    this.ticking = true;
    try {
      const now = performance.now();
      const dt = Math.max(1, now - this.lastTickAt) / 1000;
      const taken = this.o.bucket.taken;
      const dumpRate = (taken - this.lastTaken) / dt;
      this.lastTaken = taken;
      this.lastTickAt = now;

      const vm = this.o.recoveryVm();
      let readBps = 0;
      let writeBps = 0;
      let readIops = 0;
      let writeIops = 0;
      if (vm) {
        if (vm !== this.lastVm) {
          this.lastVm = vm;
          this.lastStats = null;
          this.applied = null;
        }
        try {
          const s = await this.o.backend.vmIoStats(vm);
          const at = performance.now();
          if (this.lastStats) {
            const sdt = Math.max(1, at - this.lastStats.at) / 1000;
            readBps = Math.max(0, (s.readBytes - this.lastStats.readBytes) / sdt);
            writeBps = Math.max(0, (s.writeBytes - this.lastStats.writeBytes) / sdt);
            readIops = Math.max(0, (s.readOps - this.lastStats.readOps) / sdt);
            writeIops = Math.max(0, (s.writeOps - this.lastStats.writeOps) / sdt);
          }
          this.lastStats = { ...s, at };
          this.o.onRecoveryIo(Math.round(readBps), Math.round(writeBps), Math.round(this.o.session.elapsedMs()));
        } catch {
          /* the VM may be starting; no stats this tick */
        }
      }
      const dumpActive = this.o.dumpActive();
      if (dumpActive) this.o.onDumpIo(Math.round(dumpRate), Math.round(this.o.session.elapsedMs()));
      const state: IoState = {
        sessionId: this.o.session.id,
        elapsedMs: this.o.session.elapsedMs(),
        tickMs: this.o.tickMs,
        deviceBps: this.o.deviceBps,
        deviceIops: this.o.deviceIops,
        dump: {
          active: dumpActive,
          bytesDone: taken,
          bytesLeft: Math.max(0, this.o.bytesTotal - taken),
          rateBps: dumpRate,
          idle: dumpActive && Number.isFinite(this.previous.dumpBps) && dumpRate < this.previous.dumpBps * 0.5,
        },
        memory: { handedOverBytes: this.o.handedOver(), totalBytes: this.o.memoryTotal },
        recovery: { started: vm !== null, healthy: this.o.isHealthy(), readBps, writeBps, readIops, writeIops },
        previous: this.previous,
      };
      const initial: IoShares = { dumpBps: Infinity, recoveryBps: Infinity, policy: 'none' };
      let shares: IoShares;
      try {
        shares = this.o.hooks.scheduleIo.call(initial, state);
      } catch (e) {
        this.o.session.warn(isVcvError(e) ? e.code : 'VCV_ERR_IO_POLICY', (e as Error).message, isVcvError(e) ? (e.details.plugin as string) : undefined);
        shares = this.previous;
      }
      if (!validShares(shares, this.o.deviceBps)) {
        const err = new VcvError('VCV_ERR_IO_POLICY', `the I/O policy returned unusable shares ${JSON.stringify(shares)}; keeping the previous ones`);
        this.o.session.warn(err.code, err.message);
        shares = this.previous;
      }
      if (shares.warning && !this.warned.has(shares.warning)) {
        this.warned.add(shares.warning);
        this.o.session.warn('VCV_ERR_IO_POLICY', shares.warning, shares.policy);
      }
      this.previous = { ...shares };
      // Nothing gets more than the device: "unlimited" means the device bandwidth (which is what the
      // disk gives anyway — and what makes a configured slower disk real in benchmarks).
      const dev = this.o.deviceBps;
      this.o.bucket.setRate(dumpActive ? Math.min(shares.dumpBps, dev) : Infinity);
      if (vm) await this.applyRecovery(vm, Math.min(shares.recoveryBps, dev));
      const key = `${Math.round(shares.dumpBps)}|${Math.round(shares.recoveryBps)}|${shares.policy ?? ''}`;
      const tMs = Math.round(this.o.session.elapsedMs());
      if (key !== this.lastRecordedKey || tMs - this.lastRecordAt >= 1000) {
        this.o.onShares(shares, tMs);
        this.lastRecordedKey = key;
        this.lastRecordAt = tMs;
      }
    } catch (e) {
      this.o.log.warn({ err: e }, 'I/O scheduler tick failed');
    } finally {
      this.ticking = false;
      this.schedule();
    }
  }

  private async applyRecovery(vm: VmHandle, bps: number): Promise<void> {
    const target = Number.isFinite(bps) ? Math.max(1, Math.round(bps)) : Infinity;
    const prev = this.applied;
    if (prev !== null) {
      if (prev === target) return;
      if (Number.isFinite(prev) && Number.isFinite(target) && Math.abs(prev - target) / prev < RETHROTTLE_FRACTION) return;
      if (performance.now() - this.appliedAt < MIN_RETHROTTLE_MS) return;
    }
    try {
      await this.o.backend.throttleVm(vm, Number.isFinite(target) ? { bps: target } : null);
      this.applied = target;
      this.appliedAt = performance.now();
    } catch (e) {
      this.o.log.debug({ err: e }, 'throttling the recovery VM failed (will retry next tick)');
    }
  }
}
