import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Action } from '../core/action.js';
import { EXIT, HbsError } from '../core/errors.js';
import { dirState } from '../core/files.js';
import type { CmdResult, Cmd } from '../core/runner.js';
import type { Check, Step } from '../core/step.js';
import { fsckFixed } from '../lib/ext4.js';
import { listHolders } from '../lib/holders.js';
import { inspectBox, inspectFs, loopsOf, loopUnder } from '../lib/inspect.js';
import { mountArgv } from '../lib/stack.js';
import { assertMountable } from './box.js';
import type { StepCtx } from './context.js';

/** Read-only: the mount point is free for this stack (missing, empty, or this image's mount). */
export async function fsTargetProblem(ctx: StepCtx): Promise<void> {
  const fs = await inspectFs(ctx.probe, ctx.stack, await inspectBox(ctx.probe, ctx.stack));
  if (fs.state === 'conflict') throw new HbsError(`${fs.detail}; hbs will not mount over it`, EXIT.usage, 'choose another --mount-point, or unmount what is there');
  if (fs.state === 'down') await assertMountable(ctx.stack.fs.mountPoint, 'mount point', '--mount-point');
}

/**
 * How long the mount of ext4 may take. The kernel reads every group-descriptor block at mount; with
 * meta_bg they lie one per meta group (64 groups, 8 GiB) across the image, each one round trip to
 * the box: 2,560 at 20 TiB. Through a 10 ms link that mount took 84 s on a quiet machine and over
 * 120 s (the limit before) on a loaded one, so `hbs init --size 20T` failed (bench/README.md).
 */
export const MOUNT_TIMEOUT_MS = 15 * 60_000;

/** ext4 mounted at the mount point: from the image through a loop device, or from the open mapping. */
export const fsMountStep: Step<StepCtx> = {
  id: 'fs-mount',
  title: 'Mount the filesystem',
  // Repairing: the broken mount is gone once fs-unmount has run (a dry-run only planned it).
  after: ['fs-unmount'],
  async check(ctx) {
    const s = ctx.stack;
    const fs = await inspectFs(ctx.probe, s, await inspectBox(ctx.probe, s));
    if (fs.state === 'up') return { done: true, detail: `already mounted: ${fs.detail}` };
    if (fs.state === 'broken') throw new HbsError(`the filesystem is mounted but broken: ${fs.detail}`, EXIT.failed, '`hbs mount` repairs a broken stack');
    await fsTargetProblem(ctx);
    return { done: false, detail: `${s.image.path} at ${s.fs.mountPoint}${s.crypt ? ` (${s.crypt.device})` : ''}` };
  },
  async plan(ctx) {
    const s = ctx.stack;
    const actions: Action[] = [];
    if ((await dirState(s.fs.mountPoint)) === 'missing') actions.push({ kind: 'mkdir', path: s.fs.mountPoint, mode: 0o755 });
    actions.push({ kind: 'run', cmd: { argv: mountArgv(s.fs.device, s.fs.mountPoint, s.fs.mountOptions), timeoutMs: MOUNT_TIMEOUT_MS } });
    return actions;
  },
  async verify(ctx) {
    const fs = await inspectFs(ctx.probe, ctx.stack, await inspectBox(ctx.probe, ctx.stack));
    if (fs.state !== 'up') throw new HbsError(`the filesystem did not come up at ${ctx.stack.fs.mountPoint}: ${fs.detail}`);
  },
};

export interface UnmountOptions {
  /** A busy filesystem is detached lazily (umount --force) instead of refused. */
  lazyIfBusy?: boolean;
  /** The stack is broken: no sync (it would hang), and a refused unmount is detached lazily. */
  broken?: boolean;
  /** What to tell the person when the filesystem is busy. */
  busyHint?: string;
}

