import { directIoOn } from '../canned.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, HbsError, UsageError } from '../../../src/core/errors.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { boxGuardStep, boxMountStep } from '../../../src/steps/box-mount.js';
import { fsMountStep } from '../../../src/steps/fs-mount.js';
import { targetsStep } from '../../../src/steps/targets.js';
import { LockHeldError } from '../../../src/lifecycle/errors.js';
import {
  boxMounted,
  findmnt,
  FIXED_NOW,
  HOSTNAME,
  MACHINE_ID,
  modeOf,
  readText,
  loopMounted,
  losetup,
  makeCtx,
  makeSandbox,
  rejection,
  sshfsOptions,
  SSHFS_SOURCE,
  writeCalls,
  type Sandbox,
} from './helpers.js';

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

const otherLock = { hostname: 'other-host', machineId: 'a'.repeat(32), pid: 4242, time: '2025-01-01T00:00:00.000Z', config: '/etc/hbs/config.json' };

async function nonEmptyDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'precious.txt'), 'data');
}

describe('box-mount step', () => {
  it('is done when exactly this box and path is mounted there with sshfs', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount, boxMounted)]);
    const ctx = makeCtx(sb, { runner });
    await expect(boxMountStep.check(ctx)).resolves.toEqual({ done: true, detail: `${SSHFS_SOURCE} is mounted at ${sb.boxMount}` });
    runner.assertDone();
  });

  it('is not done when nothing is mounted and the directory is missing or empty', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount), findmnt(sb.boxMount)]);
    const ctx = makeCtx(sb, { runner });
    await expect(boxMountStep.check(ctx)).resolves.toEqual({ done: false });
    await mkdir(sb.boxMount);
    await expect(boxMountStep.check(ctx)).resolves.toEqual({ done: false });
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
  });

  it('refuses (exit 2) a mount point that already holds another filesystem', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount, { source: '/dev/sdb1', fstype: 'ext4' })]);
    const err = await rejection(boxMountStep.check(makeCtx(sb, { runner })));
    expect(err).toBeInstanceOf(HbsError);
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${sb.boxMount} already has /dev/sdb1 (ext4) mounted, not ${SSHFS_SOURCE}`);
    expect((err as HbsError).hint).toContain('--box-mount');
  });

  it('refuses an sshfs mount of another path on the same box', async () => {
    const other = { source: 'u123456@u123456.your-storagebox.de:other', fstype: 'fuse.sshfs' };
    const runner = new RecordingRunner([findmnt(sb.boxMount, other)]);
    const err = await rejection(boxMountStep.check(makeCtx(sb, { runner })));
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toContain('u123456@u123456.your-storagebox.de:other (fuse.sshfs)');
  });

  it('refuses the right source string under another filesystem type', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount, { source: SSHFS_SOURCE, fstype: 'fuse.rclone' })]);
    const err = await rejection(boxMountStep.check(makeCtx(sb, { runner })));
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toContain(`${SSHFS_SOURCE} (fuse.rclone)`);
  });

  it('goes by the top of stacked mounts', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount, boxMounted, { source: 'tmpfs', fstype: 'tmpfs' })]);
    const err = await rejection(boxMountStep.check(makeCtx(sb, { runner })));
    expect(err.message).toContain('already has tmpfs (tmpfs) mounted');
  });

  it('refuses to mount over a directory with files in it', async () => {
    await nonEmptyDir(sb.boxMount);
    const runner = new RecordingRunner([findmnt(sb.boxMount)]);
    const err = await rejection(boxMountStep.check(makeCtx(sb, { runner })));
    expect(err).toBeInstanceOf(HbsError);
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`box mount ${sb.boxMount} is a directory with files in it; hbs will not mount over them`);
  });

  it('plans mkdir 0755 and the sshfs mount when the directory is missing', async () => {
    const ctx = makeCtx(sb, { runner: new RecordingRunner() });
    expect(await boxMountStep.plan(ctx)).toEqual([
      { kind: 'mkdir', path: sb.boxMount, mode: 0o755 },
      { kind: 'run', cmd: { argv: ['sshfs', '-o', sshfsOptions(sb), SSHFS_SOURCE, sb.boxMount], timeoutMs: 60_000, detached: true } },
    ]);
  });

  it('plans only the sshfs mount when the directory exists', async () => {
    await mkdir(sb.boxMount);
    const ctx = makeCtx(sb, { runner: new RecordingRunner(), opts: { remotePath: '' } });
    const actions = await boxMountStep.plan(ctx);
    expect(actions).toEqual([
      { kind: 'run', cmd: { argv: ['sshfs', '-o', sshfsOptions(sb, ''), 'u123456@u123456.your-storagebox.de:', sb.boxMount], timeoutMs: 60_000, detached: true } },
    ]);
  });
});

describe('box-guard step', () => {
  it('throws (exit 1) when nothing is mounted at the box mount', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount)]);
    const err = await rejection(boxGuardStep.check(makeCtx(sb, { runner })));
    expect(err).toBeInstanceOf(HbsError);
    expect(err).not.toBeInstanceOf(UsageError);
    expect((err as HbsError).exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(`${sb.boxMount} is not the sshfs mount of ${SSHFS_SOURCE} (nothing is mounted there); nothing was written`);
  });

  it('throws when something else is mounted there', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount, { source: '/dev/sdb1', fstype: 'ext4' })]);
    const err = await rejection(boxGuardStep.check(makeCtx(sb, { runner })));
    expect((err as HbsError).exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(`${sb.boxMount} is not the sshfs mount of ${SSHFS_SOURCE} (/dev/sdb1 (ext4)); nothing was written`);
  });

  it('passes when the box is mounted with the right source', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount, boxMounted)]);
    await expect(boxGuardStep.check(makeCtx(sb, { runner }))).resolves.toEqual({
      done: true,
      detail: `${sb.boxMount} is the sshfs mount of ${SSHFS_SOURCE}`,
    });
    runner.assertDone();
  });

  it('refuses a box whose image is locked by another machine', async () => {
    await mkdir(sb.boxMount);
    await writeFile(`${sb.image}.hbs-lock`, JSON.stringify(otherLock));
    const runner = new RecordingRunner([findmnt(sb.boxMount, boxMounted)]);
    const err = await rejection(boxGuardStep.check(makeCtx(sb, { runner })));
    expect(err).toBeInstanceOf(LockHeldError);
    expect(err.message).toContain('other-host');
  });

  it('refuses this machine\'s lock taken through another config', async () => {
    await mkdir(sb.boxMount);
    await writeFile(`${sb.image}.hbs-lock`, JSON.stringify({ ...otherLock, machineId: MACHINE_ID }));
    const runner = new RecordingRunner([findmnt(sb.boxMount, boxMounted)]);
    const err = await rejection(boxGuardStep.check(makeCtx(sb, { runner })));
    expect(err).toBeInstanceOf(LockHeldError);
    expect(err.message).toContain('config /etc/hbs/config.json');
  });

  it('in a dry-run with the box mount simulated, is done without probing', async () => {
    const runner = new RecordingRunner([], true);
    const ctx = makeCtx(sb, { runner, state: { simulated: new Set(['box-mount']) } });
    await expect(boxGuardStep.check(ctx)).resolves.toEqual({ done: true, detail: 'will be checked once the box is mounted' });
    expect(runner.calls).toEqual([]);
    expect(await boxGuardStep.plan(ctx)).toEqual([]);
  });
});

describe('fs-mount step', () => {
  it('is done when the mount point holds a loop device backed by the image', async () => {
    const runner = new RecordingRunner([findmnt(sb.mountPoint, loopMounted('/dev/loop7')), losetup('/dev/loop7', sb.image)]);
    await expect(fsMountStep.check(makeCtx(sb, { runner }))).resolves.toEqual({
      done: true,
      detail: `${sb.image} is mounted at ${sb.mountPoint} (/dev/loop7)`,
    });
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
  });

  it('refuses (exit 2) a loop device backed by another file', async () => {
    const runner = new RecordingRunner([findmnt(sb.mountPoint, loopMounted('/dev/loop0')), losetup('/dev/loop0', '/var/lib/other.img')]);
    const err = await rejection(fsMountStep.check(makeCtx(sb, { runner })));
    expect(err).toBeInstanceOf(HbsError);
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${sb.mountPoint} already has /var/lib/other.img (ext4) mounted, not ${sb.image}`);
  });

  it('refuses (exit 2) a non-loop filesystem without asking losetup', async () => {
    const runner = new RecordingRunner([findmnt(sb.mountPoint, { source: '/dev/sdb1', fstype: 'xfs' })]);
    const err = await rejection(fsMountStep.check(makeCtx(sb, { runner })));
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${sb.mountPoint} already has /dev/sdb1 (xfs) mounted, not ${sb.image}`);
    expect(runner.calls).toHaveLength(1);
  });

  it('refuses to mount over a directory with files in it', async () => {
    await nonEmptyDir(sb.mountPoint);
    const runner = new RecordingRunner([findmnt(sb.mountPoint)]);
    const err = await rejection(fsMountStep.check(makeCtx(sb, { runner })));
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`mount point ${sb.mountPoint} is a directory with files in it; hbs will not mount over them`);
  });

  it('is not done when nothing is mounted at a missing directory', async () => {
    const runner = new RecordingRunner([findmnt(sb.mountPoint)]);
    await expect(fsMountStep.check(makeCtx(sb, { runner }))).resolves.toEqual({ done: false });
  });

  it('refuses an image locked by another machine, before anything is planned', async () => {
    await mkdir(sb.boxMount);
    await writeFile(`${sb.image}.hbs-lock`, JSON.stringify(otherLock));
    const runner = new RecordingRunner([findmnt(sb.mountPoint)]);
    const err = await rejection(fsMountStep.check(makeCtx(sb, { runner })));
    expect(err).toBeInstanceOf(LockHeldError);
    expect((err as HbsError).exitCode).toBe(EXIT.failed);
    expect(err.message).toContain('in use by another machine: other-host (machine-id aaaaaaaaaaaa…, pid 4242, config /etc/hbs/config.json)');
  });

  it('accepts its own lock, and skips the lock while the box mount is only simulated', async () => {
    await mkdir(sb.boxMount);
    await writeFile(`${sb.image}.hbs-lock`, JSON.stringify({ ...otherLock, machineId: MACHINE_ID, config: sb.config }));
    const runner = new RecordingRunner([findmnt(sb.mountPoint)]);
    await expect(fsMountStep.check(makeCtx(sb, { runner }))).resolves.toEqual({ done: false });
    await writeFile(`${sb.image}.hbs-lock`, JSON.stringify(otherLock));
    const dry = new RecordingRunner([findmnt(sb.mountPoint)], true);
    const ctx = makeCtx(sb, { runner: dry, state: { simulated: new Set(['box-mount']) } });
    await expect(fsMountStep.check(ctx)).resolves.toEqual({ done: false });
  });

  it('plans mkdir, the lock and a loop mount with the state mount options', async () => {
    const ctx = makeCtx(sb, { runner: new RecordingRunner(), state: { mountOptions: ['noatime', 'noinit_itable'] } });
    const actions = await fsMountStep.plan(ctx);
    expect(actions.map((a) => (a.kind === 'task' ? { kind: a.kind, describe: a.describe } : a))).toEqual([
      { kind: 'mkdir', path: sb.mountPoint, mode: 0o755 },
      { kind: 'task', describe: [`write the lock ${sb.image}.hbs-lock (this machine's hostname, machine-id, pid, time)`] },
      { kind: 'run', cmd: { argv: ['mount', '-t', 'ext4', '-o', 'loop,noatime,noinit_itable', sb.image, sb.mountPoint] } },
      { kind: 'task', describe: [`losetup --direct-io=on <the loop device under ${sb.mountPoint}> (if the kernel refuses, it stays buffered)`] },
    ]);
    await mkdir(sb.mountPoint);
    const again = makeCtx(sb, { runner: new RecordingRunner() });
    const second = await fsMountStep.plan(again);
    expect(second.map((a) => a.kind)).toEqual(['task', 'run', 'task']);
    expect(second[1]).toEqual({ kind: 'run', cmd: { argv: ['mount', '-t', 'ext4', '-o', 'loop,noatime', sb.image, sb.mountPoint] } });
  });

  it('the last task switches the loop device under the new mount to direct I/O', async () => {
    await mkdir(sb.mountPoint);
    const runner = new RecordingRunner([findmnt(sb.mountPoint, loopMounted('/dev/loop5')), ...directIoOn('/dev/loop5')]);
    const ctx = makeCtx(sb, { runner });
    const dio = (await fsMountStep.plan(ctx)).at(-1);
    if (dio?.kind !== 'task') throw new Error('expected the direct I/O task last');
    await dio.run();
    runner.assertDone();
    expect(ctx.reporter.lines).toEqual([]);
  });

  it('another machine\'s lock: refused, unless the person confirmed the takeover (--steal-lock), which says whose it was', async () => {
    await mkdir(sb.boxMount);
    await mkdir(sb.mountPoint);
    const old = { hostname: 'old-server', machineId: 'e'.repeat(32), pid: 7, time: '2026-11-02T08:00:00.000Z', config: '/etc/hbs/config.json' };
    await writeFile(`${sb.image}.hbs-lock`, JSON.stringify(old));
    const refused = makeCtx(sb, { runner: new RecordingRunner() });
    const [task] = await fsMountStep.plan(refused);
    if (task?.kind !== 'task') throw new Error('expected the lock task first');
    await expect(task.run()).rejects.toThrow(/in use by another machine: old-server/);
    expect(JSON.parse(await readText(`${sb.image}.hbs-lock`))).toEqual(old);
    const ctx = makeCtx(sb, { runner: new RecordingRunner(), opts: { stealLock: true } });
    const [steal] = await fsMountStep.plan(ctx);
    if (steal?.kind !== 'task') throw new Error('expected the lock task first');
    await steal.run();
    expect(JSON.parse(await readText(`${sb.image}.hbs-lock`))).toMatchObject({ hostname: HOSTNAME, config: sb.config });
    expect(ctx.reporter.lines).toEqual(['! taking over the lock held by old-server (machine-id eeeeeeeeeeee…, pid 7, config /etc/hbs/config.json) since 2026-11-02T08:00:00.000Z']);
  });

  it('the lock task writes this machine\'s lock next to the image (0600)', async () => {
    await mkdir(sb.boxMount);
    await mkdir(sb.mountPoint);
    const ctx = makeCtx(sb, { runner: new RecordingRunner() });
    const [lockTask] = await fsMountStep.plan(ctx);
    if (lockTask?.kind !== 'task') throw new Error('expected the lock task first');
    await lockTask.run();
    const lock = JSON.parse(await readText(`${sb.image}.hbs-lock`)) as Record<string, unknown>;
    expect(lock).toEqual({ hostname: HOSTNAME, machineId: MACHINE_ID, pid: process.pid, time: FIXED_NOW.toISOString(), config: sb.config });
    expect(await modeOf(`${sb.image}.hbs-lock`)).toBe(0o600);
  });
});

