import { EXIT, HbsError } from '../core/errors.js';
import { execute, type Step } from '../core/plan.js';
import { CommandError } from '../core/runner.js';
import { readConfig } from '../lib/config.js';
import { boxGuardStep, boxMountStep } from '../steps/box-mount.js';
import { boxSpaceStep } from '../steps/box-space.js';
import { configStep } from '../steps/config.js';
import { fsMountStep } from '../steps/fs-mount.js';
import { fstabStep } from '../steps/fstab.js';
import { hostKeyStep } from '../steps/host-key.js';
import { imageStep } from '../steps/image.js';
import { keyUploadStep } from '../steps/key-upload.js';
import { mkfsStep } from '../steps/mkfs.js';
import { sshKeyStep } from '../steps/ssh-key.js';
import { targetsStep } from '../steps/targets.js';
import type { InitContext } from './context.js';

/**
 * The order matters: nothing is written under the box mount before the guard has seen the box
 * mounted there, and the config is written right after mkfs so an interrupted run can resume.
 */
export const INIT_STEPS: readonly Step<InitContext>[] = [
  targetsStep,
  hostKeyStep,
  sshKeyStep,
  keyUploadStep,
  boxMountStep,
  boxGuardStep,
  boxSpaceStep,
  imageStep,
  mkfsStep,
  configStep,
  fsMountStep,
  fstabStep,
];

export interface StepOutcome {
  id: string;
  title: string;
  status: 'done' | 'already' | 'planned';
  detail?: string;
}

const HINT = 're-run `hbs init` with the same answers: finished steps are skipped';

/** Runs (or, with a dry-run runner, prints) every init step in order. */
export async function runSteps(ctx: InitContext, steps: readonly Step<InitContext>[] = INIT_STEPS): Promise<StepOutcome[]> {
  ctx.state.existingConfig ??= await readConfig(ctx.opts.config);
  const outcomes: StepOutcome[] = [];
  for (const step of steps) {
    ctx.reporter.stepStart(step.title);
    try {
      const c = await step.check(ctx);
      if (c.done) {
        ctx.reporter.stepSkipped(step.title, c.detail);
        outcomes.push({ id: step.id, title: step.title, status: 'already', detail: c.detail });
        continue;
      }
      const actions = await step.plan(ctx);
      await execute(actions, {
        runner: ctx.runner,
        print: (l) => ctx.reporter.line(l),
        verbose: ctx.opts.verbose,
        now: () => ctx.deps.now(),
      });
      if (ctx.runner.dryRun) ctx.state.simulated.add(step.id);
      const status = ctx.runner.dryRun ? 'planned' : 'done';
      ctx.reporter.stepDone(step.title, ctx.runner.dryRun ? 'would change (not done: dry-run)' : c.detail);
      outcomes.push({ id: step.id, title: step.title, status, detail: c.detail });
    } catch (err) {
      ctx.reporter.stepFailed(step.title);
      throw wrapStepError(step.title, err);
    }
  }
  return outcomes;
}

function wrapStepError(title: string, err: unknown): unknown {
  if (err instanceof CommandError) {
    return new HbsError(`${title}: ${err.message}`, EXIT.failed, HINT, err.tail());
  }
  if (err instanceof HbsError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.message === 'string') return new HbsError(`${title}: ${e.message}`, EXIT.failed, HINT);
  return err;
}
