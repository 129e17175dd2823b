import type { ChildProcess } from 'node:child_process';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { directIoOn } from '../canned.js';
import { DryRunRunner } from '../../../src/core/dry-run-runner.js';
import { EXIT, HbsError } from '../../../src/core/errors.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { LockHeldError } from '../../../src/lifecycle/errors.js';
import { mountStack } from '../../../src/lifecycle/mount-stack.js';
import {
  argvs,
  backing,
  blkid,
  boxMounted,
  dd,
  exists,
  EXT4_SIG,
  findmnt,
  freshLock,
  IMAGE_FACTS,
  lockText,
  LOOP,
  loopList,
  loopMounted,
  makeCtx,
  makeSandbox,
  mountImage,
  otherLock,
  OTHER_UUID,
  ourLock,
  readJson,
  rejection,
  sshfs,
  SSHFS_SOURCE,
  startProcess,
  statFs,
  statFsDead,
  statImage,
  stopProcess,
  UUID,
  write,
  writeCalls,
  type Sandbox,
} from './helpers.js';

let sb: Sandbox;
const children: ChildProcess[] = [];
beforeEach(async () => {
  sb = await makeSandbox();
});
afterEach(async () => {
  for (const c of children.splice(0)) await stopProcess(c);
  await sb.cleanup();
});

/** The probes that show the filesystem came up after `mount`. */
const cameUp = (): ReturnType<typeof findmnt>[] => [
  findmnt(sb.boxMount, boxMounted),
  statFs(sb.boxMount),
  findmnt(sb.mountPoint, loopMounted()),
  backing(LOOP, sb.image),
  dd(LOOP),
  ...directIoOn(LOOP),
];

/** inspectStack with the box up and nothing at the mount point. */
const boxUpFsDown = (): ReturnType<typeof findmnt>[] => [findmnt(sb.boxMount, boxMounted), statFs(sb.boxMount), loopList(), findmnt(sb.mountPoint)];

/** inspectStack with every layer up and healthy. */
const allUp = (): ReturnType<typeof findmnt>[] => [
  findmnt(sb.boxMount, boxMounted),
  statFs(sb.boxMount),
  loopList([LOOP, sb.image]),
  findmnt(sb.mountPoint, loopMounted()),
  backing(LOOP, sb.image),
  dd(LOOP),
];

/** verifyImage: the image is there and is the recorded ext4. */
const imageOk = (): ReturnType<typeof findmnt>[] => [statImage(sb.image, IMAGE_FACTS), blkid(sb.image, EXT4_SIG)];

const sshfsLine = (): string => `sshfs -o '${sshfs(sb).argv[2]}' ${SSHFS_SOURCE} ${sb.boxMount}`;

