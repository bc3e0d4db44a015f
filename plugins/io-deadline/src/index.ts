/**
 * I/O policy `io-deadline`: meet a target — the dump complete within N seconds of the crash, or the
 * recovery VM healthy within N seconds — and give the rest to the other side. When the target cannot
 * be met (the dump needs more than the device gives, or the recovery deadline passed) the policy says
 * so once, as a warning in the log and the report.
 */
import type { IoShares, IoState, Vicover, VicoverPlugin } from '@vicover/core';

export interface DeadlineOptions {
  target: 'dump' | 'recovery';
  seconds: number;
  /** Safety margin on the rate the dump needs. */
  margin: number;
  /** The non-target side's floor (fraction of the device). */
  minOtherFraction: number;
}

export const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['target', 'seconds'],
  properties: {
    target: { enum: ['dump', 'recovery'], description: "what must finish in time: 'dump' (dump complete) or 'recovery' (recovery VM healthy)" },
    seconds: { type: 'number', exclusiveMinimum: 0, description: 'the deadline, in seconds after the crash' },
    margin: { type: 'number', minimum: 0, maximum: 2, default: 0.1, description: 'fraction added to the rate the dump needs to meet its deadline' },
    minOtherFraction: { type: 'number', minimum: 0, maximum: 1, default: 0.05, description: 'the other side never gets less than this fraction of the device bandwidth' },
  },
} as const;

const MiB = 1048576;

export function deadlineShares(state: IoState, o: DeadlineOptions): IoShares {
  const dev = state.deviceBps;
  const floor = o.minOtherFraction * dev;
  const leftS = o.seconds - state.elapsedMs / 1000;
  const policy = `deadline:${o.target}:${o.seconds}s`;
  if (o.target === 'dump') {
    if (!state.dump.active) return { dumpBps: Infinity, recoveryBps: Infinity, policy, reason: 'dump finished' };
    const tickS = state.tickMs / 1000;
    const need = (state.dump.bytesLeft / Math.max(leftS, tickS)) * (1 + o.margin);
    if (leftS <= 0 || need > dev - floor) {
      const warning =
        leftS <= 0
          ? `dump deadline of ${o.seconds} s missed with ${(state.dump.bytesLeft / MiB).toFixed(0)} MiB still to write`
          : `dump deadline of ${o.seconds} s cannot be met: ${(state.dump.bytesLeft / MiB).toFixed(0)} MiB left in ${leftS.toFixed(1)} s needs ${(need / MiB).toFixed(1)} MiB/s of the device's ${(dev / MiB).toFixed(1)} MiB/s`;
      return { dumpBps: Infinity, recoveryBps: floor, policy, reason: 'deadline at risk: the dump gets everything but the floor', warning };
    }
    return { dumpBps: need, recoveryBps: dev - need, policy, reason: `dump needs ${(need / MiB).toFixed(1)} MiB/s to finish in ${leftS.toFixed(1)} s` };
  }
  if (state.recovery.healthy) return { dumpBps: Infinity, recoveryBps: Infinity, policy, reason: 'recovery VM healthy: no more constraint' };
  if (!state.recovery.started) return { dumpBps: Infinity, recoveryBps: Infinity, policy, reason: 'no recovery VM yet' };
  const used = state.recovery.readBps + state.recovery.writeBps;
  const dumpBps = Math.max(floor, dev - used * (1 + o.margin));
  const shares: IoShares = { dumpBps, recoveryBps: Infinity, policy, reason: `recovery VM must be healthy in ${Math.max(0, leftS).toFixed(1)} s: it gets what it asks` };
  if (leftS <= 0) shares.warning = `recovery deadline of ${o.seconds} s missed: the recovery VM is not healthy yet`;
  return shares;
}

const plugin: VicoverPlugin<DeadlineOptions> = {
  name: 'io-deadline',
  description: 'I/O policy: meet a dump or recovery deadline, the rest to the other side',
  coreVersion: '^0.1.0',
  optionsSchema,
  apply(core: Vicover, options: DeadlineOptions) {
    core.hooks.scheduleIo.tap('io-deadline', (_shares, state) => deadlineShares(state, options));
  },
};

export default plugin;