/** Unmounts the filesystem (first, before anything under it). A busy one is refused, naming who holds it. */
export function fsUnmountStep(o: UnmountOptions = {}): Step<StepCtx> {
  return {
    id: 'fs-unmount',
    title: 'Unmount the filesystem',
    async check(ctx) {
      const s = ctx.stack;
      const fs = await inspectFs(ctx.probe, s, await inspectBox(ctx.probe, s));
      if (fs.state === 'down') return { done: true, detail: `not mounted at ${s.fs.mountPoint}` };
      if (fs.state === 'conflict') {
        ctx.reporter.warn(`leaving ${s.fs.mountPoint} alone: ${fs.detail}`);
        return { done: true, detail: `left alone (${fs.detail})` };
      }
      return { done: false, detail: `${s.fs.mountPoint} unmounted` };
    },
    plan(ctx) {
      const mp = ctx.stack.fs.mountPoint;
      const umount: Cmd = { argv: ['umount', mp], allowFail: true, timeoutMs: 10 * 60_000 };
      const lazy: Cmd = { argv: ['umount', '--lazy', mp], timeoutMs: 60_000 };
      if (o.broken) {
        return Promise.resolve([
          {
            kind: 'run',
            cmd: umount,
            then: async (r: CmdResult, runner) => {
              if (r.exitCode === 0) return;
              ctx.reporter.line(`umount failed (${r.stderr.trim()}); detaching it lazily`);
              await runner.run(lazy);
            },
          },
        ]);
      }
      return Promise.resolve([
        // Written before the unmount, so a failure shows up here and not as a lost write later.
        { kind: 'run', cmd: { argv: ['sync', '--file-system', mp], allowFail: true, timeoutMs: 10 * 60_000 } },
        {
          kind: 'run',
          cmd: umount,
          then: async (r: CmdResult, runner) => {
            if (r.exitCode === 0) return;
            const holders = await ctx.probe.holders(mp);
            if (!/busy/i.test(r.stderr) && holders.length === 0) throw new HbsError(`unmounting ${mp} failed: ${r.stderr.trim()}`);
            if (!o.lazyIfBusy) {
              throw new HbsError(`${mp} is busy; these processes hold it:\n${listHolders(holders)}`, EXIT.failed, o.busyHint ?? 'stop them and re-run');
            }
            ctx.reporter.warn(
              `${mp} is busy (${holders.map((h) => h.pid).join(', ') || 'kernel users'}): detaching it lazily. It disappears from the tree now, ` +
                'but stays in use until those processes let go; the loop device and the box stay mounted until then, and pulling the box away earlier loses what they write.',
            );
            await runner.run(lazy);
            ctx.found.lazy = true;
          },
        },
      ]);
    },
    async verify(ctx) {
      const m = await ctx.probe.mountAt(ctx.stack.fs.mountPoint);
      const fs = m && (await inspectFs(ctx.probe, ctx.stack, await inspectBox(ctx.probe, ctx.stack)));
      if (fs && fs.state !== 'conflict') throw new HbsError(`${ctx.stack.fs.mountPoint} is still mounted after unmounting it`);
    },
  };
}

/**
 * Detaches loop devices still attached to the image once nothing is mounted from them (`mount -o
 * loop` detaches on unmount; this catches one attached by hand or left by a crash). An open
 * mapping's own loop device is left to `cryptsetup close`.
 */
