import type { Step } from '../core/plan.js';
import { runStepList, type StepOutcome } from '../core/run-steps.js';
import { readConfig } from '../lib/config.js';
import { boxGuardStep, boxMountStep } from '../steps/box-mount.js';
import { boxSpaceStep } from '../steps/box-space.js';
import { configStep } from '../steps/config.js';
import { crypttabStep } from '../steps/crypttab.js';
import { fsMountStep } from '../steps/fs-mount.js';
import { fstabStep } from '../steps/fstab.js';
import { hostKeyStep } from '../steps/host-key.js';
import { imageStep } from '../steps/image.js';
import { keyUploadStep } from '../steps/key-upload.js';
import { luksFormatStep, luksOpenStep } from '../steps/luks.js';
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

/**
 * The steps for these options: with --encrypt, LUKS format and open come between the image and
 * mkfs; with --luks-unattended the crypttab line comes before the fstab lines that rely on it.
 */
export function initStepsFor(o: { encrypt?: { unattendedKeyFile: string | null } }): readonly Step<InitContext>[] {
  if (!o.encrypt) return INIT_STEPS;
  const at = INIT_STEPS.indexOf(mkfsStep);
  const steps = [...INIT_STEPS.slice(0, at), luksFormatStep, luksOpenStep, ...INIT_STEPS.slice(at)];
  if (o.encrypt.unattendedKeyFile) steps.splice(steps.indexOf(fstabStep), 0, crypttabStep);
  return steps;
}

export type { StepOutcome } from '../core/run-steps.js';

const HINT = 're-run `hbs init` with the same answers: finished steps are skipped';

/** Runs (or, with a dry-run runner, prints) every init step in order. */
export async function runSteps(ctx: InitContext, steps: readonly Step<InitContext>[] = initStepsFor(ctx.opts)): Promise<StepOutcome[]> {
  ctx.state.existingConfig ??= await readConfig(ctx.opts.config);
  return runStepList(ctx, steps, {
    runner: ctx.runner,
    reporter: ctx.reporter,
    verbose: ctx.opts.verbose,
    now: () => ctx.deps.now(),
    hint: HINT,
    onSimulated: (id) => ctx.state.simulated.add(id),
  });
}
