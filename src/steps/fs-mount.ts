import { guardLock, lockWhere } from '../init/lock-guard.js';
import { EXIT, HbsError } from '../core/errors.js';
import type { Action, Step } from '../core/plan.js';
import { dirExists, isEmptyOrMissing, loopBackingFile, mountAt } from '../lib/mounts.js';
import { fsDeviceOf, imagePathOf, type InitContext } from '../init/context.js';
import { lockPath, newLock, writeLock } from '../lifecycle/lock.js';
import { directIoTask } from '../lib/loop.js';

/** Mounts the image through a loop device, or (encrypted) the open mapping /dev/mapper/NAME as it is. */
export function mountArgv(image: string, mountPoint: string, mountOptions: readonly string[]): string[] {
  const viaLoop = !image.startsWith('/dev/mapper/');
  return ['mount', '-t', 'ext4', '-o', [...(viaLoop ? ['loop'] : []), ...mountOptions].join(','), image, mountPoint];
}

export const fsMountStep: Step<InitContext> = {
  id: 'fs-mount',
  title: 'Mount the filesystem',
  async check(ctx) {
    const mp = ctx.opts.mountPoint;
    const image = imagePathOf(ctx.opts);
    const m = await mountAt(ctx.runner, mp);
    const device = fsDeviceOf(ctx.opts);
    if (m && ctx.opts.encrypt) {
      if (m.source === device) return { done: true, detail: `${device} is mounted at ${mp}` };
      throw new HbsError(`${mp} already has ${m.source} (${m.fstype}) mounted, not ${device}`, EXIT.usage, 'choose another --mount-point');
    }
    if (m) {
      const backing = m.source.startsWith('/dev/loop') ? await loopBackingFile(ctx.runner, m.source) : undefined;
      if (backing === image) return { done: true, detail: `${image} is mounted at ${mp} (${m.source})` };
      throw new HbsError(`${mp} already has ${backing ?? m.source} (${m.fstype}) mounted, not ${image}`, EXIT.usage, 'choose another --mount-point');
    }
    if (!ctx.state.simulated.has('box-mount')) {
      // Another machine may have this image mounted (a reinstalled server's twin): never mount it twice.
      await guardLock(ctx);
    }
    if (!(await isEmptyOrMissing(mp))) {
      throw new HbsError(`mount point ${mp} is a directory with files in it; hbs will not mount over them`, EXIT.usage, 'choose an empty or new directory for --mount-point');
    }
    return { done: false };
  },
  async plan(ctx) {
    const mp = ctx.opts.mountPoint;
    const actions: Action[] = [];
    if (!(await dirExists(mp))) actions.push({ kind: 'mkdir', path: mp, mode: 0o755 });
    const where = lockWhere(ctx);
    actions.push({
      kind: 'task',
      describe: [`write the lock ${lockPath(where)} (this machine's hostname, machine-id, pid, time)`],
      run: async () => {
        // Checked again right before writing: another machine may have taken it since the check.
        const { lock, takenOver } = await guardLock(ctx);
        if (takenOver) ctx.reporter.warn(`taking over the lock held by ${takenOver}`);
        if (lock.state === 'unreadable') throw new HbsError(`cannot read the lock ${lockPath(where)}: ${lock.detail}`, EXIT.failed, 'remove it by hand only if no other machine mounts this image');
        const deps = { ...ctx.deps, pid: process.pid };
        await writeLock(where, await newLock(deps, ctx.opts.config), lock.state !== 'free');
      },
    });
    actions.push({ kind: 'run', cmd: { argv: mountArgv(fsDeviceOf(ctx.opts), mp, ctx.state.mountOptions) } });
    actions.push(directIoTask(ctx.runner, ctx.reporter, mp, ctx.opts.encrypt ? ctx.opts.encrypt.mapperName : undefined));
    return actions;
  },
};
