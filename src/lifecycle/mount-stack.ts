import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { EXIT, HbsError } from '../core/errors.js';
import { imagePath } from '../lib/config.js';
import { dirExists, isEmptyOrMissing } from '../lib/mounts.js';
import { sshfsMountCmd } from '../steps/box-mount.js';
import { mountArgv } from '../steps/fs-mount.js';
import { describeDirectIo, directIoNote, directIoOf, enableDirectIo, loopOf } from '../lib/loop.js';
import { probeSignature, statFile } from '../steps/image.js';
import { connOf, type LifecycleContext } from './context.js';
import { closeCrypt, fsDevice, inspectCrypt, openCrypt, verifiedKey } from './crypt.js';
import { LockHeldError } from './errors.js';
export { LockHeldError } from './errors.js';
import { sshfsPidsFor } from './holders.js';
import { blockingLock, describeLock, lockPath, newLock, readLock, writeLock } from './lock.js';
import { inspectBox, inspectFs, inspectStack, loopsFor, type StackState } from './stack.js';

async function changeDir(ctx: LifecycleContext, path: string): Promise<void> {
  if (await dirExists(path)) return;
  if (ctx.runner.dryRun) ctx.reporter.line(`! mkdir -p ${path}`);
  else await mkdir(path, { recursive: true, mode: 0o755 });
}

async function mountBox(ctx: LifecycleContext): Promise<void> {
  const { cfg } = ctx;
  if (!(await isEmptyOrMissing(cfg.boxMount))) {
    throw new HbsError(`box mount ${cfg.boxMount} is a directory with files in it; hbs will not mount over them`, EXIT.usage);
  }
  await changeDir(ctx, cfg.boxMount);
  await ctx.runner.run(sshfsMountCmd(connOf(cfg), cfg.boxMount));
  if (ctx.runner.dryRun) return;
  const after = await inspectBox(ctx.runner, cfg);
  if (after.state !== 'up') throw new HbsError(`the box did not come up at ${cfg.boxMount}: ${after.detail}`);
}

/** The image must be the filesystem the config recorded (ext4 UUID) before it is attached. */
async function verifyImage(ctx: LifecycleContext): Promise<void> {
  const image = imagePath(ctx.cfg);
  const facts = await statFile(ctx.runner, image);
  if (!facts) throw new HbsError(`the image ${image} is not on the box`, EXIT.failed, 'check --remote-path and the box; `hbs status` shows each layer');
  const sig = await probeSignature(ctx.runner, image);
  if (ctx.cfg.encryption) {
    // The ext4 UUID is behind the key: checked once the mapping is open (openCrypt).
    if (sig.TYPE !== 'crypto_LUKS') throw new HbsError(`${image} is not a LUKS container (found ${sig.TYPE ?? 'nothing recognisable'}), but ${ctx.configPath} says it is encrypted; not mounting it`);
    return;
  }
  if (sig.TYPE !== 'ext4' || sig.UUID !== ctx.cfg.image.uuid) {
    throw new HbsError(
      `${image} is not the filesystem in ${ctx.configPath} (found ${sig.TYPE ?? 'no filesystem'}${sig.UUID ? ` UUID ${sig.UUID}` : ''}, expected ext4 UUID ${ctx.cfg.image.uuid}); not mounting it`,
    );
  }
}

/** Read-only: refuses early when someone else holds the lock (and it is not being stolen). */
async function assertLockAvailable(ctx: LifecycleContext): Promise<void> {
  const current = await readLock(ctx.cfg, await ctx.deps.machineId());
  if (current.state === 'unreadable') throw unreadableLock(ctx, current.detail);
  const blocking = blockingLock(current, ctx.configPath);
  if (blocking && !ctx.opts.stealLock) throw new LockHeldError(describeLock(blocking));
}

function unreadableLock(ctx: LifecycleContext, detail: string): HbsError {
  return new HbsError(`cannot read the lock ${lockPath(ctx.cfg)}: ${detail}`, EXIT.failed, 'remove it by hand only if no other machine mounts this image');
}

