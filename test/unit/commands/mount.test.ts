import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mountCommand } from '../../../src/commands/mount.js';
import { EXIT } from '../../../src/core/errors.js';
import { LockHeldError } from '../../../src/steps/lock.js';
import { FakeMachine } from '../../support/fake-machine.js';
import { expectGolden } from '../../support/golden.js';
import {
  BOX_SOURCE,
  encryptedConfig,
  FIXED_NOW,
  MACHINE_ID,
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

const SOURCE = 'u123456@u123456.your-storagebox.de:backup';
const mount = (flags: Record<string, unknown> = {}, io = testIo(m)) => mountCommand({ config: sb.config, ...flags }, io);

describe('hbs mount, plain image', () => {
  it('brings a stack up bottom to top: sshfs, the lock, mount -o loop, direct I/O', async () => {
    await plainBox();
    await mount();
    expect(m.ran[0]).toMatch(/^sshfs -o 'reconnect,port=23,.*fsname=sshfs#u123456@u123456.your-storagebox.de:backup' u123456@u123456.your-storagebox.de:backup /);
    expect(m.ran.slice(1)).toEqual([`mount -t ext4 -o loop,noatime,noinit_itable ${sb.image} ${sb.mountPoint}`]);
    expect(await readLockFile(sb)).toMatchObject({ hostname: 'testhost', pid: PID, config: sb.config });
    expect(m.loopOf(sb.image)?.directIo).toBe(false);
  });

  it('a stack fstab brought up at boot: takes the lock and raises the box readahead, mounts nothing', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.mountFs(sb.mountPoint, m.attach(sb.image));
    const io = testIo(m);
    await mount({}, io);
    expect(m.ran).toEqual([]);
    expect(await readFile(`${sb.boxHome}.bdi-read_ahead_kb`, 'utf8')).toBe('4096\n');
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

  it('an offline resize2fs killed halfway (hbs grow): undone (e2undo) before e2fsck and before the mount', async () => {
    await plainBox();
    const undo = join(sb.configDir, 'logs', `resize2fs-${UUID}.e2undo`);
    await mkdir(join(sb.configDir, 'logs'), { recursive: true });
    await writeFile(undo, 'what resize2fs overwrote');
    m.ext4(sb.image, UUID, { state: 'not clean' });
    await writeFile(`${undo}.before.json`, JSON.stringify({ blockCount: 262144 }));
    await mount();
    const undone = m.ran.indexOf(`e2undo -f ${undo} ${sb.image}`);
    expect(undone).toBeGreaterThan(0);
    expect(m.ran.indexOf(`e2fsck -p ${sb.image}`)).toBeGreaterThan(undone);
    expect(m.ran.findIndex((l) => l.startsWith('mount '))).toBeGreaterThan(undone);
    await expect(readFile(undo)).rejects.toMatchObject({ code: 'ENOENT' });
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
    for (const line of [`! umount ${sb.mountPoint}`, `! fusermount3 -u ${sb.boxMount}`, '! sshfs -o', `! e2fsck -p ${sb.image}`, `! mount -t ext4 -o loop,noatime,noinit_itable ${sb.image}`, '/read_ahead_kb (a kernel setting)']) {
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

describe('hbs mount: bringing the stack up (carried over from the old lifecycle tests)', () => {
  it('creates both mount points (0755) and writes a lock naming this machine and this config', async () => {
    await plainBox();
    await mount();
    expect((await stat(sb.boxMount)).mode & 0o777).toBe(0o755);
    expect((await stat(sb.mountPoint)).mode & 0o777).toBe(0o755);
    expect(await readLockFile(sb)).toEqual({ hostname: 'testhost', machineId: MACHINE_ID, pid: PID, time: FIXED_NOW.toISOString(), config: sb.config });
    expect((await stat(sb.lock)).mode & 0o777).toBe(0o600);
  });

  it('box up, filesystem down: only the filesystem is mounted', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    const io = testIo(m);
    await mount({}, io);
    expect(m.ran).toEqual([`mount -t ext4 -o loop,noatime,noinit_itable ${sb.image} ${sb.mountPoint}`]);
    expect(io.reporter.lines).toContain(`• Mount the box with sshfs — already mounted: ${SOURCE} at ${sb.boxMount}`);
  });

  it('all up with our lock: nothing runs, the lock stays as it is (this machine holds it) and nothing else is left on the box', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await writeLock(sb, ourLock(sb));
    m.mountFs(sb.mountPoint, m.attach(sb.image));
    await mount();
    expect(m.ran).toEqual([]);
    expect(await readLockFile(sb)).toEqual(ourLock(sb));
    expect((await readdir(sb.boxMount)).sort()).toEqual(['filesystem.img', 'filesystem.img.hbs-lock']);
  });

  it('a loop device on direct I/O (as an older hbs left it): switched to buffered, the filesystem stays mounted', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await writeLock(sb, ourLock(sb));
    m.mountFs(sb.mountPoint, m.attach(sb.image, { directIo: true }));
    const io = testIo(m);
    await mount({}, io);
    expect(m.ran).toEqual(['losetup --direct-io=off /dev/loop0']);
    expect(m.loopOf(sb.image)?.directIo).toBe(false);
    expect(io.reporter.lines).toContain('✔ Loop device buffered — direct I/O switched off (/dev/loop0)');
  });

  it('raises the readahead of the box mount right after sshfs, before the image is opened', async () => {
    await plainBox();
    let atMount: string | undefined;
    m.onRun = async (line) => {
      if (line.startsWith('mount -t ext4')) atMount = await readFile(`${sb.boxHome}.bdi-read_ahead_kb`, 'utf8');
    };
    await mount();
    expect(atMount).toBe('4096\n');
  });

  it('a box mount whose readahead is already large enough is left as it is', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await writeFile(`${sb.boxHome}.bdi-read_ahead_kb`, '8192\n');
    const io = testIo(m);
    await mount({}, io);
    expect(await readFile(`${sb.boxHome}.bdi-read_ahead_kb`, 'utf8')).toBe('8192\n');
    expect(io.reporter.lines).toContain('• Readahead of the box mount — 8192 KiB');
  });

  it('refuses a box mount directory with files in it (exit 2), without running sshfs', async () => {
    await plainBox();
    await mkdir(sb.boxMount);
    await writeFile(join(sb.boxMount, 'local-file'), 'not the box');
    const err = await rejection(mount());
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toContain(`box mount ${sb.boxMount} is a directory with files in it; hbs will not mount over them`);
    expect(m.ran).toEqual([]);
  });

  it('fails when sshfs ran but the box did not come up', async () => {
    await plainBox();
    m.doNothingNext(['sshfs']);
    const err = await rejection(mount());
    expect(err.message).toBe(`the box did not come up at ${sb.boxMount}: ${sb.boxMount}: not mounted`);
    expect(err.exitCode).toBe(EXIT.failed);
    expect(m.ran.some((l) => l.startsWith('mount '))).toBe(false);
  });

  it('fails when mount ran but the filesystem cannot be read afterwards', async () => {
    await plainBox();
    m.world.unreadable.add('/dev/loop0');
    const err = await rejection(mount());
    expect(err.message).toBe(`the filesystem did not come up at ${sb.mountPoint}: reading /dev/loop0 fails: Input/output error`);
  });
});

describe('hbs mount: refusals (carried over from the old lifecycle tests)', () => {
  it('a box mount holding something else: exit 2, nothing changed', async () => {
    await plainBox();
    m.world.mounts.set(sb.boxMount, { target: sb.boxMount, source: 'server:/export', fstype: 'nfs4', options: 'rw' });
    const err = await rejection(mount());
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${sb.boxMount} holds server:/export (nfs4), not ${SOURCE}`);
    expect(m.ran).toEqual([]);
  });

  it('a mount point holding another filesystem: exit 2, nothing changed', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.mountFs(sb.mountPoint, m.attach('/srv/other.img'));
    const err = await rejection(mount());
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${sb.mountPoint} holds /srv/other.img (ext4), not ${sb.image}`);
    expect(m.ran).toEqual([]);
  });

  it('an image blkid does not recognise, or of another type: refused, no lock', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.world.signatures.delete(sb.image);
    expect((await rejection(mount())).message).toContain(`(found no filesystem, expected ext4 UUID ${UUID})`);
    m.world.signatures.set(sb.image, { TYPE: 'ext2', UUID });
    expect((await rejection(mount())).message).toContain(`(found ext2 UUID ${UUID}, expected ext4 UUID ${UUID})`);
    expect(await readLockFile(sb)).toBeUndefined();
    expect(m.ran).toEqual([]);
  });

  it('no image on the box: refused, naming it', async () => {
    await writeConfig(sb, makeConfig(sb));
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    const err = await rejection(mount());
    expect(err.message).toBe(`the image ${sb.image} is not on the box`);
    expect(err.hint).toMatch(/hbs status/);
    expect(m.ran).toEqual([]);
  });

  it("another machine's lock is named in full: host, machine-id, pid, config, since when", async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await writeLock(sb, otherLock);
    const p = scriptedPrompter([]);
    const err = await rejection(mount({}, testIo(m, { prompter: p })));
    expect(err).toBeInstanceOf(LockHeldError);
    expect((err as LockHeldError).holder).toBe('other-host (machine-id a1b2c3d4e5f6…, pid 4242, config /etc/hbs/config.json) since 2025-01-01T00:00:00.000Z');
    // Without --steal-lock nobody is asked.
    expect(p.asked).toEqual([]);
  });

  it("this machine's lock taken through another config: refused as well, left as it is", async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    const second = ourLock(sb, { config: '/etc/hbs/second.json' });
    await writeLock(sb, second);
    const err = await rejection(mount());
    expect(err).toBeInstanceOf(LockHeldError);
    expect((err as LockHeldError).holder).toContain('config /etc/hbs/second.json');
    expect(await readLockFile(sb)).toEqual(second);
    expect(m.ran).toEqual([]);
  });

  it('an unreadable lock: refused, not overwritten', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await writeFile(sb.lock, 'garbage');
    const err = await rejection(mount({ stealLock: true, yes: true }));
    expect(err).not.toBeInstanceOf(LockHeldError);
    expect(err.message).toBe(`cannot read the lock ${sb.lock}: ${sb.lock} is not JSON`);
    expect(await readFile(sb.lock, 'utf8')).toBe('garbage');
    expect(m.ran).toEqual([]);
  });

  it('without a config: a usage error pointing at hbs init', async () => {
    const err = await rejection(mount({ config: `${sb.root}/nope.json` }));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`no config at ${sb.root}/nope.json`);
    expect(err.hint).toContain('hbs init');
  });
});

