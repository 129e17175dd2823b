import { join } from 'node:path';
import { fileExists } from '../core/files.js';
import type { Check, Step } from '../core/step.js';
import type { Stack } from '../lib/stack.js';
import type { StepCtx } from './context.js';
import { inspectCrypt } from '../lib/inspect.js';

/** Where an offline resize2fs keeps what it overwrites (`resize2fs -z`): on this machine, next to the config. */
export function undoFile(s: Stack): string {
  return join(s.logDir, `resize2fs-${s.fs.uuid ?? 'new'}.e2undo`);
}

/**
 * resize2fs offline is not crash safe: killed halfway, it leaves ext4 neither the old size nor the
 * new, and e2fsck may not put it right (seen in the kill sweep). Its undo file, still there, says
 * so: e2undo puts back every block it had overwritten — the filesystem as it was before the resize —
 * and the grow then runs again from there. Runs before e2fsck and before any mount.
 */
export const undoInterruptedResizeStep: Step<StepCtx> = {
  id: 'undo-resize',
  title: 'Undo an interrupted offline resize',
  after: ['box-mount', 'crypt-open'],
  expect: (ctx) => Promise.resolve<Check>({ done: true, detail: `checked once the image is reachable (${undoFile(ctx.stack)})` }),
  async check(ctx) {
    const undo = undoFile(ctx.stack);
    if (!(await fileExists(undo))) return { done: true, detail: 'no resize was interrupted' };
    if ((await inspectCrypt(ctx.probe, ctx.stack))?.state === 'closed') return { done: true, detail: 'undone once the mapping is open' };
    ctx.reporter.warn(`an offline resize2fs of ${ctx.stack.fs.device} was interrupted: putting back what it had overwritten (e2undo ${undo}) before anything else`);
    return { done: false, detail: `${ctx.stack.fs.device} is as it was before that resize` };
  },
  plan(ctx) {
    const undo = undoFile(ctx.stack);
    return Promise.resolve([
      { kind: 'run', cmd: { argv: ['e2undo', undo, ctx.stack.fs.device], timeoutMs: 24 * 60 * 60_000 } },
      { kind: 'remove', path: undo, what: 'undone' },
    ]);
  },
};