describe('targets step', () => {
  it('is done when both mount points are free, probing each once', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount), findmnt(sb.mountPoint)]);
    await expect(targetsStep.check(makeCtx(sb, { runner }))).resolves.toEqual({ done: true, detail: `${sb.boxMount}, ${sb.mountPoint}` });
    runner.assertDone();
    expect(await targetsStep.plan(makeCtx(sb, { runner }))).toEqual([]);
  });

  it('is done when both already hold what hbs mounts there', async () => {
    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      findmnt(sb.mountPoint, loopMounted()),
      losetup('/dev/loop3', sb.image),
    ]);
    await expect(targetsStep.check(makeCtx(sb, { runner }))).resolves.toMatchObject({ done: true });
    runner.assertDone();
  });

  it('stops at a box mount holding something else, before looking at the mount point', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount, { source: 'tmpfs', fstype: 'tmpfs' }), findmnt(sb.mountPoint)]);
    const err = await rejection(targetsStep.check(makeCtx(sb, { runner })));
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toContain(`${sb.boxMount} already has tmpfs (tmpfs) mounted`);
    expect(runner.calls).toHaveLength(1);
  });

  it('refuses a non-empty mount point directory', async () => {
    await nonEmptyDir(sb.mountPoint);
    const runner = new RecordingRunner([findmnt(sb.boxMount), findmnt(sb.mountPoint)]);
    const err = await rejection(targetsStep.check(makeCtx(sb, { runner })));
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toContain(`mount point ${sb.mountPoint} is a directory with files in it`);
  });

  it('refuses a mount point holding a loop device of another image', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount), findmnt(sb.mountPoint, loopMounted('/dev/loop1')), losetup('/dev/loop1', '/srv/x.img')]);
    const err = await rejection(targetsStep.check(makeCtx(sb, { runner })));
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toContain('/srv/x.img (ext4)');
  });
});