async function takeLock(ctx: LifecycleContext): Promise<void> {
  const machineId = await ctx.deps.machineId();
  const current = await readLock(ctx.cfg, machineId);
  if (current.state === 'unreadable') throw unreadableLock(ctx, current.detail);
  const blocking = blockingLock(current, ctx.configPath);
  if (blocking) {
    if (!ctx.opts.stealLock) throw new LockHeldError(describeLock(blocking));
    ctx.reporter.warn(`taking over the lock held by ${describeLock(blocking)}`);
  }
  if (ctx.runner.dryRun) {
    ctx.reporter.line(`! write the lock ${lockPath(ctx.cfg)}`);
    return;
  }
  await writeLock(ctx.cfg, await newLock(ctx.deps, ctx.configPath), current.state !== 'free');
}

/** Read-only checks before the lock is taken: a refusal here leaves no lock behind. */
async function checkFsTarget(ctx: LifecycleContext): Promise<void> {
  const image = imagePath(ctx.cfg);
  const crypt = await inspectCrypt(ctx.runner, ctx.cfg);
  if (crypt?.state === 'conflict') throw new HbsError(crypt.detail, EXIT.usage, 'close that mapping (`cryptsetup close`) or fix the config');
  // An open mapping on this image holds its own loop device: that one is ours.
  const attached = crypt?.state === 'open' ? [] : await loopsFor(ctx.runner, image);
  if (attached.length > 0) {
    throw new HbsError(
      `${image} is already attached as ${attached.join(', ')} (by another config or by hand); hbs will not attach it a second time`,
      EXIT.failed,
      'find where with `losetup -j IMAGE` and `findmnt`, and unmount it there first',
    );
  }
  const mp = ctx.cfg.filesystem.mountPoint;
  if (!(await isEmptyOrMissing(mp))) throw new HbsError(`mount point ${mp} is a directory with files in it; hbs will not mount over them`, EXIT.usage);
}

async function mountFs(ctx: LifecycleContext): Promise<void> {
  const { cfg } = ctx;
  const mp = cfg.filesystem.mountPoint;
  await changeDir(ctx, mp);
  await ctx.runner.run({ argv: mountArgv(fsDevice(cfg), mp, cfg.filesystem.mountOptions), timeoutMs: 120_000 });
  if (ctx.runner.dryRun) {
    ctx.reporter.line(`! ${describeDirectIo(mp)}`);
    return;
  }
  const box = await inspectBox(ctx.runner, cfg);
  const after = await inspectFs(ctx.runner, cfg, box);
  if (after.state !== 'up') throw new HbsError(`the filesystem did not come up at ${mp}: ${after.detail}`);
  await directIo(ctx, after.device);
}

/** Loop direct I/O (see lib/loop.ts); also for a stack fstab brought up at boot, which cannot set it. */
async function directIo(ctx: LifecycleContext, device: string | undefined): Promise<void> {
  const loop = device ? await loopOf(ctx.runner, device, ctx.cfg.encryption?.mapperName) : undefined;
  if (ctx.runner.dryRun) {
    if (loop && (await directIoOf(ctx.runner, loop)) !== true) ctx.reporter.line(`! losetup --direct-io=on ${loop}`);
    return;
  }
  const outcome = await enableDirectIo(ctx.runner, loop);
  const note = directIoNote(outcome);
  if (note) ctx.reporter.warn(note);
  else if (outcome.state === 'on') ctx.reporter.line(`switched ${loop} to direct I/O`);
}

/**
 * Lock, (encrypted: open the mapping with a key checked beforehand — a wrong key changes nothing),
 * mount. A failure after the mapping was opened here closes it again.
 */
