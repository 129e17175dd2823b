import { join } from 'node:path';
import { fileExists, readTextIfExists } from '../core/files.js';
import type { Action } from '../core/action.js';
import type { Check, Step } from '../core/step.js';
import { decideUndo, e2undoArgv, parseUndoMark, type UndoDecision } from '../lib/e2undo.js';
import type { Stack } from '../lib/stack.js';
import type { StepCtx } from './context.js';
import { inspectCrypt } from '../lib/inspect.js';

/** Where an offline resize2fs keeps what it overwrites (`resize2fs -z`): on this machine, next to the config. */
export function undoFile(s: Stack): string {
  return join(s.logDir, `resize2fs-${s.fs.uuid ?? 'new'}.e2undo`);
}

/** hbs's record of the filesystem right before that resize (lib/e2undo.ts UndoMark). */
export const undoMarkFile = (s: Stack): string => `${undoFile(s)}.before.json`;

async function decision(ctx: StepCtx): Promise<UndoDecision> {
  const s = ctx.stack;
  const log = await ctx.probe.undoLog(undoFile(s), s.fs.device);
  const mark = parseUndoMark(await readTextIfExists(undoMarkFile(s)));
  const sb = await ctx.probe.superblock(s.fs.device).catch(() => undefined);
  return decideUndo(log, mark, sb);
}

/**
 * resize2fs offline is not crash safe: killed halfway, it leaves ext4 neither the old size nor the
 * new, and e2fsck may not put it right (seen in the kill sweep). Its undo file, still there, says
 * so: e2undo puts back every block it had overwritten — the filesystem as it was before the resize —
 * and the grow then runs again from there. Forced (-f) only where hbs's mark shows that nothing
 * mounted or checked the filesystem since; an undo file that no longer applies is set aside, never
 * replayed. Runs before e2fsck and before any mount.
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
    const d = await decision(ctx);
    if (d.kind === 'replay') ctx.reporter.warn(`an offline resize2fs of ${ctx.stack.fs.device} did not finish: ${d.why} (e2undo ${undo}) before anything else`);
    if (d.kind === 'set-aside') ctx.reporter.warn(`${undo} is kept aside, not replayed: ${d.why}`);
    const detail = { replay: `${ctx.stack.fs.device} is as it was before that resize`, discard: `${d.why}: removed`, 'set-aside': 'set aside; e2fsck checks the filesystem' }[d.kind];
    return { done: false, detail };
  },
  async plan(ctx) {
    const s = ctx.stack;
    const undo = undoFile(s);
    const d = await decision(ctx);
    const clear: Action[] = (await fileExists(undoMarkFile(s))) ? [{ kind: 'remove', path: undoMarkFile(s), what: 'the record of the filesystem before the resize' }] : [];
    switch (d.kind) {
      case 'replay':
        return [
          { kind: 'run', cmd: { argv: e2undoArgv(d, undo, s.fs.device), timeoutMs: 24 * 60 * 60_000 } },
          { kind: 'remove', path: undo, what: 'undone' },
          ...clear,
        ];
      case 'discard':
        return [{ kind: 'remove', path: undo, what: d.why }, ...clear];
      case 'set-aside': {
        const aside = `${undo}.stale-${ctx.deps.now().toISOString().replace(/[:.]/g, '-')}`;
        return [{ kind: 'run', cmd: { argv: ['mv', '--no-clobber', '--', undo, aside] } }, ...clear];
      }
    }
  },
};