describe('mountStack: bringing the stack up', () => {
  it('everything down: mkdir, sshfs, verify the image, write the lock, loop mount, in this order', async () => {
    const runner = new RecordingRunner([
      findmnt(sb.boxMount),
      findmnt(sb.mountPoint),
      sshfs(sb),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      ...imageOk(),
      loopList(),
      mountImage(sb),
      ...cameUp(),
    ]);
    const ctx = makeCtx(sb, runner);
    expect(await mountStack(ctx)).toEqual({ box: 'mounted', fs: 'mounted' });
    runner.assertDone();
    expect(argvs(writeCalls(runner))).toEqual([
      [
        'sshfs',
        '-o',
        `reconnect,port=23,IdentityFile=${sb.sshKey},IdentitiesOnly=yes,UserKnownHostsFile=${sb.knownHosts},GlobalKnownHostsFile=/dev/null,` +
          'StrictHostKeyChecking=yes,ServerAliveInterval=15,ServerAliveCountMax=3,BatchMode=yes,fsname=sshfs#u123456@u123456.your-storagebox.de:backup',
        'u123456@u123456.your-storagebox.de:backup',
        sb.boxMount,
      ],
      ['mount', '-t', 'ext4', '-o', 'loop,noatime,nodev', sb.image, sb.mountPoint],
      ['losetup', '--direct-io=on', LOOP],
    ]);
    // Both mount points were created (0755); the lock names this machine and this config.
    expect((await stat(sb.boxMount)).mode & 0o777).toBe(0o755);
    expect((await stat(sb.mountPoint)).mode & 0o777).toBe(0o755);
    expect(await readFile(sb.lock, 'utf8')).toBe(lockText(freshLock(sb)));
    expect(ctx.reporter.lines).toEqual([`✔ Box — mounted ${sb.boxMount}`, `  switched ${LOOP} to direct I/O`, `✔ Filesystem — ${sb.image} at ${sb.mountPoint}`]);
  });

  it('box up, filesystem down: only the filesystem is mounted', async () => {
    await mkdir(sb.boxMount);
    const runner = new RecordingRunner([...boxUpFsDown(), ...imageOk(), loopList(), mountImage(sb), ...cameUp()]);
    const ctx = makeCtx(sb, runner);
    expect(await mountStack(ctx)).toEqual({ box: 'already', fs: 'mounted' });
    runner.assertDone();
    expect(argvs(writeCalls(runner))).toEqual([mountImage(sb).argv, ['losetup', '--direct-io=on', LOOP]]);
    expect(await readJson(sb.lock)).toEqual(freshLock(sb));
    expect(ctx.reporter.lines).toEqual([
      `• Box — already mounted: ${SSHFS_SOURCE} at ${sb.boxMount}`,
      `  switched ${LOOP} to direct I/O`,
      `✔ Filesystem — ${sb.image} at ${sb.mountPoint}`,
    ]);
  });

  it('all up: no command that changes anything; our lock is refreshed', async () => {
    await mkdir(sb.boxMount);
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const runner = new RecordingRunner([...allUp(), ...directIoOn(LOOP, true)]);
    const ctx = makeCtx(sb, runner);
    expect(await mountStack(ctx)).toEqual({ box: 'already', fs: 'already' });
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
    expect(await readJson(sb.lock)).toEqual(freshLock(sb)); // pid 111 and the old time replaced
    expect(await readdir(sb.boxMount)).toEqual(['filesystem.img.hbs-lock']);
    expect(ctx.reporter.lines).toEqual([
      `• Box — already mounted: ${SSHFS_SOURCE} at ${sb.boxMount}`,
      `• Filesystem — already mounted: ${sb.image} at ${sb.mountPoint} (${LOOP})`,
    ]);
  });

  it('all up from fstab at boot (buffered loop): switches it to direct I/O, nothing else', async () => {
    await mkdir(sb.boxMount);
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const runner = new RecordingRunner([...allUp(), ...directIoOn(LOOP)]);
    const ctx = makeCtx(sb, runner);
    expect(await mountStack(ctx)).toEqual({ box: 'already', fs: 'already' });
    runner.assertDone();
    expect(argvs(writeCalls(runner))).toEqual([['losetup', '--direct-io=on', LOOP]]);
    expect(ctx.reporter.lines.at(-1)).toBe(`  switched ${LOOP} to direct I/O`);
  });

  it('a kernel that refuses direct I/O: a warning, and the filesystem is mounted all the same', async () => {
    await mkdir(sb.boxMount);
    const refused = { argv: ['losetup', '--direct-io=on', LOOP], write: true, exitCode: 1, stderr: `losetup: ${LOOP}: set direct io failed: Invalid argument\n` };
    const runner = new RecordingRunner([...boxUpFsDown(), ...imageOk(), loopList(), mountImage(sb), ...cameUp().slice(0, -2), refused]);
    const ctx = makeCtx(sb, runner);
    expect(await mountStack(ctx)).toEqual({ box: 'already', fs: 'mounted' });
    runner.assertDone();
    expect(ctx.reporter.lines).toContain(
      `! loop direct I/O could not be switched on (${LOOP}: losetup: ${LOOP}: set direct io failed: Invalid argument); the filesystem works, writes go through the page cache`,
    );
    expect(ctx.reporter.lines.at(-1)).toBe(`✔ Filesystem — ${sb.image} at ${sb.mountPoint}`);
  });

  it('refuses a mount point that has files in it (exit 2), after taking the lock but before mounting', async () => {
    await mkdir(sb.boxMount);
    await mkdir(sb.mountPoint);
    await writeFile(join(sb.mountPoint, 'precious.txt'), 'data');
    const runner = new RecordingRunner([...boxUpFsDown(), ...imageOk(), loopList()]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err).toBeInstanceOf(HbsError);
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`mount point ${sb.mountPoint} is a directory with files in it; hbs will not mount over them`);
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
  });

  it('refuses a box mount directory that has files in it (exit 2), without running sshfs', async () => {
    await mkdir(sb.boxMount);
    await writeFile(join(sb.boxMount, 'local-file'), 'not the box');
    const runner = new RecordingRunner([findmnt(sb.boxMount), findmnt(sb.mountPoint)]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`box mount ${sb.boxMount} is a directory with files in it; hbs will not mount over them`);
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
  });

  it('fails when sshfs ran but the box did not come up', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount), findmnt(sb.mountPoint), sshfs(sb), findmnt(sb.boxMount)]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err.message).toBe(`the box did not come up at ${sb.boxMount}: ${sb.boxMount}: not mounted`);
    expect((err as HbsError).exitCode).toBe(EXIT.failed);
    runner.assertDone();
  });

  it('fails when mount ran but the filesystem is not readable afterwards', async () => {
    await mkdir(sb.boxMount);
    const runner = new RecordingRunner([
      ...boxUpFsDown(),
      ...imageOk(),
      loopList(),
      mountImage(sb),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      findmnt(sb.mountPoint, loopMounted()),
      backing(LOOP, sb.image),
      dd(LOOP, 1, 'dd: Input/output error'),
    ]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err.message).toBe(`the filesystem did not come up at ${sb.mountPoint}: reading ${LOOP} fails: dd: Input/output error`);
    runner.assertDone();
  });
});

