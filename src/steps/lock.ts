import { EXIT, HbsError } from '../core/errors.js';
import type { Check, Step } from '../core/step.js';
import { inspectBox } from '../lib/inspect.js';
import { blockingLock, describeLock, lockText, readLock, type Lock } from '../lib/lock.js';
import type { StepCtx } from './context.js';

/** Another machine holds the lock; the command may ask the person and run again with stealLock. */
export class LockHeldError extends HbsError {
  constructor(readonly holder: string) {
    super(
      `the image is in use by another machine: ${holder}; using it from here as well would destroy the filesystem`,
      EXIT.failed,
      'unmount it there (`hbs umount`); if that machine is gone for good, re-run with --steal-lock',
    );
  }
}

const afterBox: Pick<Step<StepCtx>, 'after' | 'expect'> = {
  after: ['box-mount'],
  expect: () => Promise.resolve<Check>({ done: true, detail: 'checked once the box is mounted, before anything is written on it' }),
};

/**
 * Before anything is written to the image or its filesystem: no other machine (and no other config
 * of this one) holds the lock. A lock the person chose to take over is named here.
 */
export const lockCheckStep: Step<StepCtx> = {
  id: 'lock-check',
  title: 'Nobody else uses the image',
  ...afterBox,
  async check(ctx) {
    const s = ctx.stack;
    const state = await readLock(s.lockPath, await ctx.deps.machineId());
    if (state.state === 'unreadable') throw new HbsError(`cannot read the lock ${s.lockPath}: ${state.detail}`, EXIT.failed, 'remove it by hand only if no other machine mounts this image');
    const blocking = blockingLock(state, s.configPath);
    if (blocking) {
      const holder = describeLock(blocking);
      if (!ctx.stealLock) throw new LockHeldError(holder);
      ctx.found.takeover = holder;
      ctx.reporter.warn(`taking over the lock held by ${holder}`);
      return { done: true, detail: `held by ${holder}: taken over, as you confirmed` };
    }
    return { done: true, detail: state.state === 'ours' ? 'this machine holds the lock' : 'no machine holds the lock' };
  },
  plan: () => Promise.resolve([]),
};

/** This machine's lock next to the image: created only where there is none (O_EXCL), replaced when taken over; ours stays as it is. */
export const lockTakeStep: Step<StepCtx> = {
  id: 'lock-take',
  title: 'Take the lock',
  after: ['box-mount'],
  async check(ctx) {
    const s = ctx.stack;
    const state = await readLock(s.lockPath, await ctx.deps.machineId());
    if (state.state === 'ours' && !blockingLock(state, s.configPath)) return { done: true, detail: `held by this machine since ${state.lock.time}` };
    return { done: false, detail: s.lockPath };
  },
  async plan(ctx) {
    const s = ctx.stack;
    const state = await readLock(s.lockPath, await ctx.deps.machineId());
    const lock: Lock = { hostname: ctx.deps.hostname(), machineId: await ctx.deps.machineId(), pid: ctx.deps.pid, time: ctx.deps.now().toISOString(), config: s.configPath };
    return [{ kind: 'write', path: s.lockPath, content: lockText(lock), mode: 0o600, how: state.state === 'free' ? 'create' : 'replace', what: "this machine's lock", show: true }];
  },
};

/** Gives the lock back (only this machine's, for this config), before the box goes. */
export const lockReleaseStep: Step<StepCtx> = {
  id: 'lock-release',
  title: 'Release the lock',
  async check(ctx) {
    const s = ctx.stack;
    if (ctx.found.lazy) return { done: true, detail: 'kept: the lazily detached filesystem is still in use' };
    if ((await inspectBox(ctx.probe, s)).state !== 'up') return { done: true, detail: 'the box is not mounted; nothing to release' };
    const state = await readLock(s.lockPath, await ctx.deps.machineId());
    if (state.state === 'ours' && !blockingLock(state, s.configPath)) return { done: false, detail: `${s.lockPath} removed` };
    return { done: true, detail: state.state === 'free' ? 'no lock' : 'not held by this machine (for this config): left as it is' };
  },
  plan: (ctx) => Promise.resolve([{ kind: 'remove', path: ctx.stack.lockPath, what: "this machine's lock" }]),
};
