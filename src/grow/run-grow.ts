import { EXIT, HbsError } from '../core/errors.js';
import { execute, type Step } from '../core/plan.js';
import { CommandError } from '../core/runner.js';
import type { GrowContext } from './context.js';
import { OnlineResizeRefused } from './steps.js';

export const RESUME_HINT = 're-run the same `hbs grow` command: it sees how far the last run got and finishes the job';

/** Runs (or, with a dry-run runner, prints) grow steps in order; each first checks whether it is already done. */
export async function runGrowSteps(ctx: GrowContext, steps: readonly Step<GrowContext>[]): Promise<void> {
  for (const step of steps) {
    ctx.reporter.stepStart(step.title);
    try {
      const c = await step.check(ctx);
      if (c.done) {
        ctx.reporter.stepSkipped(step.title, c.detail);
        continue;
      }
      await execute(await step.plan(ctx), {
        runner: ctx.runner,
        print: (l) => ctx.reporter.line(l),
        verbose: ctx.verbose,
        now: () => ctx.deps.now(),
      });
      ctx.reporter.stepDone(step.title, ctx.runner.dryRun ? 'would change (not done: dry-run)' : c.detail);
    } catch (err) {
      ctx.reporter.stepFailed(step.title);
      throw wrap(step.title, err);
    }
  }
}

function wrap(title: string, err: unknown): unknown {
  if (err instanceof OnlineResizeRefused) return err;
  if (err instanceof CommandError) return new HbsError(`${title}: ${err.message}`, EXIT.failed, RESUME_HINT, err.tail());
  if (err instanceof HbsError) return err;
  if (err instanceof Error) return new HbsError(`${title}: ${err.message}`, EXIT.failed, RESUME_HINT);
  return err;
}