describe('mountStack: refusals', () => {
  it('a box mount holding something else: HbsError exit 2, nothing changed', async () => {
    const other = { source: 'server:/export', fstype: 'nfs4' };
    const runner = new RecordingRunner([findmnt(sb.boxMount, other), loopList(), findmnt(sb.mountPoint)]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err).toBeInstanceOf(HbsError);
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${sb.boxMount} holds server:/export (nfs4), not ${SSHFS_SOURCE}`);
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
  });

  it('a mount point holding another filesystem: HbsError exit 2, nothing changed', async () => {
    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      loopList(),
      findmnt(sb.mountPoint, loopMounted('/dev/loop5')),
      backing('/dev/loop5', '/srv/other.img'),
    ]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${sb.mountPoint} holds /srv/other.img (ext4), not ${sb.image}`);
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
  });

  it('an image with another UUID: refused, no lock, no mount command', async () => {
    await mkdir(sb.boxMount);
    const runner = new RecordingRunner([...boxUpFsDown(), statImage(sb.image, IMAGE_FACTS), blkid(sb.image, { ...EXT4_SIG, UUID: OTHER_UUID })]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err).toBeInstanceOf(HbsError);
    expect((err as HbsError).exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(
      `${sb.image} is not the filesystem in ${sb.config} (found ext4 UUID ${OTHER_UUID}, expected ext4 UUID ${UUID}); not mounting it`,
    );
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
    expect(await exists(sb.lock)).toBe(false);
  });

  it('an image blkid does not recognise: refused', async () => {
    await mkdir(sb.boxMount);
    const runner = new RecordingRunner([...boxUpFsDown(), statImage(sb.image, IMAGE_FACTS), blkid(sb.image)]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err.message).toBe(`${sb.image} is not the filesystem in ${sb.config} (found no filesystem, expected ext4 UUID ${UUID}); not mounting it`);
    expect(await exists(sb.lock)).toBe(false);
  });

  it('an image of the right UUID but another type: refused', async () => {
    await mkdir(sb.boxMount);
    const runner = new RecordingRunner([...boxUpFsDown(), statImage(sb.image, IMAGE_FACTS), blkid(sb.image, { ...EXT4_SIG, TYPE: 'ext2' })]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err.message).toMatch(/\(found ext2 UUID 3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b, expected ext4 UUID/);
  });

  it('no image on the box: refused, naming it', async () => {
    await mkdir(sb.boxMount);
    const runner = new RecordingRunner([...boxUpFsDown(), statImage(sb.image)]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err.message).toBe(`the image ${sb.image} is not on the box`);
    expect((err as HbsError).hint).toMatch(/hbs status/);
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
  });

  it('an image already attached to another loop device: refused, naming the device, no mount command', async () => {
    await mkdir(sb.boxMount);
    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      loopList(['/dev/loop7', sb.image]),
      findmnt(sb.mountPoint),
      ...imageOk(),
      loopList(['/dev/loop0', '/var/lib/snapd/snaps/core.snap'], ['/dev/loop7', sb.image]),
    ]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err).toBeInstanceOf(HbsError);
    expect(err.message).toBe(`${sb.image} is already attached as /dev/loop7 (by another config or by hand); hbs will not attach it a second time`);
    expect((err as HbsError).hint).toMatch(/losetup -j/);
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
  });

  it('a lock held by another machine: LockHeldError naming its hostname and time; no mount, lock untouched', async () => {
    await mkdir(sb.boxMount);
    await writeFile(sb.lock, lockText(otherLock));
    const runner = new RecordingRunner([...boxUpFsDown(), ...imageOk()]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err).toBeInstanceOf(LockHeldError);
    expect((err as LockHeldError).exitCode).toBe(EXIT.failed);
    expect((err as LockHeldError).holder).toBe(
      'other-host (machine-id a1b2c3d4e5f6…, pid 4242, config /etc/hbs/config.json) since 2025-01-01T00:00:00.000Z',
    );
    expect(err.message).toContain('in use by another machine: other-host');
    expect(err.message).toContain('since 2025-01-01T00:00:00.000Z');
    expect((err as LockHeldError).hint).toMatch(/--steal-lock/);
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
    expect(await readJson(sb.lock)).toEqual(otherLock);
  });

  it('this machine\'s lock taken through another config: refused as well', async () => {
    await mkdir(sb.boxMount);
    const second = ourLock(sb, { config: '/etc/hbs/second.json' });
    await writeFile(sb.lock, lockText(second));
    const runner = new RecordingRunner([...boxUpFsDown(), ...imageOk()]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err).toBeInstanceOf(LockHeldError);
    expect((err as LockHeldError).holder).toContain('config /etc/hbs/second.json');
    expect(writeCalls(runner)).toEqual([]);
    expect(await readJson(sb.lock)).toEqual(second);
  });

  it('an unreadable lock: refused, not overwritten', async () => {
    await mkdir(sb.boxMount);
    await writeFile(sb.lock, 'garbage');
    const runner = new RecordingRunner([...boxUpFsDown(), ...imageOk()]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err).toBeInstanceOf(HbsError);
    expect(err).not.toBeInstanceOf(LockHeldError);
    expect(err.message).toBe(`cannot read the lock ${sb.lock}: ${sb.lock} is not JSON`);
    expect(await readFile(sb.lock, 'utf8')).toBe('garbage');
    expect(writeCalls(runner)).toEqual([]);
  });

  it('with stealLock, takes the lock over (warning whose it was) and mounts; the lock names us', async () => {
    await mkdir(sb.boxMount);
    await writeFile(sb.lock, lockText(otherLock));
    const runner = new RecordingRunner([...boxUpFsDown(), ...imageOk(), loopList(), mountImage(sb), ...cameUp()]);
    const ctx = makeCtx(sb, runner, { stealLock: true });
    expect(await mountStack(ctx)).toEqual({ box: 'already', fs: 'mounted' });
    runner.assertDone();
    expect(await readJson(sb.lock)).toEqual(freshLock(sb));
    expect(await readdir(sb.boxMount)).toEqual(['filesystem.img.hbs-lock']);
    expect(ctx.reporter.lines).toContain(
      '! taking over the lock held by other-host (machine-id a1b2c3d4e5f6…, pid 4242, config /etc/hbs/config.json) since 2025-01-01T00:00:00.000Z',
    );
  });
});

