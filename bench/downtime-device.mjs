// Benchmark-only plugin: an emulated disk of `io.bandwidthMiBps`. It runs after the I/O policy
// (stage ADJUST) and caps both shares at the device bandwidth, so "unlimited" (Infinity) from the
// policy — e.g. "no recovery VM yet: the dump gets the device" — means the device's bandwidth, not
// the real disk's. With the recovery VM's standing limit (qemu `recovery.ioLimitMiBps`, applied with
// block_set_io_throttle) this gives every mode the same slow disk.
import { STAGE } from '@vicover/core';

export default {
  name: 'bench-device',
  coreVersion: '^0.1.0',
  description: 'caps the I/O shares at the configured device bandwidth (benchmark disk emulation)',
  apply(core) {
    core.hooks.scheduleIo.tap({ name: 'bench-device', stage: STAGE.ADJUST }, (shares, state) => ({
      ...shares,
      dumpBps: Math.min(shares.dumpBps, state.deviceBps),
      recoveryBps: Math.min(shares.recoveryBps, state.deviceBps),
      policy: `${shares.policy ?? 'none'}+device`,
    }));
  },
};
