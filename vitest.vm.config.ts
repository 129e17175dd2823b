import { defineConfig } from 'vitest/config';

// `npm run test:vm`: tests that boot a throwaway QEMU VM (test/vm/run-in-vm), for what this
// machine's kernel lacks (device-mapper). Named *.vmtest.ts so `npm test` does not pick them up.
export default defineConfig({
  test: {
    include: ['test/vm/**/*.vmtest.ts'],
    // Each VM gets one CPU (software emulation): two at a time on a 2-core machine roughly halves
    // the suite (much of it is waiting: boots, a minute idle), without starving either VM.
    fileParallelism: true,
    maxWorkers: 2,
    testTimeout: 300_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
