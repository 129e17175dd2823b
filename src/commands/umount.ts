import { downSteps } from '../steps/stack.js';
import { DRY_RUN_DONE, DRY_RUN_INTRO, executor, loadStack, machine, requireReady, stepCtx, type CommandIo, type CommonFlags } from './shared.js';

export interface UmountFlags extends CommonFlags {
  /** A busy filesystem is detached lazily instead of refused. */
  force?: boolean;
}

const HINT = '`hbs status` shows each layer; re-running `hbs umount` is safe';

/** Takes the stack down top to bottom: sync, unmount, close, detach, release the lock, unmount the box. */
export async function umountCommand(flags: UmountFlags, io: CommandIo): Promise<void> {
  const { stack } = await loadStack(flags.config);
  await requireReady('umount', Boolean(stack.crypt), io);
  const m = machine(io, Boolean(flags.verbose));
  const ctx = stepCtx(stack, io, m);
  if (flags.dryRun) io.reporter.info(DRY_RUN_INTRO);
  await executor(io, m.runner, flags, HINT, m.deps).run(ctx, downSteps(stack, { force: flags.force }));
  if (flags.dryRun) io.reporter.info(DRY_RUN_DONE);
  else if (ctx.found.lazy) io.reporter.warn(`keeping the box mounted at ${stack.boxMount}: the lazily detached filesystem still uses it`);
}
