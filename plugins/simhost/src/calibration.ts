/**
 * The recovery VM's boot, as the simulated host models it, and where the numbers come from. Every
 * figure is an option of the plugin (`recovery:`); these are the defaults. docs/simhost.md has the
 * measurements.
 */
export interface BootModel {
  /** Boot to ready when nothing else uses the disk and memory is plentiful (seconds). */
  readonly bootSeconds: number;
  /** Bytes the boot reads from the shared disk (journal replay, service warm-up). */
  readonly readMiB: number;
  /** Bytes it writes (journal, service state). */
  readonly writeMiB: number;
  /** Guest memory the boot touches (the VM stalls while its memory is smaller). */
  readonly touchedMiB: number;
  /** The boot advances in this many steps (each: CPU time, reads, writes, memory). */
  readonly steps: number;
}

/**
 * Defaults, calibrated on the real test guest (Debian 6.1 under QEMU/TCG on this 2-core machine,
 * test/guest; `node bench/scale-calibrate.mjs`): a 2 GiB guest booting on its disk and warming its
 * service up by reading a 64 MiB file, as the recovery VM of `bench:downtime` does.
 * - bootSeconds 11: QEMU spawn → ready line, measured 10.97–11.29 s (guest uptime 6.2–6.9 s); DESIGN.md
 *   §5 says ~12 s for a recovery VM on the same disk, docs/guests.md 8.9–24.8 s for small4.
 * - readMiB 64, writeMiB 0.1: QMP query-blockstats at the ready line (64.2 MiB in 83 reads, 0.1 MiB
 *   in 9 writes: the warm-up file plus the journal replay and the boot stamp).
 * - touchedMiB 208: the RAM file's allocated blocks at the ready line (207–208 MiB; the guest itself
 *   reports MemTotal − MemFree = 112–113 MiB — QEMU also holds firmware, kernel and initrd copies).
 */
export const CALIBRATED_BOOT: BootModel = Object.freeze({
  bootSeconds: 11,
  readMiB: 64,
  writeMiB: 0.1,
  touchedMiB: 208,
  steps: 40,
});

/**
 * Disk bandwidth when neither the plugin nor `io.bandwidthMiBps` sets one: this machine's disk as
 * docs/guests.md measured it (830 MB/s ≈ 790 MiB/s sequential writes).
 */
export const DEFAULT_DISK_MIBPS = 790;
