import type { Step } from '../../core/step.js';
import { blockingLock, readLock } from '../../lib/lock.js';
import { lockTakeStep } from '../lock.js';
import type { InitCtx } from './context.js';

/**
 * init takes the lock as `hbs mount` does, but leaves this machine's own lock for this config as it
 * is: a re-run of a finished setup changes nothing (and the wizard has nothing to confirm).
 */
export const initLockTakeStep: Step<InitCtx> = {
  ...lockTakeStep,
  async check(ctx) {
    const s = ctx.stack;
    const state = await readLock(s.lockPath, await ctx.deps.machineId());
    if (state.state === 'ours' && !blockingLock(state, s.configPath)) return { done: true, detail: `held by this machine since ${state.lock.time}` };
    return lockTakeStep.check(ctx);
  },
};