async function bringUpFs(ctx: LifecycleContext, opts: { fsckFirst?: boolean } = {}): Promise<void> {
  const crypt = await inspectCrypt(ctx.runner, ctx.cfg);
  const key = crypt?.state === 'closed' ? await verifiedKey(ctx) : undefined;
  await takeLock(ctx);
  if (!key) {
    if (opts.fsckFirst) await fsck(ctx);
    await mountFs(ctx);
    return;
  }
  await openCrypt(ctx, key);
  try {
    if (opts.fsckFirst) await fsck(ctx);
    await mountFs(ctx);
  } catch (err) {
    if (!ctx.runner.dryRun) await closeCrypt(ctx, true);
    throw err;
  }
}

/** Tears a broken stack down (lazily where it must) and brings it up again with an fsck between. */
async function repair(ctx: LifecycleContext, state: StackState): Promise<void> {
  const { cfg, runner, reporter } = ctx;
  const image = imagePath(cfg);
  const mp = cfg.filesystem.mountPoint;
  reporter.warn(`the stack is broken: ${state.fs.state === 'broken' ? state.fs.detail : state.box.detail}`);
  reporter.info('Repairing: unmount, detach, remount the box, e2fsck, mount again.');

  if (state.fs.state === 'broken') {
    reporter.line(`unmount ${mp}`);
    const r = await runner.run({ argv: ['umount', mp], allowFail: true, timeoutMs: 120_000 });
    if (r.exitCode !== 0) {
      reporter.line(`umount failed (${r.stderr.trim()}); detaching it lazily`);
      await runner.run({ argv: ['umount', '--lazy', mp] });
    }
  }
  if (cfg.encryption && (await closeCrypt(ctx, true))) reporter.line(`closed ${fsDevice(cfg)}`);
  for (const dev of await loopsFor(runner, image)) {
    reporter.line(`detach ${dev}`);
    await runner.run({ argv: ['losetup', '--detach', dev], allowFail: true });
  }
  if (state.box.state !== 'down') {
    reporter.line(`unmount the box at ${cfg.boxMount}`);
    const r = await runner.run({ argv: ['fusermount3', '-u', cfg.boxMount], allowFail: true, timeoutMs: 60_000 });
    if (r.exitCode !== 0) {
      for (const pid of runner.dryRun ? [] : await sshfsPidsFor(cfg.boxMount)) {
        reporter.line(`stop the hung sshfs process ${pid}`);
        await runner.run({ argv: ['kill', '-KILL', String(pid)], allowFail: true });
      }
      await runner.run({ argv: ['umount', '--lazy', cfg.boxMount], allowFail: true });
    }
  }
  reporter.line('mount the box again');
  // In a dry-run nothing above was torn down: the box mount (still full, or dead), the image and its
  // loop devices would show the broken stack, so only the commands are printed from here on.
  if (runner.dryRun) await runner.run(sshfsMountCmd(connOf(cfg), cfg.boxMount));
  else await mountBox(ctx);
  // Encrypted: the filesystem is only reachable once the mapping is open again, so fsck comes after.
  if (!cfg.encryption) await fsck(ctx);
  reporter.line(`mount ${image} at ${mp} again`);
  if (runner.dryRun) {
    reporter.line(`! verify ${image} (${cfg.encryption ? 'LUKS, then ' : ''}ext4 UUID ${cfg.image.uuid}), take the lock, ${cfg.encryption ? 'open it, e2fsck -p it' : 'attach'} and mount it at ${mp}`);
    return;
  }
  await verifyImage(ctx);
  await assertLockAvailable(ctx);
  await checkFsTarget(ctx);
  await bringUpFs(ctx, { fsckFirst: Boolean(cfg.encryption) });
}

