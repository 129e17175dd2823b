import { EXIT, HbsError } from './errors.js';
import { execute, type Step } from './plan.js';
import { CommandError, type Runner } from './runner.js';
import type { Reporter } from '../ui/reporter.js';

export interface StepOutcome {
  id: string;
  title: string;
  status: 'done' | 'already' | 'planned';
  detail?: string;
}

export interface StepRunOptions {
  runner: Runner;
  reporter: Reporter;
  verbose: boolean;
  now: () => Date;
  /** What to tell the person when a step fails. */
  hint: string;
  /** Errors that go up untouched (the caller handles them). */
  passThrough?: (err: unknown) => boolean;
  /** Called for every step whose changes a dry-run only printed. */
  onSimulated?: (id: string) => void;
}

/**
 * The one loop every command's steps go through: check (already done?), else plan and execute —
 * or, with a dry-run runner, print. A failure names the step, the command and its stderr tail.
 */
export async function runStepList<C>(ctx: C, steps: readonly Step<C>[], o: StepRunOptions): Promise<StepOutcome[]> {
  const outcomes: StepOutcome[] = [];
  for (const step of steps) {
    o.reporter.stepStart(step.title);
    try {
      const c = await step.check(ctx);
      if (c.done) {
        o.reporter.stepSkipped(step.title, c.detail);
        outcomes.push({ id: step.id, title: step.title, status: 'already', detail: c.detail });
        continue;
      }
      await execute(await step.plan(ctx), { runner: o.runner, print: (l) => o.reporter.line(l), verbose: o.verbose, now: o.now });
      if (o.runner.dryRun) o.onSimulated?.(step.id);
      o.reporter.stepDone(step.title, o.runner.dryRun ? 'would change (not done: dry-run)' : c.detail);
      outcomes.push({ id: step.id, title: step.title, status: o.runner.dryRun ? 'planned' : 'done', detail: c.detail });
    } catch (err) {
      o.reporter.stepFailed(step.title);
      throw o.passThrough?.(err) ? err : wrapStepError(step.title, err, o.hint);
    }
  }
  return outcomes;
}

function wrapStepError(title: string, err: unknown, hint: string): unknown {
  if (err instanceof CommandError) return new HbsError(`${title}: ${err.message}`, EXIT.failed, hint, err.tail());
  if (err instanceof HbsError) return err;
  if (err instanceof Error) return new HbsError(`${title}: ${err.message}`, EXIT.failed, hint);
  return err;
}