export const loopDetachStep: Step<StepCtx> = {
  id: 'loop-detach',
  title: 'Detach the loop device',
  after: ['fs-unmount'],
  expect: (ctx) => Promise.resolve<Check>({ done: true, detail: ctx.stack.crypt ? '`cryptsetup close` detaches it' : '`mount -o loop` detaches it on unmount' }),
  async check(ctx) {
    if (ctx.found.lazy) return { done: true, detail: 'kept: the lazily detached filesystem still uses it' };
    const left = await leftoverLoops(ctx);
    return left.length ? { done: false, detail: `detached ${left.join(', ')}` } : { done: true, detail: 'none attached to the image' };
  },
  async plan(ctx) {
    return (await leftoverLoops(ctx)).map((dev): Action => ({ kind: 'run', cmd: { argv: ['losetup', '--detach', dev], allowFail: true } }));
  },
  async verify(ctx) {
    // The kernel's autoclear may lag behind umount by a moment.
    for (let i = 0; i < 50; i++) {
      if ((await leftoverLoops(ctx)).length === 0) return;
      await ctx.deps.sleep(100);
    }
    const left = await leftoverLoops(ctx);
    const users = (await Promise.all(left.map((d) => ctx.probe.deviceUsers(d)))).flat();
    throw new HbsError(`${ctx.stack.image.path} is still attached as ${left.join(', ')}`, EXIT.failed, 'stop what holds it (below), then re-run', `what holds it:\n${listHolders(users)}`);
  },
};

async function leftoverLoops(ctx: StepCtx): Promise<string[]> {
  const s = ctx.stack;
  const mapped = s.crypt ? (await ctx.probe.mapping(s.crypt.mapperName))?.loop : undefined;
  if ((await ctx.probe.mountAt(s.boxMount)) === undefined) return [];
  return (await loopsOf(ctx.probe, s.image.path)).filter((d) => d !== mapped);
}

export interface FsckOptions<C extends StepCtx = StepCtx> {
  /** -f: check even a filesystem marked clean (before an offline resize). */
  force: boolean;
  /** Show e2fsck's passes (-C 1) on the reporter. */
  progress: boolean;
  /** When the check is not needed (already so); undefined: always run. */
  skip?: (ctx: C) => Promise<Check | undefined>;
  /** The state the stack is left in when e2fsck cannot fix it alone, and what to run then. */
  leftAs: string;
  hint: (device: string, log: string) => string;
  after?: readonly string[];
}

/**
 * Whether ext4 must be checked before it is mounted: the kernel recorded errors in its superblock
 * (a write failed underneath: the box ran full, the link dropped), it was not cleanly unmounted (a
 * crash, a reboot with it mounted: the journal needs recovery), or its state is not "clean". A
 * filesystem that is mounted already is never checked (e2fsck on a mounted filesystem destroys it).
 */
export async function fsckNeeded(ctx: StepCtx): Promise<Check | undefined> {
  const s = ctx.stack;
  const fs = await inspectFs(ctx.probe, s, await inspectBox(ctx.probe, s));
  if (fs.state === 'up') return { done: true, detail: 'mounted: not checked' };
  const sb = await ctx.probe.superblock(s.fs.device);
  const why = [
    ...(sb.errorCount > 0 ? [`the superblock records ${sb.errorCount} error${sb.errorCount === 1 ? '' : 's'}`] : []),
    ...(sb.needsRecovery ? ['it was not unmounted cleanly (the journal needs recovery)'] : []),
    ...(sb.state !== 'clean' && sb.errorCount === 0 ? [`its state is "${sb.state}"`] : []),
  ];
  if (why.length === 0) return { done: true, detail: 'clean (superblock: no errors, cleanly unmounted)' };
  ctx.reporter.warn(`${s.fs.device}: ${why.join('; ')}: running e2fsck -p before mounting it`);
  return undefined;
}

/** e2fsck's `-C 1` lines: "PASS CURRENT MAX DEVICE". */
const PROGRESS = /^(\d) (\d+) (\d+)(?: |$)/;
const PASSES = ['', 'inodes, blocks and sizes', 'directory structure', 'directory connectivity', 'reference counts', 'group summary'];

