import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Action } from '../core/action.js';
import type { Step } from '../core/step.js';
import type { StepCtx } from './context.js';

/** Temporary directories hbs makes: `hbs-<what>-<pid>-XXXXXX` (see Deps.mkTempDir). */
const TEMP = /^hbs-(home|verify|probe|status|fstab)-(\d+)-/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What runs of hbs that were killed left in the temporary directory: a mount of the box's home, or scratch files. */
async function leftovers(): Promise<{ path: string; what: string }[]> {
  const names = await readdir(tmpdir()).catch(() => [] as string[]);
  return names.flatMap((name) => {
    const m = TEMP.exec(name);
    return m && !alive(Number(m[2])) ? [{ path: join(tmpdir(), name), what: m[1]! }] : [];
  });
}

/**
 * Cleans up after a run that was killed: the temporary password mount of the account's home (key
 * upload) is unmounted and its directory removed only once empty — never recursively, the box's
 * files could be in it — and scratch directories (a known_hosts for a probe, an fstab to verify)
 * are removed. Only what belongs to a process that no longer exists.
 */
export const leftoversStep: Step<StepCtx> = {
  id: 'leftovers',
  title: 'Clean up after an interrupted run',
  async check() {
    const left = await leftovers();
    return left.length ? { done: false, detail: `removed ${left.map((l) => l.path).join(', ')}` } : { done: true, detail: 'nothing left behind' };
  },
  async plan(ctx) {
    const actions: Action[] = [];
    for (const l of await leftovers()) {
      if (l.what === 'home') {
        if (await ctx.probe.mountAt(l.path)) actions.push({ kind: 'run', cmd: { argv: ['fusermount3', '-u', l.path], timeoutMs: 60_000 } });
        actions.push({ kind: 'remove', path: l.path, dir: 'empty', what: "an interrupted key upload's mount point" });
      } else {
        actions.push({ kind: 'remove', path: l.path, dir: 'tree', what: 'scratch files of an interrupted run' });
      }
    }
    return actions;
  },
};
