import { EXIT, HbsError } from '../core/errors.js';
import { imagePath } from '../lib/config.js';
import type { LifecycleContext } from './context.js';
import { closeCrypt } from './crypt.js';
import { holdersOf, type Holder } from './holders.js';
import { readLock, releaseLock } from './lock.js';
import { inspectBox, inspectFs, loopsFor } from './stack.js';

function listHolders(holders: readonly Holder[]): string {
  return holders.map((h) => `  pid ${h.pid} (${h.via}): ${h.command}`).join('\n');
}

export interface UmountOutcome {
  fs: 'already' | 'unmounted' | 'lazy';
  box: 'already' | 'unmounted' | 'kept';
}

/**
 * Takes the stack down top to bottom: sync, unmount the filesystem, detach the loop device, release
 * the lock, unmount the box. A busy filesystem is refused (naming who holds it) unless --force.
 */
export async function umountStack(ctx: LifecycleContext): Promise<UmountOutcome> {
  const { cfg, runner, reporter } = ctx;
  const mp = cfg.filesystem.mountPoint;
  const image = imagePath(cfg);
  let box = await inspectBox(runner, cfg);
  const fsLayer = await inspectFs(runner, cfg, box);
  let fs: UmountOutcome['fs'] = 'already';

  if (fsLayer.state === 'conflict') reporter.warn(`leaving ${mp} alone: ${fsLayer.detail}`);
  if (fsLayer.state === 'up' || fsLayer.state === 'broken') {
    reporter.stepStart('Filesystem');
    await runner.run({ argv: ['sync', '--file-system', mp], allowFail: true, timeoutMs: 10 * 60_000 });
    const r = await runner.run({ argv: ['umount', mp], allowFail: true, timeoutMs: 10 * 60_000 });
    if (r.exitCode !== 0) {
      const holders = await holdersOf(mp);
      const busy = /busy/i.test(r.stderr) || holders.length > 0;
      if (!busy) throw new HbsError(`unmounting ${mp} failed: ${r.stderr.trim()}`);
      if (!ctx.opts.force) {
        throw new HbsError(
          `${mp} is busy; these processes hold it:\n${listHolders(holders) || '  (none found in /proc: a kernel user such as a bind mount or NFS export)'}`,
          EXIT.failed,
          'stop them and re-run `hbs umount`; --force detaches it lazily instead (see `hbs umount --help` for what that risks)',
        );
      }
      reporter.warn(
        `${mp} is busy (${holders.map((h) => h.pid).join(', ') || 'kernel users'}): detaching it lazily. It disappears from the tree now, ` +
          'but stays in use until those processes let go; the loop device and the box stay mounted until then, and pulling the box away earlier loses what they write.',
      );
      await runner.run({ argv: ['umount', '--lazy', mp] });
      fs = 'lazy';
    } else fs = 'unmounted';
    reporter.stepDone('Filesystem', fs === 'lazy' ? `${mp} detached lazily` : `${mp} unmounted`);
  } else {
    reporter.stepSkipped('Filesystem', `not mounted at ${mp}`);
  }

  if (fs === 'lazy') {
    reporter.warn(`keeping the box mounted at ${cfg.boxMount}: the lazily detached filesystem still uses it`);
    return { fs, box: 'kept' };
  }

  // Unmount first, then close the mapping (closing under a mounted filesystem is refused, and wrong).
  if (cfg.encryption) {
    if (await closeCrypt(ctx)) reporter.stepDone('Encryption', `/dev/mapper/${cfg.encryption.mapperName} closed`);
    else reporter.stepSkipped('Encryption', `/dev/mapper/${cfg.encryption.mapperName} not open`);
  }

  if (box.state !== 'down') {
    // mount -o loop detaches on unmount; a loop device left over (attached by hand, or a crash) goes too,
    // unless something still has it mounted.
    for (const dev of await loopsFor(runner, image)) {
      await runner.run({ argv: ['losetup', '--detach', dev], allowFail: true });
    }
    box = await inspectBox(runner, cfg);
  }

  if (box.state === 'up') {
    const lock = await readLock(cfg, await ctx.deps.machineId());
    if (lock.state === 'ours') {
      if (runner.dryRun) reporter.line(`! remove the lock ${imagePath(cfg)}.hbs-lock`);
      else await releaseLock(cfg);
    }
  }

  if (box.state === 'conflict') {
    reporter.warn(`leaving ${cfg.boxMount} alone: ${box.detail}`);
    return { fs, box: 'kept' };
  }
  if (box.state === 'down') {
    reporter.stepSkipped('Box', `not mounted at ${cfg.boxMount}`);
    return { fs, box: 'already' };
  }
  reporter.stepStart('Box');
  const r = await runner.run({ argv: ['fusermount3', '-u', cfg.boxMount], allowFail: true, timeoutMs: 60_000 });
  if (r.exitCode !== 0) {
    if (box.state === 'broken') {
      await runner.run({ argv: ['umount', '--lazy', cfg.boxMount] });
    } else {
      const holders = await holdersOf(cfg.boxMount);
      throw new HbsError(`${cfg.boxMount} is busy: ${r.stderr.trim()}\n${listHolders(holders)}`, EXIT.failed, 'stop what uses the box mount and re-run `hbs umount`');
    }
  }
  reporter.stepDone('Box', `${cfg.boxMount} unmounted`);
  return { fs, box: 'unmounted' };
}