describe('mountStack: repairing a broken stack', () => {
  it('dead box under a mounted filesystem: lazy umount, detach, kill the hung sshfs, remount, e2fsck, mount', async () => {
    await mkdir(sb.boxMount);
    // A stand-in for the hung sshfs serving the box mount: argv[0] "sshfs", the mount point in its argv.
    const hung = await startProcess(process.execPath, ['-e', 'setInterval(() => {}, 1e6)', sb.boxMount], { argv0: 'sshfs' });
    children.push(hung);
    const busy = `umount: ${sb.mountPoint}: target is busy.\n`;
    const fsckOut = 'filesystem.img: Inode 12 extent tree could be narrower.  FIXED.\nfilesystem.img: 12/655360 files (0.0% non-contiguous)\n';
    const runner = new RecordingRunner([
      // inspectStack
      findmnt(sb.boxMount, boxMounted),
      statFsDead(sb.boxMount),
      loopList([LOOP, sb.image]),
      findmnt(sb.mountPoint, loopMounted()),
      backing(LOOP, sb.image),
      // the lock cannot be read on a dead box: checked again once it is back
      findmnt(sb.boxMount, boxMounted),
      statFsDead(sb.boxMount),
      // tear down
      write(['umount', sb.mountPoint], { exitCode: 32, stderr: busy }),
      write(['umount', '--lazy', sb.mountPoint]),
      loopList([LOOP, sb.image]),
      write(['losetup', '--detach', LOOP]),
      write(['fusermount3', '-u', sb.boxMount], { exitCode: 1, stderr: `fusermount3: failed to unmount ${sb.boxMount}: Device or resource busy\n` }),
      write(['kill', '-KILL', String(hung.pid)]),
      write(['umount', '--lazy', sb.boxMount]),
      // up again
      sshfs(sb),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      write(['e2fsck', '-p', sb.image], { exitCode: 1, stdout: fsckOut, stderr: 'warning\n' }),
      ...imageOk(),
      loopList(),
      mountImage(sb),
      ...cameUp(),
    ]);
    const ctx = makeCtx(sb, runner);
    expect(await mountStack(ctx)).toEqual({ box: 'repaired', fs: 'repaired' });
    runner.assertDone();

    const log = join(sb.configDir, 'logs', 'fsck-2025-01-02T03-04-05-678Z.log');
    expect(await readFile(log, 'utf8')).toBe(`$ e2fsck -p ${sb.image}\nexit 1\n\n${fsckOut}\nwarning\n`);
    expect((await stat(log)).mode & 0o777).toBe(0o600);
    expect((await stat(join(sb.configDir, 'logs'))).mode & 0o777).toBe(0o700);
    expect(await readJson(sb.lock)).toEqual(freshLock(sb));
    expect(ctx.reporter.lines).toEqual([
      `! the stack is broken: mounted from ${LOOP}, but the box under it is broken`,
      'Repairing: unmount, detach, remount the box, e2fsck, mount again.',
      `  unmount ${sb.mountPoint}`,
      `  umount failed (${busy.trim()}); detaching it lazily`,
      `  detach ${LOOP}`,
      `  unmount the box at ${sb.boxMount}`,
      `  stop the hung sshfs process ${hung.pid}`,
      '  mount the box again',
      `  e2fsck -p ${sb.image}`,
      `  e2fsck: errors fixed (log: ${log})`,
      `  mount ${sb.image} at ${sb.mountPoint} again`,
      `  switched ${LOOP} to direct I/O`,
      `✔ Repaired the stack — ${sb.image} at ${sb.mountPoint}`,
    ]);
  });

  it('a filesystem that cannot be read on a live box: plain umount and fusermount3, e2fsck clean', async () => {
    await mkdir(sb.boxMount);
    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      loopList([LOOP, sb.image]),
      findmnt(sb.mountPoint, loopMounted()),
      backing(LOOP, sb.image),
      dd(LOOP, 1, `dd: error reading '${LOOP}': Input/output error`),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      write(['umount', sb.mountPoint]),
      loopList(), // mount -o loop detached it
      write(['fusermount3', '-u', sb.boxMount]),
      sshfs(sb),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      write(['e2fsck', '-p', sb.image], { stdout: 'filesystem.img: clean, 11/655360 files\n' }),
      ...imageOk(),
      loopList(),
      mountImage(sb),
      ...cameUp(),
    ]);
    const ctx = makeCtx(sb, runner);
    expect(await mountStack(ctx)).toEqual({ box: 'repaired', fs: 'repaired' });
    runner.assertDone();
    expect(ctx.reporter.lines[0]).toBe(`! the stack is broken: reading ${LOOP} fails: dd: error reading '${LOOP}': Input/output error`);
    expect(ctx.reporter.lines).toContain(`  e2fsck: clean (log: ${join(sb.configDir, 'logs', 'fsck-2025-01-02T03-04-05-678Z.log')})`);
    expect(ctx.reporter.lines.some((l) => l.includes('lazily'))).toBe(false);
  });

  it('a dead box with nothing mounted on it: no umount, and umount --lazy when fusermount3 fails with no sshfs left', async () => {
    await mkdir(sb.boxMount);
    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFsDead(sb.boxMount),
      loopList(),
      findmnt(sb.mountPoint),
      findmnt(sb.boxMount, boxMounted),
      statFsDead(sb.boxMount),
      loopList(),
      write(['fusermount3', '-u', sb.boxMount], { exitCode: 1, stderr: 'fusermount3: entry not found in /etc/mtab' }),
      write(['umount', '--lazy', sb.boxMount]),
      sshfs(sb),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      write(['e2fsck', '-p', sb.image]),
      ...imageOk(),
      loopList(),
      mountImage(sb),
      ...cameUp(),
    ]);
    const ctx = makeCtx(sb, runner);
    expect(await mountStack(ctx)).toEqual({ box: 'repaired', fs: 'repaired' });
    runner.assertDone();
    expect(ctx.reporter.lines[0]).toBe(
      `! the stack is broken: ${sb.boxMount} is mounted but does not answer (stat: cannot read file system information for '${sb.boxMount}': Transport endpoint is not connected)`,
    );
    expect(ctx.reporter.lines).not.toContain(`  unmount ${sb.mountPoint}`);
  });

  it('e2fsck exit 4: HbsError pointing at the log, and no mount command', async () => {
    await mkdir(sb.boxMount);
    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      loopList([LOOP, sb.image]),
      findmnt(sb.mountPoint, loopMounted(LOOP, 'ro,nodev,noatime')),
      backing(LOOP, sb.image),
      dd(LOOP),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      write(['umount', sb.mountPoint]),
      loopList(),
      write(['fusermount3', '-u', sb.boxMount]),
      sshfs(sb),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      write(['e2fsck', '-p', sb.image], {
        exitCode: 4,
        stdout: 'filesystem.img: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY.\n\t(i.e., without -a or -p options)\n',
      }),
    ]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err).toBeInstanceOf(HbsError);
    expect((err as HbsError).exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(`e2fsck could not repair ${sb.image} on its own (exit 4); it stays unmounted`);
    const log = join(sb.configDir, 'logs', 'fsck-2025-01-02T03-04-05-678Z.log');
    expect((err as HbsError).hint).toBe(`run \`e2fsck -f ${sb.image}\` by hand; the log is ${log}`);
    expect(await readFile(log, 'utf8')).toMatch(/^\$ e2fsck -p .*\nexit 4\n\n.*UNEXPECTED INCONSISTENCY/);
    runner.assertDone();
    expect(runner.calls.some((c) => c.argv[0] === 'mount')).toBe(false);
    expect(await exists(sb.lock)).toBe(false);
  });

  it('refuses to repair while another machine holds the lock (box readable), before changing anything', async () => {
    await mkdir(sb.boxMount);
    await writeFile(sb.lock, lockText(otherLock));
    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      loopList([LOOP, sb.image]),
      findmnt(sb.mountPoint, loopMounted(LOOP, 'ro,nodev,noatime')),
      backing(LOOP, sb.image),
      dd(LOOP),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
    ]);
    const err = await rejection(mountStack(makeCtx(sb, runner)));
    expect(err).toBeInstanceOf(LockHeldError);
    expect(err.message).toContain('other-host');
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
  });
});