describe('hbs mount --steal-lock (carried over from the old lifecycle tests)', () => {
  async function heldByOther(): Promise<void> {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await writeLock(sb, otherLock);
  }
  const HOLDER = 'other-host (machine-id a1b2c3d4e5f6…, pid 4242, config /etc/hbs/config.json) since 2025-01-01T00:00:00.000Z';

  it('answered no: exit 130 with what was asked, nothing changed', async () => {
    await heldByOther();
    const p = scriptedPrompter([false]);
    const err = await rejection(mount({ stealLock: true }, testIo(m, { prompter: p })));
    expect(err.exitCode).toBe(EXIT.aborted);
    expect(err.message).toBe('lock not taken over; nothing was changed');
    expect(p.asked).toEqual([`${HOLDER} holds the lock. Mount here anyway? Only if that machine no longer has it mounted.`]);
    expect(m.ran).toEqual([]);
    expect(await readLockFile(sb)).toEqual(otherLock);
  });

  it('answered yes: the lock is taken over and the filesystem mounted', async () => {
    await heldByOther();
    const p = scriptedPrompter([true]);
    const io = testIo(m, { prompter: p });
    await mount({ stealLock: true }, io);
    expect(p.asked).toHaveLength(1);
    expect(m.ran).toEqual([`mount -t ext4 -o loop,noatime,noinit_itable ${sb.image} ${sb.mountPoint}`]);
    expect(await readLockFile(sb)).toMatchObject({ hostname: 'testhost', pid: PID });
    expect(io.reporter.lines).toContain(`! taking over the lock held by ${HOLDER}`);
  });

  it('with --yes nobody is asked, even in a terminal', async () => {
    await heldByOther();
    const p = scriptedPrompter([]);
    await mount({ stealLock: true, yes: true }, testIo(m, { prompter: p }));
    expect(p.asked).toEqual([]);
    expect(await readLockFile(sb)).toMatchObject({ pid: PID });
  });

  it('with --dry-run: prints the take-over and the mount, writes no lock', async () => {
    await heldByOther();
    const io = testIo(m);
    await mount({ stealLock: true, yes: true, dryRun: true }, io);
    expect(m.ran).toEqual([]);
    const out = io.reporter.lines.join('\n');
    expect(out).toContain(`taken over, as you confirmed`);
    expect(out).toContain(`! write ${sb.lock} (this machine's lock) (mode 0600, 190 bytes, replacing it)`);
    expect(out).toContain(`! mount -t ext4 -o loop,noatime,noinit_itable ${sb.image} ${sb.mountPoint}`);
    expect(await readLockFile(sb)).toEqual(otherLock);
  });
});

