import type { Step } from '../core/step.js';
import type { StackLayers } from '../lib/inspect.js';
import type { Stack } from '../lib/stack.js';
import { boxMountStep, boxReadaheadStep, boxUnmountStep } from './box.js';
import type { StepCtx } from './context.js';
import { cryptCloseStep, cryptOpenStep, keyStep, keyToOpen } from './crypt.js';
import { loopBufferedStep, fsckNeeded, fsckStep, fsMountStep, fsUnmountStep, loopDetachStep } from './fs.js';
import { imageVerifyStep } from './image.js';
import { lockCheckStep, lockReleaseStep, lockTakeStep } from './lock.js';
import { undoInterruptedResizeStep } from './undo.js';

/**
 * The stack as lists of steps: up (bottom to top), down (top to bottom), and the repair of a broken
 * one (down, then up with an e2fsck). `hbs mount` and `hbs umount` are these lists; every command
 * that needs the stack up or down composes them.
 */

const fsckOptions = {
  force: false,
  progress: false,
  leftAs: 'it stays unmounted',
  hint: (device: string, log: string) => `run \`e2fsck -f ${device}\` by hand (the log is ${log}), then \`hbs mount\` again`,
};
/** A filesystem with errors, or not cleanly unmounted, is never mounted without e2fsck -p first. */
export const fsckIfNeededStep: Step<StepCtx> = {
  ...fsckStep({ ...fsckOptions, skip: fsckNeeded, after: ['box-mount', 'crypt-open', 'image', 'mkfs'] }),
  expect: () => Promise.resolve({ done: true, detail: 'its superblock is read once the image is reachable: e2fsck -p runs first if it records errors or an unclean unmount' }),
};
/** After a broken stack was taken down: always checked. */
const repairFsck = fsckStep(fsckOptions);

/** Box → its readahead → (check image, lock, key) → lock → (open) → e2fsck when needed → mount → buffered loop. */
export function upSteps(stack: Stack, o: { fsck?: boolean } = {}): Step<StepCtx>[] {
  return [
    boxMountStep,
    boxReadaheadStep,
    imageVerifyStep,
    lockCheckStep,
    ...(stack.crypt ? [keyStep(keyToOpen)] : []),
    lockTakeStep,
    ...(stack.crypt ? [cryptOpenStep] : []),
    undoInterruptedResizeStep,
    o.fsck ? repairFsck : fsckIfNeededStep,
    fsMountStep,
    loopBufferedStep,
  ];
}

export interface DownOptions {
  /** A busy filesystem is detached lazily instead of refused (`hbs umount --force`). */
  force?: boolean;
}

/** Unmount → close → detach → release the lock → unmount the box. */
export function downSteps(stack: Stack, o: DownOptions = {}): Step<StepCtx>[] {
  return [
    fsUnmountStep({
      lazyIfBusy: o.force,
      busyHint: 'stop them and re-run `hbs umount`; --force detaches it lazily instead (see `hbs umount --help` for what that risks)',
    }),
    ...(stack.crypt ? [cryptCloseStep] : []),
    loopDetachStep,
    lockReleaseStep,
    boxUnmountStep,
  ];
}

/**
 * A broken stack (the link dropped under it, the box mount dead or the filesystem read-only): taken
 * down whatever it takes (lazily where it must), then brought up again with an e2fsck before the
 * mount. The lock is checked first while the box still answers; it is checked again once it is back.
 */
export function repairSteps(stack: Stack, layers: StackLayers): Step<StepCtx>[] {
  return [...(layers.box.state === 'up' ? [lockCheckStep] : []), ...brokenDownSteps(stack), ...upSteps(stack, { fsck: true })];
}

/** A broken stack taken down whatever it takes: a dead box mount, a filesystem that lost it. */
export function brokenDownSteps(stack: Stack): Step<StepCtx>[] {
  return [fsUnmountStep({ broken: true }), ...(stack.crypt ? [cryptCloseStep] : []), loopDetachStep, boxUnmountStep];
}

/** Whether the stack needs the repair path before it can come up. */
export function isBroken(layers: StackLayers): boolean {
  return layers.box.state === 'broken' || layers.fs.state === 'broken';
}
