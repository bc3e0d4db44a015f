/**
 * I/O policy `io-proportional`: the device bandwidth is split by fixed weights; work-conserving — a
 * side that used less than its share in the last tick gives the unused part to the other side (its
 * own limit stays at its share, so it can take the share back at the next tick).
 */
import type { IoShares, IoState, Vicover, VicoverPlugin } from '@vicover/core';

export interface ProportionalOptions {
  dumpWeight: number;
  recoveryWeight: number;
  workConserving: boolean;
  /** A side using less than this fraction of its share counts as not using it. */
  idleFraction: number;
}

export const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    dumpWeight: { type: 'number', exclusiveMinimum: 0, default: 1, description: "the dump writer's weight" },
    recoveryWeight: { type: 'number', exclusiveMinimum: 0, default: 1, description: "the recovery VM's weight" },
    workConserving: { type: 'boolean', default: true, description: 'give a share the owner does not use to the other side' },
    idleFraction: { type: 'number', minimum: 0, maximum: 1, default: 0.9, description: 'a side using less than this fraction of its share leaves the rest to the other' },
  },
} as const;

export function proportionalShares(state: IoState, o: ProportionalOptions): IoShares {
  const dev = state.deviceBps;
  const w = o.dumpWeight + o.recoveryWeight;
  const dumpShare = (dev * o.dumpWeight) / w;
  const recShare = (dev * o.recoveryWeight) / w;
  const policy = `proportional:${o.dumpWeight}:${o.recoveryWeight}`;
  if (!o.workConserving) return { dumpBps: dumpShare, recoveryBps: recShare, policy, reason: 'fixed split' };
  if (!state.recovery.started) return { dumpBps: Infinity, recoveryBps: recShare, policy, reason: 'no recovery VM yet: the dump gets the device' };
  if (!state.dump.active) return { dumpBps: Infinity, recoveryBps: Infinity, policy, reason: 'dump finished: the recovery VM gets the device' };
  const recUsed = state.recovery.readBps + state.recovery.writeBps;
  const dumpUsed = state.dump.rateBps;
  let dumpBps = dumpShare;
  let recoveryBps = recShare;
  const reasons: string[] = [];
  if (recUsed < recShare * o.idleFraction) {
    dumpBps = Math.max(dumpShare, dev - recUsed);
    reasons.push('recovery VM below its share: the dump takes the rest');
  }
  if (dumpUsed < dumpShare * o.idleFraction && !state.dump.idle) {
    // The dump writer is limited by something else (CPU, compression): lend its unused share.
    recoveryBps = Math.max(recShare, dev - dumpUsed);
    reasons.push('dump below its share: the recovery VM takes the rest');
  }
  return { dumpBps, recoveryBps, policy, reason: reasons.join('; ') || 'both sides use their shares' };
}

const plugin: VicoverPlugin<ProportionalOptions> = {
  name: 'io-proportional',
  description: 'I/O policy: fixed weights, work-conserving',
  coreVersion: '^0.1.0',
  optionsSchema,
  apply(core: Vicover, options: ProportionalOptions) {
    core.hooks.scheduleIo.tap('io-proportional', (_shares, state) => proportionalShares(state, options));
  },
};

export default plugin;
