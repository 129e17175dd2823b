import { inspectStack } from '../lib/inspect.js';
import { keySourceFor } from '../lib/keys.js';
import { EXIT, HbsError } from '../core/errors.js';
import { isBroken, repairSteps, upSteps } from '../steps/stack.js';
import { DRY_RUN_DONE, DRY_RUN_INTRO, executor, loadStack, machine, prompterFor, requireReady, stepCtx, withLockTakeover, type CommandIo, type CommonFlags } from './shared.js';

export interface MountFlags extends CommonFlags {
  stealLock?: boolean;
  /** Encrypted images: a key file, or the key's exact bytes on stdin (else the config's unattended key, else a prompt). */
  luksKeyFile?: string;
  luksKeyStdin?: boolean;
}

const HINT = '`hbs status` shows each layer; re-running `hbs mount` is safe (what is up stays up)';

/** Brings the stack up bottom to top; layers already up are left alone; a broken stack is repaired first. */
export async function mountCommand(flags: MountFlags, io: CommandIo): Promise<void> {
  const { stack } = await loadStack(flags.config);
  await requireReady('mount', Boolean(stack.crypt), io);
  const prompter = await prompterFor(io, flags);
  const m = machine(io, Boolean(flags.verbose));
  const key = stack.crypt
    ? keySourceFor(stack.image.path, flags, { unattendedKeyFile: stack.crypt.unattendedKeyFile, prompter, readStdinBytes: io.readStdinBytes, defer: Boolean(flags.dryRun) })
    : undefined;
  const ctx = stepCtx(stack, io, m, key);
  const r = io.reporter;
  if (flags.dryRun) r.info(DRY_RUN_INTRO);
  await withLockTakeover(ctx, flags, prompter, async () => {
    const layers = await inspectStack(ctx.probe, stack);
    for (const layer of [layers.box, layers.fs]) if (layer.state === 'conflict') throw new HbsError(layer.detail, EXIT.usage, 'unmount what is there, or fix the config');
    const broken = isBroken(layers);
    if (broken) {
      r.warn(`the stack is broken: ${layers.fs.state === 'broken' ? layers.fs.detail : layers.box.detail}`);
      r.info('Repairing: unmount, detach, remount the box, e2fsck, mount again.');
    }
    await executor(io, m.runner, flags, HINT, m.deps).run(ctx, broken ? repairSteps(stack, layers) : upSteps(stack));
  });
  r.info(flags.dryRun ? DRY_RUN_DONE : `\n${stack.image.path} is mounted at ${stack.fs.mountPoint}.`);
}
