import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mountCommand } from '../../../src/commands/mount.js';
import { EXIT } from '../../../src/core/errors.js';
import { FakeMachine } from '../../support/fake-machine.js';
import { expectGolden } from '../../support/golden.js';
import {
  BOX_SOURCE,
  encryptedConfig,
  makeConfig,
  otherLock,
  putOnBox,
  ourLock,
  OTHER_UUID,
  PASSPHRASE,
  PID,
  readLockFile,
  rejection,
  makeSandbox,
  scriptedPrompter,
  testIo,
  UUID,
  writeConfig,
  writeLock,
  type Sandbox,
} from '../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = new FakeMachine().box(sb.boxMount, sb.boxHome);
});
afterEach(async () => {
  await sb.cleanup();
});

/** A box whose image holds the recorded ext4 (as after init, then a reboot without fstab). */
async function plainBox(): Promise<void> {
  await writeConfig(sb, makeConfig(sb));
  await putOnBox(sb, 'filesystem.img');
  m.ext4(sb.image, UUID);
}

const mount = (flags: Record<string, unknown> = {}, io = testIo(m)) => mountCommand({ config: sb.config, ...flags }, io);

describe('hbs mount, plain image', () => {
  it('brings a stack up bottom to top: sshfs, the lock, mount -o loop, direct I/O', async () => {
    await plainBox();
    await mount();
    expect(m.ran[0]).toMatch(/^sshfs -o 'reconnect,port=23,.*fsname=sshfs#u123456@u123456.your-storagebox.de:backup' u123456@u123456.your-storagebox.de:backup /);
    expect(m.ran.slice(1)).toEqual([`mount -t ext4 -o loop,noatime,noinit_itable ${sb.image} ${sb.mountPoint}`, 'losetup --direct-io=on /dev/loop0']);
    expect(await readLockFile(sb)).toMatchObject({ hostname: 'testhost', pid: PID, config: sb.config });
    expect(m.loopOf(sb.image)?.directIo).toBe(true);
  });

  it('a stack fstab brought up at boot: takes the lock and switches direct I/O on, mounts nothing', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.mountFs(sb.mountPoint, m.attach(sb.image));
    const io = testIo(m);
    await mount({}, io);
    expect(m.ran).toEqual(['losetup --direct-io=on /dev/loop0']);
    expect(await readLockFile(sb)).toMatchObject({ pid: PID });
    expect(io.reporter.lines.join('\n')).toMatch(/already mounted/);
  });

  it('twice is harmless: nothing runs the second time', async () => {
    await plainBox();
    await mount();
    const before = m.ran.length;
    await mount();
    expect(m.ran.length).toBe(before);
  });

  it('repairs a dead box mount: down lazily, up again with e2fsck -p (logged next to the config) before the mount', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.mountFs(sb.mountPoint, m.attach(sb.image), 'ro,noatime');
    m.world.space.set(sb.boxMount, new Error('Transport endpoint is not connected'));
    m.world.sshfsPids.set(sb.boxMount, [4711]);
    m.failNext(['fusermount3'], { exitCode: 1, stderr: 'fusermount3: failed to unmount: Device or resource busy' });
    const io = testIo(m);
    await mount({}, io);
    expect(m.ran.map((l) => l.split(' ').slice(0, 3).join(' '))).toEqual([
      `umount ${sb.mountPoint}`,
      `fusermount3 -u ${sb.boxMount}`,
      'kill -KILL 4711',
      `umount --lazy ${sb.boxMount}`,
      'sshfs -o ' + m.ran[4]!.split(' ')[2],
      `e2fsck -p ${sb.image}`,
      'mount -t ext4',
      'losetup --direct-io=on /dev/loop1',
    ]);
    const out = io.reporter.lines.join('\n');
    expect(out).toContain('the stack is broken');
    const logs = await readdir(join(sb.configDir, 'logs'));
    expect(logs).toHaveLength(1);
    expect(await readFile(join(sb.configDir, 'logs', logs[0]!), 'utf8')).toContain(`$ e2fsck -p ${sb.image}`);
  });

  it('a repair whose e2fsck cannot fix the filesystem alone stops before mounting it, naming the log', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.mountFs(sb.mountPoint, m.attach(sb.image), 'ro,noatime');
    m.failNext(['e2fsck'], { exitCode: 4, stdout: 'filesystem.img: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY.\n' });
    const err = await rejection(mount());
    expect(err.message).toMatch(/e2fsck could not repair .* \(exit 4\); it stays unmounted/);
    expect(err.hint).toMatch(/e2fsck -f .*filesystem\.img.* by hand \(the log is .*logs\/fsck-.*\), then `hbs mount` again/);
    expect(err.details).toContain('UNEXPECTED INCONSISTENCY');
    expect(m.ran.some((l) => l.startsWith('mount '))).toBe(false);
  });

  it('never mounts a filesystem whose superblock records errors without e2fsck -p first (the box ran full under it)', async () => {
    await plainBox();
    m.ext4(sb.image, UUID, { errorCount: 3, state: 'clean with errors' });
    const io = testIo(m);
    await mount({}, io);
    const i = m.ran.findIndex((l) => l === `e2fsck -p ${sb.image}`);
    expect(i).toBeGreaterThan(0);
    expect(m.ran.findIndex((l) => l.startsWith('mount '))).toBeGreaterThan(i);
    expect(io.reporter.lines.join('\n')).toContain('the superblock records 3 errors');
  });

  it('a filesystem not cleanly unmounted (a crash) gets e2fsck -p (journal recovery) before the mount', async () => {
    await plainBox();
    m.ext4(sb.image, UUID, { needsRecovery: true });
    await mount();
    expect(m.ran).toContain(`e2fsck -p ${sb.image}`);
  });

  it('e2fsck that cannot fix it alone: exit 1, not mounted, the command to run named', async () => {
    await plainBox();
    m.ext4(sb.image, UUID, { errorCount: 1, state: 'clean with errors' });
    m.failNext(['e2fsck'], { exitCode: 4 });
    const err = await rejection(mount());
    expect(err.exitCode).toBe(EXIT.failed);
    expect(err.hint).toContain(`e2fsck -f ${sb.image}`);
    expect(m.ran.some((l) => l.startsWith('mount '))).toBe(false);
  });

  it('a clean filesystem is mounted without e2fsck', async () => {
    await plainBox();
    await mount();
    expect(m.ran.some((l) => l.startsWith('e2fsck'))).toBe(false);
  });

  it('refuses while another machine holds the lock, naming it; the image is not attached', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await writeLock(sb, otherLock);
    const err = await rejection(mount());
    expect(err.message).toContain('other-host');
    expect(err.hint).toContain('--steal-lock');
    expect(m.ran).toEqual([]);
    expect(await readLockFile(sb)).toEqual(otherLock);
  });

  it('--steal-lock asks first; without a terminal it needs --yes; with --yes it takes the lock over and says whose', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await writeLock(sb, otherLock);
    expect((await rejection(mount({ stealLock: true }))).exitCode).toBe(EXIT.usage);
    expect(await readLockFile(sb)).toEqual(otherLock);
    const no = scriptedPrompter([false]);
    expect((await rejection(mount({ stealLock: true }, testIo(m, { prompter: no })))).exitCode).toBe(EXIT.aborted);
    expect(no.asked[0]).toContain('other-host');
    const io = testIo(m);
    await mount({ stealLock: true, yes: true }, io);
    expect(await readLockFile(sb)).toMatchObject({ hostname: 'testhost', pid: PID });
    expect(io.reporter.lines.join('\n')).toContain('taking over the lock held by other-host');
  });

  it('our own lock from an earlier run is kept, not refused', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await writeLock(sb, ourLock(sb));
    await mount();
    expect(await readLockFile(sb)).toEqual(ourLock(sb));
    expect(m.world.mounts.get(sb.mountPoint)?.fstype).toBe('ext4');
  });

  it('refuses an image that is not the recorded filesystem, before the lock or a loop device', async () => {
    await plainBox();
    m.ext4(sb.image, OTHER_UUID);
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    const err = await rejection(mount());
    expect(err.message).toContain(`found ext4 UUID ${OTHER_UUID}, expected ext4 UUID ${UUID}`);
    expect(m.ran).toEqual([]);
    expect(await readLockFile(sb)).toBeUndefined();
  });

  it('refuses an image someone else attached already (a second loop device would destroy it)', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.attach(sb.image);
    const err = await rejection(mount());
    expect(err.message).toMatch(/also attached as \/dev\/loop0/);
    expect(m.ran).toEqual([]);
  });

  it('never mounts over a mount point with files in it', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await mkdir(sb.mountPoint);
    await writeFile(join(sb.mountPoint, 'local-file'), 'x');
    const err = await rejection(mount());
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toContain('is a directory with files in it');
    expect(m.ran).toEqual([]);
  });

  it("a failed command's error carries the tail of its stderr (the reason)", async () => {
    await plainBox();
    m.failNext(['sshfs'], { exitCode: 1, stderr: 'u123456@u123456.your-storagebox.de: Permission denied (publickey).\n' });
    const err = await rejection(mount());
    expect(err.message).toMatch(/^Mount the box with sshfs: command failed \(exit 1\): sshfs /);
    expect(err.details).toBe('u123456@u123456.your-storagebox.de: Permission denied (publickey).');
  });

  it('a box not reachable yet (right after boot) is tried again with a wait; then it mounts', async () => {
    await plainBox();
    const waits: number[] = [];
    m.failNext(['sshfs'], { exitCode: 1, stderr: 'ssh: connect to host u123456.your-storagebox.de port 23: Network is unreachable\n' }, 2);
    await mount({}, testIo(m, { deps: { sleep: (ms) => Promise.resolve(void waits.push(ms)) } }));
    expect(m.ran.filter((l) => l.startsWith('sshfs'))).toHaveLength(3);
    expect(waits).toEqual([2000, 4000]);
    expect(m.world.mounts.get(sb.mountPoint)?.fstype).toBe('ext4');
  });

  it('gives up after a few tries, with the reason; a refused host key is not tried again at all', async () => {
    await plainBox();
    m.failNext(['sshfs'], { exitCode: 1, stderr: 'ssh: Could not resolve hostname u123456.your-storagebox.de: Temporary failure in name resolution\n' }, 9);
    const err = await rejection(mount());
    expect(m.ran.filter((l) => l.startsWith('sshfs'))).toHaveLength(5);
    expect(err.details).toContain('Temporary failure in name resolution');
    const m2 = new FakeMachine().box(sb.boxMount, sb.boxHome);
    m2.failNext(['sshfs'], { exitCode: 1, stderr: 'Host key verification failed.\n' }, 9);
    const err2 = await rejection(mountCommand({ config: sb.config }, testIo(m2)));
    expect(m2.ran).toHaveLength(1);
    expect(err2.details).toBe('Host key verification failed.');
  });

  it('--dry-run prints every command it would run and runs none (golden)', async () => {
    await plainBox();
    const io = testIo(m);
    await mount({ dryRun: true }, io);
    expect(m.ran).toEqual([]);
    expect(await readLockFile(sb)).toBeUndefined();
    await expectGolden('mount-dry-run.txt', io.reporter.lines, sb.root);
  });

  it('--dry-run of a repair prints the way down and up again, and changes nothing', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.mountFs(sb.mountPoint, m.attach(sb.image), 'ro,noatime');
    const io = testIo(m);
    await mount({ dryRun: true }, io);
    expect(m.ran).toEqual([]);
    const out = io.reporter.lines.join('\n');
    for (const line of [`! umount ${sb.mountPoint}`, `! fusermount3 -u ${sb.boxMount}`, '! sshfs -o', `! e2fsck -p ${sb.image}`, `! mount -t ext4 -o loop,noatime,noinit_itable ${sb.image}`, '! losetup --direct-io=on']) {
      expect(out).toContain(line);
    }
  });
});