describe('mountStack: dry-run', () => {
  it('everything down: prints `! …` lines, runs only probes, creates nothing and writes no lock', async () => {
    const inner = new RecordingRunner([findmnt(sb.boxMount), findmnt(sb.mountPoint)]);
    const ctx = makeCtx(sb, inner);
    ctx.runner = new DryRunRunner(inner, (l) => ctx.reporter.line(l));
    expect(await mountStack(ctx)).toEqual({ box: 'mounted', fs: 'mounted' });
    inner.assertDone();
    expect(writeCalls(inner)).toEqual([]);
    expect(ctx.reporter.lines).toEqual([
      `  ! mkdir -p ${sb.boxMount}`,
      `  ! ${sshfsLine()}`,
      `✔ Box — mounted ${sb.boxMount}`,
      `  ! verify ${sb.image} (ext4 UUID ${UUID}), take the lock, attach and mount it at ${sb.mountPoint}`,
    ]);
    expect(await exists(sb.boxMount)).toBe(false);
    expect(await exists(sb.mountPoint)).toBe(false);
  });

  it('box up: verifies the image for real, prints the lock and the mount, writes nothing', async () => {
    await mkdir(sb.boxMount);
    const inner = new RecordingRunner([...boxUpFsDown(), ...imageOk(), loopList()]);
    const ctx = makeCtx(sb, inner);
    ctx.runner = new DryRunRunner(inner, (l) => ctx.reporter.line(l));
    expect(await mountStack(ctx)).toEqual({ box: 'already', fs: 'mounted' });
    inner.assertDone();
    expect(writeCalls(inner)).toEqual([]);
    expect(ctx.reporter.lines).toEqual([
      `• Box — already mounted: ${SSHFS_SOURCE} at ${sb.boxMount}`,
      `  ! write the lock ${sb.lock}`,
      `  ! mkdir -p ${sb.mountPoint}`,
      `  ! mount -t ext4 -o loop,noatime,nodev ${sb.image} ${sb.mountPoint}`,
      `  ! losetup --direct-io=on <the loop device under ${sb.mountPoint}> (if the kernel refuses, it stays buffered)`,
      `✔ Filesystem — ${sb.image} at ${sb.mountPoint}`,
    ]);
    expect(await readdir(sb.boxMount)).toEqual([]);
    expect(await exists(sb.mountPoint)).toBe(false);
  });

  it('still refuses a foreign lock in a dry-run', async () => {
    await mkdir(sb.boxMount);
    await writeFile(sb.lock, lockText(otherLock));
    const inner = new RecordingRunner([...boxUpFsDown(), ...imageOk()]);
    const ctx = makeCtx(sb, inner);
    ctx.runner = new DryRunRunner(inner, (l) => ctx.reporter.line(l));
    expect(await rejection(mountStack(ctx))).toBeInstanceOf(LockHeldError);
  });

  it('a broken stack: prints the whole repair, runs only probes, writes no log and no lock', async () => {
    await mkdir(sb.boxMount);
    const inner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFsDead(sb.boxMount),
      loopList([LOOP, sb.image]),
      findmnt(sb.mountPoint, loopMounted()),
      backing(LOOP, sb.image),
      findmnt(sb.boxMount, boxMounted),
      statFsDead(sb.boxMount),
      loopList([LOOP, sb.image]),
    ]);
    const ctx = makeCtx(sb, inner);
    ctx.runner = new DryRunRunner(inner, (l) => ctx.reporter.line(l));
    expect(await mountStack(ctx)).toEqual({ box: 'repaired', fs: 'repaired' });
    inner.assertDone();
    expect(writeCalls(inner)).toEqual([]);
    expect(ctx.reporter.lines).toEqual([
      `! the stack is broken: mounted from ${LOOP}, but the box under it is broken`,
      'Repairing: unmount, detach, remount the box, e2fsck, mount again.',
      `  unmount ${sb.mountPoint}`,
      `  ! umount ${sb.mountPoint}`,
      `  detach ${LOOP}`,
      `  ! losetup --detach ${LOOP}`,
      `  unmount the box at ${sb.boxMount}`,
      `  ! fusermount3 -u ${sb.boxMount}`,
      '  mount the box again',
      `  ! ${sshfsLine()}`,
      `  ! e2fsck -p ${sb.image}`,
      `  mount ${sb.image} at ${sb.mountPoint} again`,
      `  ! verify ${sb.image} (ext4 UUID ${UUID}), take the lock, attach and mount it at ${sb.mountPoint}`,
      `✔ Repaired the stack — ${sb.image} at ${sb.mountPoint}`,
    ]);
    expect(await readdir(sb.boxMount)).toEqual([]);
    expect(await exists(join(sb.configDir, 'logs'))).toBe(false);
  });

  it('a read-only filesystem on a live box: the box, full of files, is not refused as a mount point', async () => {
    await mkdir(sb.boxMount);
    await writeFile(sb.image, '');
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const inner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      loopList([LOOP, sb.image]),
      findmnt(sb.mountPoint, loopMounted(LOOP, 'ro,nodev,noatime')),
      backing(LOOP, sb.image),
      dd(LOOP),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      loopList([LOOP, sb.image]),
    ]);
    const ctx = makeCtx(sb, inner);
    ctx.runner = new DryRunRunner(inner, (l) => ctx.reporter.line(l));
    expect(await mountStack(ctx)).toEqual({ box: 'repaired', fs: 'repaired' });
    inner.assertDone();
    expect(writeCalls(inner)).toEqual([]);
    expect(ctx.reporter.lines.filter((l) => l.startsWith('  ! '))).toEqual([
      `  ! umount ${sb.mountPoint}`,
      `  ! losetup --detach ${LOOP}`,
      `  ! fusermount3 -u ${sb.boxMount}`,
      `  ! ${sshfsLine()}`,
      `  ! e2fsck -p ${sb.image}`,
      `  ! verify ${sb.image} (ext4 UUID ${UUID}), take the lock, attach and mount it at ${sb.mountPoint}`,
    ]);
    expect(await readJson(sb.lock)).toEqual(ourLock(sb)); // not refreshed in a dry-run
  });
});