describe('hbs mount: repairing a broken stack (carried over from the old lifecycle tests)', () => {
  it('a refused unmount of the broken filesystem is detached lazily; the e2fsck log is private (0600 in a 0700 directory) and says it all', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.mountFs(sb.mountPoint, m.attach(sb.image));
    m.world.space.set(sb.boxMount, new Error('Transport endpoint is not connected'));
    m.failNext(['umount', sb.mountPoint], { exitCode: 32, stderr: `umount: ${sb.mountPoint}: target is busy.\n` });
    const fsckOut = 'filesystem.img: Inode 12 extent tree could be narrower.  FIXED.\nfilesystem.img: 12/655360 files (0.0% non-contiguous)\n';
    m.failNext(['e2fsck'], { exitCode: 1, stdout: fsckOut, stderr: 'warning\n' });
    const io = testIo(m);
    await mount({}, io);
    expect(m.ran.slice(0, 2)).toEqual([`umount ${sb.mountPoint}`, `umount --lazy ${sb.mountPoint}`]);
    expect(io.reporter.lines).toContain(`  umount failed (umount: ${sb.mountPoint}: target is busy.); detaching it lazily`);
    const log = join(sb.configDir, 'logs', 'fsck-2025-01-02T03-04-05-678Z.log');
    expect(await readFile(log, 'utf8')).toBe(`$ e2fsck -p ${sb.image}\nexit 1\n\n${fsckOut}\nwarning\n`);
    expect((await stat(log)).mode & 0o777).toBe(0o600);
    expect((await stat(join(sb.configDir, 'logs'))).mode & 0o777).toBe(0o700);
    expect(io.reporter.lines).toContain(`  e2fsck: errors found and fixed (log: ${log})`);
    expect(await readLockFile(sb)).toMatchObject({ pid: PID });
  });

  it('a filesystem that cannot be read on a live box: plain umount and fusermount3, e2fsck clean, no lazy detach', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.mountFs(sb.mountPoint, m.attach(sb.image));
    m.world.unreadable.add('/dev/loop0');
    const io = testIo(m);
    await mount({}, io);
    expect(io.reporter.lines).toContain('! the stack is broken: reading /dev/loop0 fails: Input/output error');
    expect(m.ran.slice(0, 2)).toEqual([`umount ${sb.mountPoint}`, `fusermount3 -u ${sb.boxMount}`]);
    expect(m.ran).toContain(`e2fsck -p ${sb.image}`);
    expect(io.reporter.lines.join('\n')).toContain('e2fsck: clean');
    expect(io.reporter.lines.some((l) => l.includes('lazily'))).toBe(false);
  });

  it('a dead box with nothing mounted on it: no umount of the filesystem; umount --lazy when fusermount3 fails with no sshfs left', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.world.space.set(sb.boxMount, new Error("stat: cannot read file system information: Transport endpoint is not connected"));
    m.failNext(['fusermount3'], { exitCode: 1, stderr: 'fusermount3: entry not found in /etc/mtab' });
    const io = testIo(m);
    await mount({}, io);
    expect(io.reporter.lines).toContain(`! the stack is broken: ${sb.boxMount} is mounted but does not answer (stat: cannot read file system information: Transport endpoint is not connected)`);
    expect(m.ran.slice(0, 2)).toEqual([`fusermount3 -u ${sb.boxMount}`, `umount --lazy ${sb.boxMount}`]);
    expect(m.ran.some((l) => l === `umount ${sb.mountPoint}`)).toBe(false);
    expect(m.world.mounts.get(sb.mountPoint)?.source).toBe('/dev/loop0');
  });

  it('refuses to repair while another machine holds the lock (the box still answers), before changing anything', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.mountFs(sb.mountPoint, m.attach(sb.image), 'ro,noatime');
    await writeLock(sb, otherLock);
    const err = await rejection(mount());
    expect(err).toBeInstanceOf(LockHeldError);
    expect(m.ran).toEqual([]);
  });
});