describe('hbs mount, encrypted image', () => {
  async function luksBox(o: { unattended?: boolean } = {}): Promise<void> {
    await writeConfig(sb, encryptedConfig(sb, o));
    await putOnBox(sb, 'filesystem.img');
    m.luksImage(sb.image, [PASSPHRASE]);
    m.ext4('/dev/mapper/hbs-filesystem', UUID);
  }

  it('opens the mapping with the key from stdin (checked first), mounts it and switches its loop device to direct I/O', async () => {
    await luksBox();
    await mount({ luksKeyStdin: true }, testIo(m, { stdin: PASSPHRASE }));
    expect(m.ran.slice(1)).toEqual([
      `cryptsetup open --type luks2 --key-file - ${sb.image} hbs-filesystem <<(stdin)`,
      `mount -t ext4 -o noatime,noinit_itable /dev/mapper/hbs-filesystem ${sb.mountPoint}`,
      'losetup --direct-io=on /dev/loop0',
    ]);
    expect(m.world.mappings.get('hbs-filesystem')?.backing).toBe(sb.image);
  });

  it('a wrong key from a file changes nothing past the box mount: exit 2, no mapping, no lock', async () => {
    await luksBox();
    const keyFile = join(sb.root, 'wrong.key');
    await writeFile(keyFile, 'not the passphrase');
    const err = await rejection(mount({ luksKeyFile: keyFile }));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toContain(`does not open ${sb.image}`);
    expect(m.ran.filter((l) => !l.startsWith('sshfs'))).toEqual([]);
    expect(await readLockFile(sb)).toBeUndefined();
  });

  it('a typed passphrase may be typed again: wrong, then right', async () => {
    await luksBox();
    const p = scriptedPrompter(['typo', PASSPHRASE]);
    const io = testIo(m, { prompter: p });
    await mount({}, io);
    expect(p.asked).toHaveLength(2);
    expect(p.asked[1]).toContain('attempt 2 of 3');
    expect(io.reporter.lines.join('\n')).toContain('does not open');
    expect(m.world.mappings.has('hbs-filesystem')).toBe(true);
  });

  it('no key and no terminal: exit 2 at once, naming the ways to give one', async () => {
    await luksBox();
    const err = await rejection(mount());
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.hint).toContain('--luks-key-file');
  });

  it('a mapping that holds another filesystem is closed again at once', async () => {
    await luksBox({ unattended: true });
    await writeFile(join(sb.configDir, 'hbs-filesystem.key'), PASSPHRASE);
    m.ext4('/dev/mapper/hbs-filesystem', OTHER_UUID);
    const err = await rejection(mount());
    expect(err.message).toMatch(/not the ext4 UUID .* closed it again/);
    expect(m.ran.at(-1)).toBe('cryptsetup close hbs-filesystem');
    expect(m.world.mappings.size).toBe(0);
  });

  it('an encrypted filesystem with recorded errors is checked on the opened mapping before the mount', async () => {
    await luksBox();
    m.ext4('/dev/mapper/hbs-filesystem', UUID, { errorCount: 2 });
    await mount({ luksKeyStdin: true }, testIo(m, { stdin: PASSPHRASE }));
    const open = m.ran.findIndex((l) => l.startsWith('cryptsetup open'));
    const fsck = m.ran.indexOf('e2fsck -p /dev/mapper/hbs-filesystem');
    expect(fsck).toBeGreaterThan(open);
    expect(m.ran.findIndex((l) => l.startsWith('mount '))).toBeGreaterThan(fsck);
  });

  it('--dry-run shows cryptsetup open with its stdin marker, asks nobody and reads no key (golden)', async () => {
    await luksBox();
    const p = scriptedPrompter([]);
    const io = testIo(m, { prompter: p });
    await mount({ dryRun: true }, io);
    expect(m.ran).toEqual([]);
    expect(p.asked).toEqual([]);
    await expectGolden('mount-encrypted-dry-run.txt', io.reporter.lines, sb.root);
  });
});
