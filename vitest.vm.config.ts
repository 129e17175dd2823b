import { defineConfig } from 'vitest/config';

// `npm run test:vm`: tests that boot a throwaway QEMU VM (test/vm/run-in-vm), for what this
// machine's kernel lacks (device-mapper). Named *.vmtest.ts so `npm test` does not pick them up.
export default defineConfig({
  test: {
    include: ['test/vm/**/*.vmtest.ts'],
    // Software emulation on 2 cores: one VM at a time.
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
