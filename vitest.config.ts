import { configDefaults, defineConfig } from 'vitest/config';

// The real-QEMU I/O-rate test measures disk rates against ±25 % shares in 1.5 s windows: it runs in a
// group of its own, after everything else, so no other file boots a TCG guest on the same two cores
// meanwhile (a dip to 5.4 of 8 MiB/s in one window was seen while qemu-sigkill booted its guests).
const RATES = 'test/e2e/qemu-io.test.ts';

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 600_000,
    pool: 'forks',
    // Real guests, real QEMU: two cores in CI, so keep file parallelism low.
    fileParallelism: true,
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['packages/*/test/**/*.test.ts', 'plugins/*/test/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, RATES],
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: { name: 'io-rates', include: [RATES], sequence: { groupOrder: 1 } },
      },
    ],
  },
});
