import type { Action } from '../core/action.js';
import { EXIT, HbsError } from '../core/errors.js';
import { dirState } from '../core/files.js';
import { CommandError, formatCmd, type Cmd } from '../core/runner.js';
import type { Step } from '../core/step.js';
import { inspectBox } from '../lib/inspect.js';
import { BOX_READAHEAD_KB } from '../lib/stack.js';
import { sshfsMountCmd, sshfsSource } from '../lib/ssh.js';
import type { StepCtx } from './context.js';
import { listHolders } from '../lib/holders.js';

/** What ssh says when the connection itself could not be made (the network or DNS not up yet). */
const TRANSIENT = /Connection refused|Network is unreachable|No route to host|Connection timed out|Temporary failure in name resolution|Could not resolve hostname|Connection reset|Connection closed by remote host/i;
const RETRY_WAITS_MS = [2_000, 4_000, 8_000, 16_000];

/** Whether hbs may mount on `path`: missing, or an empty directory. Throws naming what is in the way. */
export async function assertMountable(path: string, what: string, flag: string): Promise<void> {
  const state = await dirState(path);
  if (state === 'full') throw new HbsError(`${what} ${path} is a directory with files in it; hbs will not mount over them`, EXIT.usage, `choose an empty or new directory for ${flag}`);
  if (state === 'not-a-directory') throw new HbsError(`${what} ${path} is a file, not a directory`, EXIT.usage, `choose a directory for ${flag}`);
}

/** Read-only: the box mount point is free for this box (missing, empty, or this box's sshfs mount). */
export async function boxTargetProblem(ctx: StepCtx): Promise<void> {
  const box = await inspectBox(ctx.probe, ctx.stack);
  if (box.state === 'conflict') throw new HbsError(`${box.detail}; hbs will not mount over it`, EXIT.usage, 'choose another --box-mount, or unmount what is there');
  if (box.state === 'down') await assertMountable(ctx.stack.boxMount, 'box mount', '--box-mount');
}

/** The box, mounted with sshfs at the box mount (hbs's key, the pinned host key, keepalives). */
export const boxMountStep: Step<StepCtx> = {
  id: 'box-mount',
  title: 'Mount the box with sshfs',
  // Repairing: the dead mount is gone once box-unmount has run (a dry-run only planned it).
  after: ['box-unmount'],
  async check(ctx) {
    const s = ctx.stack;
    const box = await inspectBox(ctx.probe, s);
    if (box.state === 'up') return { done: true, detail: `already mounted: ${sshfsSource(s.conn)} at ${s.boxMount}` };
    if (box.state === 'broken') throw new HbsError(box.detail, EXIT.failed, '`hbs mount` repairs a broken stack');
    await boxTargetProblem(ctx);
    return { done: false };
  },
  async plan(ctx) {
    const s = ctx.stack;
    const actions: Action[] = [];
    if ((await dirState(s.boxMount)) === 'missing') actions.push({ kind: 'mkdir', path: s.boxMount, mode: 0o755 });
    const cmd: Cmd = { ...sshfsMountCmd(s.conn, s.boxMount), allowFail: true };
    actions.push({
      kind: 'run',
      cmd,
      // Right after boot the network (or the box's name) may not be there yet: a connection that
      // cannot be made is tried again a few times, with a wait; anything else (a host key that does
      // not match, a key refused) is an error at once.
      then: async (r, runner) => {
        let last = r;
        for (const wait of RETRY_WAITS_MS) {
          if (last.exitCode === 0) return;
          if (!TRANSIENT.test(last.stderr)) break;
          ctx.reporter.line(`the box is not reachable yet (${last.stderr.trim().split('\n').pop() ?? ''}); trying again in ${wait / 1000} s`);
          await ctx.deps.sleep(wait);
          last = await runner.run(cmd);
        }
        if (last.exitCode !== 0) throw new CommandError(formatCmd(cmd), last);
      },
    });
    return actions;
  },
  async verify(ctx) {
    const box = await inspectBox(ctx.probe, ctx.stack);
    if (box.state !== 'up') throw new HbsError(`the box did not come up at ${ctx.stack.boxMount}: ${box.detail}`);
  },
};

