import { guardLock } from '../init/lock-guard.js';
import { EXIT, HbsError } from '../core/errors.js';
import type { Action, Step } from '../core/plan.js';
import { dirExists, isEmptyOrMissing, mountAt } from '../lib/mounts.js';
import { isBoxSource, sshfsMountOptions, sshfsSource, type BoxConn } from '../lib/ssh.js';
import type { Cmd, Runner } from '../core/runner.js';
import { boxConn, type InitContext } from '../init/context.js';

/** The sshfs command that mounts the box with hbs's key and pinned host key. */
export function sshfsArgv(c: BoxConn, target: string): string[] {
  return ['sshfs', '-o', sshfsMountOptions(c).join(','), sshfsSource(c), target];
}

/** The command that mounts the box: a session of its own, so closing the terminal cannot kill its ssh. */
export function sshfsMountCmd(c: BoxConn, target: string): Cmd {
  return { argv: sshfsArgv(c, target), timeoutMs: 60_000, detached: true };
}

/** 'yes' when `target` is the sshfs mount of exactly this box and path, 'no' when nothing is mounted, else what is. */
export async function isBoxMounted(runner: Runner, c: BoxConn, target: string): Promise<string> {
  const m = await mountAt(runner, target);
  if (!m) return 'no';
  if (m.fstype === 'fuse.sshfs' && isBoxSource(m.source, c)) return 'yes';
  return `${m.source} (${m.fstype})`;
}

export const boxMountStep: Step<InitContext> = {
  id: 'box-mount',
  title: 'Mount the box with sshfs',
  async check(ctx) {
    const c = boxConn(ctx.opts);
    const target = ctx.opts.boxMount;
    const state = await isBoxMounted(ctx.runner, c, target);
    if (state === 'yes') return { done: true, detail: `${sshfsSource(c)} is mounted at ${target}` };
    if (state !== 'no') {
      throw new HbsError(`${target} already has ${state} mounted, not ${sshfsSource(c)}`, EXIT.usage, 'choose another --box-mount');
    }
    if (!(await isEmptyOrMissing(target))) {
      throw new HbsError(`box mount ${target} is a directory with files in it; hbs will not mount over them`, EXIT.usage, 'choose an empty or new directory for --box-mount');
    }
    return { done: false };
  },
  async plan(ctx) {
    const c = boxConn(ctx.opts);
    const actions: Action[] = [];
    if (!(await dirExists(ctx.opts.boxMount))) actions.push({ kind: 'mkdir', path: ctx.opts.boxMount, mode: 0o755 });
    actions.push({ kind: 'run', cmd: sshfsMountCmd(c, ctx.opts.boxMount) });
    return actions;
  },
};

/**
 * Right before anything is written under the box mount: is it really this box's sshfs mount? An
 * empty mount point would otherwise put a 100 GiB image on the local disk.
 */
export const boxGuardStep: Step<InitContext> = {
  id: 'box-guard',
  title: 'Check the box mount before writing',
  async check(ctx) {
    const c = boxConn(ctx.opts);
    if (ctx.state.simulated.has('box-mount')) return { done: true, detail: 'will be checked once the box is mounted' };
    const state = await isBoxMounted(ctx.runner, c, ctx.opts.boxMount);
    if (state !== 'yes') {
      throw new HbsError(
        `${ctx.opts.boxMount} is not the sshfs mount of ${sshfsSource(c)} (${state === 'no' ? 'nothing is mounted there' : state}); nothing was written`,
        EXIT.failed,
      );
    }
    // Before anything is written: another machine (or config) using this image stops init here.
    await guardLock(ctx);
    return { done: true, detail: `${ctx.opts.boxMount} is the sshfs mount of ${sshfsSource(c)}` };
  },
  plan() {
    return Promise.resolve([]);
  },
};