/** `e2fsck -p` on the image; the full output goes to a log file next to the config. */
async function fsck(ctx: LifecycleContext): Promise<void> {
  const image = fsDevice(ctx.cfg);
  const argv = ['e2fsck', '-p', image];
  if (ctx.runner.dryRun) {
    await ctx.runner.run({ argv });
    return;
  }
  ctx.reporter.line(`e2fsck -p ${image}`);
  const r = await ctx.runner.run({ argv, allowFail: true, timeoutMs: 60 * 60_000 });
  const logDir = join(dirname(ctx.configPath), 'logs');
  const log = join(logDir, `fsck-${ctx.deps.now().toISOString().replace(/[:.]/g, '-')}.log`);
  await mkdir(logDir, { recursive: true, mode: 0o700 });
  await writeFile(log, `$ ${argv.join(' ')}\nexit ${r.exitCode}\n\n${r.stdout}\n${r.stderr}`, { mode: 0o600 });
  // 0: clean, 1: errors fixed, 2: fixed (reboot advised for a root fs), ≥4: not fixed.
  if (r.exitCode >= 4) {
    throw new HbsError(`e2fsck could not repair ${image} on its own (exit ${r.exitCode}); it stays unmounted`, EXIT.failed, `run \`e2fsck -f ${image}\` by hand; the log is ${log}`);
  }
  ctx.reporter.line(`e2fsck: ${r.exitCode === 0 ? 'clean' : 'errors fixed'} (log: ${log})`);
}

export interface MountOutcome {
  box: 'already' | 'mounted' | 'repaired';
  fs: 'already' | 'mounted' | 'repaired';
}

/** Brings the stack up bottom to top; layers already up are left alone; a broken stack is repaired. */
export async function mountStack(ctx: LifecycleContext): Promise<MountOutcome> {
  const { cfg, reporter } = ctx;
  const state = await inspectStack(ctx.runner, cfg);
  if (state.box.state === 'conflict') throw new HbsError(state.box.detail, EXIT.usage);
  if (state.fs.state === 'conflict') throw new HbsError(state.fs.detail, EXIT.usage);

  if (state.box.state === 'broken' || state.fs.state === 'broken') {
    await verifyLockBeforeRepair(ctx);
    await repair(ctx, state);
    reporter.stepDone('Repaired the stack', `${imagePath(cfg)} at ${cfg.filesystem.mountPoint}`);
    return { box: 'repaired', fs: 'repaired' };
  }

  let box: MountOutcome['box'] = 'already';
  if (state.box.state === 'up') reporter.stepSkipped('Box', `already mounted: ${state.box.detail}`);
  else {
    reporter.stepStart('Box');
    await mountBox(ctx);
    reporter.stepDone('Box', `mounted ${cfg.boxMount}`);
    box = 'mounted';
  }
  if (ctx.runner.dryRun && box === 'mounted') {
    reporter.line(`! verify ${imagePath(cfg)} (ext4 UUID ${cfg.image.uuid}), take the lock, attach and mount it at ${cfg.filesystem.mountPoint}`);
    return { box, fs: 'mounted' };
  }
  if (state.fs.state === 'up') {
    await takeLock(ctx);
    reporter.stepSkipped('Filesystem', `already mounted: ${state.fs.detail}`);
    await directIo(ctx, state.fs.device);
    return { box, fs: 'already' };
  }
  reporter.stepStart('Filesystem');
  await verifyImage(ctx);
  await assertLockAvailable(ctx);
  await checkFsTarget(ctx);
  await bringUpFs(ctx);
  reporter.stepDone('Filesystem', `${imagePath(cfg)} at ${cfg.filesystem.mountPoint}${cfg.encryption ? ` (${fsDevice(cfg)})` : ''}`);
  return { box, fs: 'mounted' };
}

async function verifyLockBeforeRepair(ctx: LifecycleContext): Promise<void> {
  // A broken box mount cannot be read; the lock is checked again once the box is back.
  const machineId = await ctx.deps.machineId();
  const box = await inspectBox(ctx.runner, ctx.cfg);
  if (box.state !== 'up') return;
  const blocking = blockingLock(await readLock(ctx.cfg, machineId), ctx.configPath);
  if (blocking && !ctx.opts.stealLock) throw new LockHeldError(describeLock(blocking));
}