describe('hbs mount --dry-run (carried over from the old lifecycle tests)', () => {
  it('with the box up, checks the image for real: a foreign image or lock is refused as in a real run', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.ext4(sb.image, OTHER_UUID);
    expect((await rejection(mount({ dryRun: true }))).message).toContain(`found ext4 UUID ${OTHER_UUID}`);
    m.ext4(sb.image, UUID);
    await writeLock(sb, otherLock);
    expect(await rejection(mount({ dryRun: true }))).toBeInstanceOf(LockHeldError);
    expect(m.ran).toEqual([]);
  });

  it('with the box up: prints the lock and the mount, writes nothing', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    const io = testIo(m);
    await mount({ dryRun: true }, io);
    const bangs = io.reporter.lines.filter((l) => l.startsWith('  ! ') && !l.startsWith('  !   |'));
    expect(bangs).toEqual([
      `  ! write ${sb.boxHome}.bdi-read_ahead_kb (a kernel setting) (mode 0644, 5 bytes, in place)`,
      `  ! write ${sb.lock} (this machine's lock) (mode 0600, 190 bytes, only if it does not exist)`,
      `  ! mkdir -p -m 0755 ${sb.mountPoint}`,
      `  ! mount -t ext4 -o loop,noatime,noinit_itable ${sb.image} ${sb.mountPoint}`,
    ]);
    expect(await readdir(sb.boxMount)).toEqual(['filesystem.img']);
    await expect(stat(sb.mountPoint)).rejects.toThrow(/ENOENT/);
  });

  it('of a repair: no e2fsck log and no renewed lock', async () => {
    await plainBox();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.mountFs(sb.mountPoint, m.attach(sb.image), 'ro,noatime');
    await writeLock(sb, ourLock(sb));
    await mount({ dryRun: true });
    expect(m.ran).toEqual([]);
    expect(await readLockFile(sb)).toEqual(ourLock(sb));
    await expect(stat(join(sb.configDir, 'logs'))).rejects.toThrow(/ENOENT/);
  });
});

describe('hbs mount, encrypted (carried over from the old lifecycle tests)', () => {
  it('a plain ext4 where the config says LUKS: refused before any key is asked', async () => {
    await writeConfig(sb, encryptedConfig(sb));
    await putOnBox(sb, 'filesystem.img');
    m.ext4(sb.image, UUID);
    const p = scriptedPrompter([]);
    const err = await rejection(mount({}, testIo(m, { prompter: p })));
    expect(err.message).toMatch(/is not a LUKS container \(found ext4 UUID .*\), but .* says it is encrypted/);
    expect(p.asked).toEqual([]);
    expect(m.ran.filter((l) => !l.startsWith('sshfs'))).toEqual([]);
  });
});