/** `e2fsck -p` (preen: fixes what is safe unattended) on the unmounted filesystem; its full output goes to a log next to the config. */
export function fsckStep<C extends StepCtx = StepCtx>(o: FsckOptions<C>): Step<C> {
  return {
    id: 'fsck',
    title: o.force ? 'Check the filesystem (e2fsck -f)' : 'Check the filesystem (e2fsck -p)',
    after: o.after ?? ['box-mount', 'crypt-open'],
    async check(ctx) {
      return (await o.skip?.(ctx)) ?? { done: false };
    },
    plan(ctx) {
      const device = ctx.stack.fs.device;
      const argv = ['e2fsck', ...(o.force ? ['-f'] : []), '-p', ...(o.progress ? ['-C', '1'] : []), device];
      let pass = 0;
      let shown = -1;
      const onStdoutLine = (line: string): void => {
        const m = PROGRESS.exec(line);
        if (!m) return;
        const [p, cur, max] = [Number(m[1]), Number(m[2]), Number(m[3])];
        if (p !== pass) {
          pass = p;
          ctx.reporter.line(`e2fsck pass ${p} of 5: ${PASSES[p] ?? ''}`);
        }
        const pct = max > 0 ? Math.floor((100 * cur) / max) : 0;
        if (pct !== shown) {
          shown = pct;
          ctx.reporter.progress?.(`pass ${p} of 5, ${pct}%`);
        }
      };
      return Promise.resolve([
        {
          kind: 'run',
          cmd: { argv, allowFail: true, timeoutMs: 24 * 60 * 60_000, ...(o.progress ? { onStdoutLine } : {}) },
          then: async (r: CmdResult) => {
            const out = r.stdout.replace(/^\d \d+ \d+ .*\n?/gm, '');
            const log = join(ctx.stack.logDir, `fsck-${ctx.deps.now().toISOString().replace(/[:.]/g, '-')}.log`);
            await mkdir(ctx.stack.logDir, { recursive: true, mode: 0o700 });
            await writeFile(log, `$ ${argv.join(' ')}\nexit ${r.exitCode}\n\n${out}\n${r.stderr}`, { mode: 0o600 });
            if (fsckFixed(r.exitCode)) {
              ctx.reporter.line(`e2fsck: ${r.exitCode === 0 ? 'clean' : 'errors found and fixed'} (log: ${log})`);
              return;
            }
            throw new HbsError(
              `e2fsck could not repair ${device} on its own (exit ${r.exitCode}); ${o.leftAs}`,
              EXIT.failed,
              o.hint(device, log),
              (out + r.stderr).trim().split('\n').slice(-8).join('\n'),
            );
          },
        },
      ]);
    },
  };
}

/**
 * The loop device reads and writes through the page cache (buffered), never with direct I/O: with
 * direct I/O every 4 KiB read of ext4 becomes one synchronous round trip to the box, and restoring
 * 20,000 small files took 486 s instead of 12.3 s (bench/restore-results.md); writes lose ~10 % of
 * their throughput buffered. `mount -o loop` and cryptsetup make buffered devices; this switches
 * back one that an older hbs (or a person) put on direct I/O.
 */
export const loopBufferedStep: Step<StepCtx> = {
  id: 'loop-buffered',
  title: 'Loop device buffered',
  after: ['fs-mount'],
  expect: () => Promise.resolve({ done: true, detail: 'a new loop device is buffered' }),
  async check(ctx) {
    const loop = await loopOfMount(ctx);
    if (!loop) return { done: true, detail: 'no loop device under the mount' };
    const dev = (await ctx.probe.loops()).find((d) => d.name === loop);
    return dev?.directIo ? { done: false, detail: `direct I/O switched off (${loop})` } : { done: true, detail: `buffered (${loop})` };
  },
  async plan(ctx) {
    const loop = (await loopOfMount(ctx)) ?? `<the loop device under ${ctx.stack.fs.mountPoint}>`;
    return [{ kind: 'run', cmd: { argv: ['losetup', '--direct-io=off', loop], timeoutMs: 60_000 } }];
  },
};

async function loopOfMount(ctx: StepCtx): Promise<string | undefined> {
  const m = await ctx.probe.mountAt(ctx.stack.fs.mountPoint);
  return m ? loopUnder(ctx.probe, ctx.stack, m.source) : undefined;
}
