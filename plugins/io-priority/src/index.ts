/**
 * I/O policy `io-priority`: one side (the recovery VM by default) gets what it asks for — it is not
 * throttled — and the other side gets the rest of the device bandwidth: the device bandwidth minus
 * what the favoured side used in the last tick (plus headroom), never below a floor.
 */
import type { IoShares, IoState, Vicover, VicoverPlugin } from '@vicover/core';

export interface PriorityOptions {
  favor: 'recovery' | 'dump';
  headroom: number;
  minOtherFraction: number;
}

export const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    favor: { enum: ['recovery', 'dump'], default: 'recovery', description: 'the side that gets what it asks for' },
    headroom: { type: 'number', minimum: 0, maximum: 1, default: 0.1, description: "fraction added to the favoured side's measured rate before the rest is given away" },
    minOtherFraction: { type: 'number', minimum: 0, maximum: 1, default: 0.05, description: 'the other side never gets less than this fraction of the device bandwidth' },
  },
} as const;

export function priorityShares(state: IoState, o: PriorityOptions): IoShares {
  const dev = state.deviceBps;
  const floor = o.minOtherFraction * dev;
  if (o.favor === 'recovery') {
    if (!state.recovery.started) return { dumpBps: Infinity, recoveryBps: Infinity, policy: 'priority:recovery', reason: 'no recovery VM yet: the dump gets the device' };
    const used = state.recovery.readBps + state.recovery.writeBps;
    const dumpBps = Math.max(floor, dev - used * (1 + o.headroom));
    return { dumpBps, recoveryBps: Infinity, policy: 'priority:recovery', reason: `recovery used ${mib(used)} MiB/s; the dump gets the rest` };
  }
  if (!state.dump.active) return { dumpBps: Infinity, recoveryBps: Infinity, policy: 'priority:dump', reason: 'dump finished: the recovery VM gets the device' };
  const used = state.dump.rateBps;
  const recoveryBps = Math.max(floor, dev - used * (1 + o.headroom));
  return { dumpBps: Infinity, recoveryBps, policy: 'priority:dump', reason: `dump used ${mib(used)} MiB/s; the recovery VM gets the rest` };
}

function mib(bps: number): string {
  return (bps / 1048576).toFixed(1);
}

const plugin: VicoverPlugin<PriorityOptions> = {
  name: 'io-priority',
  description: 'I/O policy: one side gets what it asks for, the other the rest',
  coreVersion: '^0.1.0',
  optionsSchema,
  apply(core: Vicover, options: PriorityOptions) {
    core.hooks.scheduleIo.tap('io-priority', (_shares, state) => priorityShares(state, options));
  },
};

export default plugin;
