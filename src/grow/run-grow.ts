import type { Step } from '../core/plan.js';
import { runStepList } from '../core/run-steps.js';
import type { GrowContext } from './context.js';
import { OnlineResizeRefused } from './steps.js';

export const RESUME_HINT = 're-run the same `hbs grow` command: it sees how far the last run got and finishes the job';

/** Runs (or, with a dry-run runner, prints) grow steps in order; each first checks whether it is already done. */
export async function runGrowSteps(ctx: GrowContext, steps: readonly Step<GrowContext>[]): Promise<void> {
  await runStepList(ctx, steps, {
    runner: ctx.runner,
    reporter: ctx.reporter,
    verbose: ctx.verbose,
    now: () => ctx.deps.now(),
    hint: RESUME_HINT,
    // The caller asks for consent and takes the offline path.
    passThrough: (err) => err instanceof OnlineResizeRefused,
  });
}
