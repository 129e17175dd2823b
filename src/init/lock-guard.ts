import { LockHeldError } from '../lifecycle/errors.js';
import { blockingLock, describeLock, readLock, type ImageLocation, type LockState } from '../lifecycle/lock.js';
import type { InitContext } from './context.js';

/** Where init's image (and so its lock) lives. */
export function lockWhere(ctx: InitContext): ImageLocation {
  return { boxMount: ctx.opts.boxMount, image: { name: ctx.opts.image } };
}

/**
 * Reads the lock next to the image. Another machine's lock (or this machine's through another
 * config) stops init with a LockHeldError, unless the person confirmed taking it over (--steal-lock,
 * the old server of a reinstall): then the holder is returned, to be named when the lock is written.
 */
export async function guardLock(ctx: InitContext): Promise<{ lock: LockState; takenOver?: string }> {
  const lock = await readLock(lockWhere(ctx), await ctx.deps.machineId());
  const blocking = blockingLock(lock, ctx.opts.config);
  if (!blocking) return { lock };
  if (!ctx.opts.stealLock) throw new LockHeldError(describeLock(blocking));
  return { lock, takenOver: describeLock(blocking) };
}
