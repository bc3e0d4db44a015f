// Benchmark-only plugin: ONE emulated disk of `io.bandwidthMiBps` shared by the dump writer and the
// recovery VM (bench:io). It runs after the I/O policy (stage ADJUST) and turns the policy's shares
// into the limits a contended disk of that bandwidth would leave each side, so that at every tick
//
//     dump limit + recovery limit ≤ device bandwidth
//
// (the dump writer's token bucket and the recovery VM's block_set_io_throttle enforce the two limits,
// so the two sides' throughput together cannot exceed the device either). bench/downtime-device.mjs
// only caps each side at the device separately — 2× the device when both are busy.
//
// How the device is split, given what the policy allows each side (its share, capped at the device):
// - only one side active (no recovery VM yet, or the dump finished): that side gets its share.
// - both active and the shares fit (dump + recovery ≤ device): unchanged.
// - both active and the shares overcommit the device: as a fair disk would. The dump writer always
//   wants more (it is a sequential writer with nothing else to wait for); the recovery VM's demand is
//   estimated from its measured rate over the last second: if it used ≥ 80 % of what it was allowed,
//   it wants more; otherwise it gets 1.5× its rate plus 5 % of the device (room to grow) and the
//   dump the rest. Two sides that both want more get half each (max-min fairness), each never above
//   what the policy allows it; a side the policy holds below half leaves the rest to the other.
//
// The recovery VM's limit is revised at most once a second, to the mean of what the split gave it
// over that second; the dump writer gets, at every tick, what that limit leaves (capped by its share).
// Why: QEMU zeroes its throttle bucket at every block_set_io_throttle, forgiving the guest's debt, so
// a limit re-sent every 100 ms does not hold — measured here: a guest reading with O_DIRECT under a
// 6 MiB/s limit re-sent every 100 ms (alternating 5.6 / 6 MiB/s) read at 19 MiB/s, under the same
// limit sent once at 5–5.6 MiB/s. Policies that react to last tick's rate (io-priority favor=dump,
// io-proportional's lending) move the share every tick. (The core itself now sends a new limit at
// most once a second too; this plugin's hold came first, and it also averages the split over it.)
//
// With no policy loaded this plugin alone taps scheduleIo (shares unlimited, policy 'none'): the
// reference of a disk that just splits fairly.
import { STAGE } from '@vicover/core';

const WINDOW_MS = 1000;
/** How often the recovery VM's limit may change. */
const HOLD_MS = 1000;

/** The limits a fair disk of `dev` bytes/s leaves the two sides. */
function splitDevice({ dev, dumpShare, recoveryShare, recoveryDemand }) {
  const pd = Math.min(dumpShare, dev);
  const pr = Math.min(recoveryShare, dev);
  if (pd + pr <= dev) return { dumpBps: pd, recoveryBps: pr };
  const ld = pd; // the dump writer always wants more
  const lr = Math.min(pr, recoveryDemand);
  if (ld + lr <= dev) return { dumpBps: ld, recoveryBps: Math.min(pr, dev - ld) };
  if (lr <= dev / 2) return { dumpBps: dev - lr, recoveryBps: lr };
  if (ld <= dev / 2) return { dumpBps: ld, recoveryBps: Math.min(pr, dev - ld) };
  return { dumpBps: dev / 2, recoveryBps: dev / 2 };
}

export default {
  name: 'bench-shared-device',
  coreVersion: '^0.1.0',
  description: 'one emulated disk shared by the dump writer and the recovery VM (bench:io)',
  apply(core) {
    /** Per session: the recovery VM's measured rate and its limit over the last second. */
    const hist = new Map();
    /** Per session: the recovery VM's held limit, since when, and the split's wishes since then. */
    const held = new Map();
    core.hooks.scheduleIo.tap({ name: 'bench-shared-device', stage: STAGE.ADJUST }, (shares, state) => {
      const dev = state.deviceBps;
      const policy = `${shares.policy ?? 'none'}+shared-device`;
      let h = hist.get(state.sessionId);
      if (!h) hist.set(state.sessionId, (h = []));
      const used = state.recovery.readBps + state.recovery.writeBps;
      if (state.recovery.started) h.push({ t: state.elapsedMs, used, allowed: Math.min(state.previous.recoveryBps, dev) });
      while (h.length && h[0].t < state.elapsedMs - WINDOW_MS) h.shift();
      if (!state.dump.active || !state.recovery.started) {
        return { ...shares, dumpBps: Math.min(shares.dumpBps, dev), recoveryBps: Math.min(shares.recoveryBps, dev), policy };
      }
      const mean = (k) => h.reduce((s, x) => s + x[k], 0) / Math.max(1, h.length);
      const usedAvg = mean('used');
      const allowedAvg = mean('allowed');
      const wantsMore = usedAvg >= 0.8 * allowedAvg;
      const recoveryDemand = wantsMore ? Infinity : 1.5 * usedAvg + 0.05 * dev;
      const split = splitDevice({ dev, dumpShare: shares.dumpBps, recoveryShare: shares.recoveryBps, recoveryDemand });
      const contended = Math.min(shares.dumpBps, dev) + Math.min(shares.recoveryBps, dev) > dev;
      // Hold the recovery VM's limit for a second; the dump gets what it leaves.
      let k = held.get(state.sessionId);
      if (!k) held.set(state.sessionId, (k = { limit: split.recoveryBps, since: state.elapsedMs, sum: 0, n: 0 }));
      k.sum += split.recoveryBps;
      k.n++;
      if (state.elapsedMs - k.since >= HOLD_MS) {
        k.limit = k.sum / k.n;
        k.since = state.elapsedMs;
        k.sum = 0;
        k.n = 0;
      }
      const recoveryBps = k.limit;
      const dumpBps = Math.max(0, Math.min(shares.dumpBps, dev, dev - recoveryBps));
      return {
        ...shares,
        dumpBps,
        recoveryBps,
        policy,
        reason: contended ? `${shares.reason ?? 'policy'}; shared device: recovery ${wantsMore ? 'wants more' : `uses ${(usedAvg / 1048576).toFixed(1)} MiB/s`}` : shares.reason,
      };
    });
  },
};