/**
 * Reads through the stack come from the box in large requests: the readahead of the sshfs mount's
 * backing device (its bdi, /sys/class/bdi/0:N/read_ahead_kb) raised to BOX_READAHEAD_KB. The loop
 * device (buffered, see fs.ts) takes the readahead it finds when it opens the image, so this runs
 * right after the box is mounted and before anything opens the image. Measured (bench/restore-results.md,
 * 20,000 files over a 10 ms link): `cp -a` out of hbs 28.5 s at the kernel's default, 12.3 s with
 * 4 MiB (486 s with the loop device on direct I/O). There is no mount option for it: a box mounted by
 * fstab alone runs with the default, which `hbs status` points out.
 */
export const boxReadaheadStep: Step<StepCtx> = {
  id: 'box-readahead',
  title: 'Readahead of the box mount',
  after: ['box-mount'],
  expect: () => Promise.resolve({ done: false, detail: `set to ${BOX_READAHEAD_KB} KiB once the box is mounted` }),
  async check(ctx) {
    const devno = (await ctx.probe.mountAt(ctx.stack.boxMount))?.devno;
    const ra = devno ? await ctx.probe.readAhead(devno) : undefined;
    if (!ra) return { done: true, detail: 'the kernel shows no readahead setting for this mount: left as it is' };
    if (ra.kb >= BOX_READAHEAD_KB) return { done: true, detail: `${ra.kb} KiB` };
    return { done: false, detail: `${ra.kb} → ${BOX_READAHEAD_KB} KiB` };
  },
  async plan(ctx, pending = []) {
    const devno = pending.includes('box-mount') ? undefined : (await ctx.probe.mountAt(ctx.stack.boxMount))?.devno;
    const path = devno ? (await ctx.probe.readAhead(devno))?.path : undefined;
    return [{ kind: 'write', path: path ?? `/sys/class/bdi/<the device of ${ctx.stack.boxMount}>/read_ahead_kb`, content: `${BOX_READAHEAD_KB}\n`, mode: 0o644, how: 'in-place', what: 'a kernel setting', show: true }];
  },
};

/**
 * Unmounts the box (last, after everything on it). A box mount that no longer answers (a dropped
 * link) is taken down whatever it takes: its hung sshfs is killed and the mount detached lazily.
 */
export const boxUnmountStep: Step<StepCtx> = {
  id: 'box-unmount',
  title: 'Unmount the box',
  async check(ctx) {
    const s = ctx.stack;
    if (ctx.found.lazy) return { done: true, detail: `kept at ${s.boxMount}: the lazily detached filesystem still uses it` };
    const box = await inspectBox(ctx.probe, s);
    if (box.state === 'down') return { done: true, detail: `not mounted at ${s.boxMount}` };
    if (box.state === 'conflict') {
      ctx.reporter.warn(`leaving ${s.boxMount} alone: ${box.detail}`);
      return { done: true, detail: `left alone (${box.detail})` };
    }
    return { done: false, detail: box.state === 'broken' ? `${s.boxMount} unmounted (it did not answer)` : `${s.boxMount} unmounted` };
  },
  plan(ctx) {
    const mp = ctx.stack.boxMount;
    return Promise.resolve([
      {
        kind: 'run',
        cmd: { argv: ['fusermount3', '-u', mp], allowFail: true, timeoutMs: 60_000 },
        then: async (r, runner) => {
          if (r.exitCode === 0) return;
          const box = await inspectBox(ctx.probe, ctx.stack);
          if (box.state === 'up') {
            throw new HbsError(`${mp} is busy: ${r.stderr.trim()}\n${listHolders(await ctx.probe.holders(mp))}`, EXIT.failed, 'stop what uses the box mount and re-run `hbs umount`');
          }
          // Dead: the hung sshfs goes, then the mount is detached lazily.
          for (const pid of await ctx.probe.sshfsPids(mp)) {
            ctx.reporter.line(`stop the hung sshfs process ${pid}`);
            await runner.run({ argv: ['kill', '-KILL', String(pid)], allowFail: true });
          }
          await runner.run({ argv: ['umount', '--lazy', mp], allowFail: true, timeoutMs: 60_000 });
        },
      },
    ]);
  },
  async verify(ctx) {
    const m = await ctx.probe.mountAt(ctx.stack.boxMount);
    if (m?.fstype === 'fuse.sshfs') throw new HbsError(`${ctx.stack.boxMount} is still mounted after unmounting it`, EXIT.failed, '`hbs status` shows each layer');
  },
};
