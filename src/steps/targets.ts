import type { Step } from '../core/plan.js';
import type { InitContext } from '../init/context.js';
import { boxMountStep } from './box-mount.js';
import { fsMountStep } from './fs-mount.js';

/**
 * Before anything changes: both mount points must be free (missing, empty, or already holding
 * exactly what hbs would mount there), so a wrong answer stops the run with nothing changed.
 */
export const targetsStep: Step<InitContext> = {
  id: 'targets',
  title: 'Mount points are free',
  async check(ctx) {
    // Both checks are read-only and throw on a conflict.
    await boxMountStep.check(ctx);
    await fsMountStep.check(ctx);
    return { done: true, detail: `${ctx.opts.boxMount}, ${ctx.opts.mountPoint}` };
  },
  plan() {
    return Promise.resolve([]);
  },
};
