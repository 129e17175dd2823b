import { defineConfig } from 'vitest/config';

// `npm run test:vm`: tests that boot a throwaway QEMU VM (test/vm/run-in-vm), for what this
// machine's kernel lacks (device-mapper). Named *.vmtest.ts so `npm test` does not pick them up.
export default defineConfig({
  test: {
    include: ['test/vm/**/*.vmtest.ts'],
    // Each VM gets one CPU (software emulation), and much of a scenario is waiting (boots, a minute
    // idle): three at a time took the suite from ~20 min (one at a time) to ~10 min on 2 cores.
    // HBS_VM_WORKERS overrides it.
    fileParallelism: true,
    maxWorkers: Number(process.env.HBS_VM_WORKERS ?? 3),
    testTimeout: 300_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
