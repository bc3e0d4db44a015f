import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'plugins/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // Real guests, real QEMU: two cores in CI, so keep file parallelism low.
    fileParallelism: true,
    maxWorkers: 2,
    pool: 'forks',
  },
});
