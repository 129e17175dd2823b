import { basename } from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

// Longest first (measured, see test/vm/README.md), so that no long scenario starts last: a fresh
// clone has no timings cache, and vitest would then order the files by their size. A file not
// listed here goes first (its cost is unknown).
const LONGEST_FIRST = ['grow', 'reboot', 'luks', 'multi', 'smoke'];
class LongestFirst extends BaseSequencer {
  override sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification): number => LONGEST_FIRST.indexOf(basename(f.moduleId, '.vmtest.ts'));
    return Promise.resolve([...files].sort((a, b) => rank(a) - rank(b)));
  }
}

// `npm run test:vm`: tests that boot a throwaway QEMU VM (test/vm/run-in-vm), for what this
// machine's kernel lacks (device-mapper). Named *.vmtest.ts so `npm test` does not pick them up.
export default defineConfig({
  test: {
    include: ['test/vm/**/*.vmtest.ts'],
    // Each VM gets one CPU (software emulation), and some of a scenario is waiting (boots, idle
    // time): three at a time took the suite from ~20 min (one at a time) to ~10 min on 2 cores.
    // HBS_VM_WORKERS overrides it.
    fileParallelism: true,
    maxWorkers: Number(process.env.HBS_VM_WORKERS ?? 3),
    sequence: { sequencer: LongestFirst },
    testTimeout: 300_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
