import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { umountCommand } from '../../../src/commands/umount.js';
import { EXIT } from '../../../src/core/errors.js';
import { FakeMachine } from '../../support/fake-machine.js';
import { expectGolden } from '../../support/golden.js';
import {
  BOX_SOURCE,
  encryptedConfig,
  makeConfig,
  makeSandbox,
  otherLock,
  ourLock,
  putOnBox,
  readLockFile,
  rejection,
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

/** A plain stack, all up, with this machine's lock. */
async function upStack(cfg = makeConfig(sb)): Promise<void> {
  await writeConfig(sb, cfg);
  await putOnBox(sb, 'filesystem.img');
  await m.mountBox(sb.boxMount, BOX_SOURCE);
  await writeLock(sb, ourLock(sb));
  if (cfg.encryption) {
    m.openMapping('hbs-filesystem', sb.image);
    m.mountFs(sb.mountPoint, '/dev/mapper/hbs-filesystem');
  } else {
    m.ext4(sb.image, UUID);
    m.mountFs(sb.mountPoint, m.attach(sb.image));
  }
}

const umount = (flags: Record<string, unknown> = {}, io = testIo(m)) => umountCommand({ config: sb.config, ...flags }, io);

describe('hbs umount', () => {
  it('takes the stack down top to bottom: sync, umount, (loop gone with it), lock released, box unmounted', async () => {
    await upStack();
    await umount();
    expect(m.ran).toEqual([`sync --file-system ${sb.mountPoint}`, `umount ${sb.mountPoint}`, `fusermount3 -u ${sb.boxMount}`]);
    expect(m.world.loops).toEqual([]);
    expect(await readLockFile(sb)).toBeUndefined();
    expect(m.world.mounts.size).toBe(0);
  });

  it('encrypted: unmount first, then close the mapping, then the box', async () => {
    await upStack(encryptedConfig(sb));
    await umount();
    expect(m.ran).toEqual([`sync --file-system ${sb.mountPoint}`, `umount ${sb.mountPoint}`, 'cryptsetup close hbs-filesystem', `fusermount3 -u ${sb.boxMount}`]);
    expect(m.world.mappings.size).toBe(0);
  });

  it('a busy filesystem is refused, naming who holds it; nothing else is taken down', async () => {
    await upStack();
    m.world.holders.set(sb.mountPoint, [{ pid: 4242, command: 'rsync -a /srv/ /mnt/', via: 'cwd' }]);
    m.failNext(['umount'], { exitCode: 32, stderr: `umount: ${sb.mountPoint}: target is busy.` });
    const err = await rejection(umount());
    expect(err.message).toContain('pid 4242 (cwd): rsync -a /srv/ /mnt/');
    expect(err.hint).toContain('--force');
    expect(m.world.mounts.has(sb.boxMount)).toBe(true);
    expect(await readLockFile(sb)).toMatchObject({ pid: 111 });
  });

  it('--force detaches a busy filesystem lazily, and keeps the box, the loop device and the lock for its users', async () => {
    await upStack();
    m.world.holders.set(sb.mountPoint, [{ pid: 4242, command: 'sleep 1000', via: 'open file' }]);
    m.failNext(['umount', sb.mountPoint], { exitCode: 32, stderr: 'target is busy' });
    const io = testIo(m);
    await umount({ force: true }, io);
    expect(m.ran).toEqual([`sync --file-system ${sb.mountPoint}`, `umount ${sb.mountPoint}`, `umount --lazy ${sb.mountPoint}`]);
    expect(m.world.mounts.has(sb.boxMount)).toBe(true);
    expect(await readLockFile(sb)).toMatchObject({ pid: 111 });
    expect(io.reporter.lines.join('\n')).toContain('keeping the box mounted');
  });

  it('leaves a lock that is not ours alone', async () => {
    await upStack();
    await writeLock(sb, otherLock);
    await umount();
    expect(await readLockFile(sb)).toEqual(otherLock);
  });

  it('a leftover loop device of the image (a crash, by hand) is detached too', async () => {
    await upStack();
    m.world.mounts.delete(sb.mountPoint);
    await umount();
    expect(m.ran).toEqual(['losetup --detach /dev/loop0', `fusermount3 -u ${sb.boxMount}`]);
  });

  it('nothing mounted: nothing runs', async () => {
    await writeConfig(sb, makeConfig(sb));
    await umount();
    expect(m.ran).toEqual([]);
  });

  it('--dry-run prints every command it would run and runs none (golden, encrypted)', async () => {
    await upStack(encryptedConfig(sb));
    const io = testIo(m);
    await umount({ dryRun: true }, io);
    expect(m.ran).toEqual([]);
    expect(await readLockFile(sb)).toMatchObject({ pid: 111 });
    await expectGolden('umount-encrypted-dry-run.txt', io.reporter.lines, sb.root);
  });

  it('--dry-run of a plain stack (golden)', async () => {
    await upStack();
    const io = testIo(m);
    await umount({ dryRun: true }, io);
    expect(m.ran).toEqual([]);
    await expectGolden('umount-dry-run.txt', io.reporter.lines, sb.root);
  });
});

describe('hbs umount (carried over from the old lifecycle tests)', () => {
  it('detaches only the leftover loop devices of this image, not those of other files', async () => {
    await upStack();
    m.world.mounts.delete(sb.mountPoint);
    const other = m.attach('/srv/other.img');
    await umount();
    expect(m.ran).toEqual(['losetup --detach /dev/loop0', `fusermount3 -u ${sb.boxMount}`]);
    expect(m.world.loops.map((l) => l.name)).toEqual([other]);
  });

  it('busy with no holder in /proc (a kernel user): says so', async () => {
    await upStack();
    m.failNext(['umount', sb.mountPoint], { exitCode: 32, stderr: `umount: ${sb.mountPoint}: target is busy.` });
    const err = await rejection(umount());
    expect(err.message).toBe(`${sb.mountPoint} is busy; these processes hold it:\n  (none found in /proc: a kernel user such as a bind mount or NFS export)`);
  });

  it('an unmount that fails for another reason is an error with its message; --force does not make it lazy', async () => {
    await upStack();
    m.failNext(['umount', sb.mountPoint], { exitCode: 32, stderr: `umount: ${sb.mountPoint}: must be superuser to unmount.\n` });
    const err = await rejection(umount({ force: true }));
    expect(err.message).toBe(`unmounting ${sb.mountPoint} failed: umount: ${sb.mountPoint}: must be superuser to unmount.`);
    expect(m.ran).toEqual([`sync --file-system ${sb.mountPoint}`, `umount ${sb.mountPoint}`]);
    expect(m.world.mounts.has(sb.boxMount)).toBe(true);
  });

  it('only the box up: unmounts the box, releasing our lock', async () => {
    await upStack();
    m.world.mounts.delete(sb.mountPoint);
    m.world.loops = [];
    await umount();
    expect(m.ran).toEqual([`fusermount3 -u ${sb.boxMount}`]);
    expect(await readLockFile(sb)).toBeUndefined();
  });

  it('a broken stack: unmounts the filesystem, and the dead box lazily; the lock on it is not touched', async () => {
    await upStack();
    m.world.space.set(sb.boxMount, new Error('Transport endpoint is not connected'));
    m.world.sshfsPids.set(sb.boxMount, [4711]);
    m.failNext(['fusermount3'], { exitCode: 1, stderr: 'fusermount3: failed to unmount: Device or resource busy' });
    const io = testIo(m);
    await umount({}, io);
    expect(m.ran).toEqual([`sync --file-system ${sb.mountPoint}`, `umount ${sb.mountPoint}`, `fusermount3 -u ${sb.boxMount}`, 'kill -KILL 4711', `umount --lazy ${sb.boxMount}`]);
    expect(io.reporter.lines).toContain('  stop the hung sshfs process 4711');
    expect(m.world.mounts.size).toBe(0);
    expect(await readLockFile(sb)).toMatchObject({ pid: 111 });
  });

  it('a live box that fusermount3 cannot unmount: an error with its message and who holds it', async () => {
    await upStack();
    m.world.holders.set(sb.boxMount, [{ pid: 99, command: 'bash', via: 'cwd' }]);
    m.failNext(['fusermount3'], { exitCode: 1, stderr: `fusermount3: failed to unmount ${sb.boxMount}: Device or resource busy\n` });
    const err = await rejection(umount());
    expect(err.message).toBe(`${sb.boxMount} is busy: fusermount3: failed to unmount ${sb.boxMount}: Device or resource busy\n  pid 99 (cwd): bash`);
    expect(m.world.mounts.has(sb.boxMount)).toBe(true);
  });

  it('leaves a foreign filesystem at the mount point alone, still unmounting the box', async () => {
    await upStack();
    m.mountFs(sb.mountPoint, '/dev/sdb1');
    m.world.loops = [];
    const io = testIo(m);
    await umount({}, io);
    expect(io.reporter.lines).toContain(`! leaving ${sb.mountPoint} alone: ${sb.mountPoint} holds /dev/sdb1 (ext4), not ${sb.image}`);
    expect(m.ran).toEqual([`fusermount3 -u ${sb.boxMount}`]);
    expect(m.world.mounts.get(sb.mountPoint)?.source).toBe('/dev/sdb1');
  });

  it('leaves a foreign box mount alone', async () => {
    await writeConfig(sb, makeConfig(sb));
    m.world.mounts.set(sb.boxMount, { target: sb.boxMount, source: 'server:/export', fstype: 'nfs4', options: 'rw' });
    const io = testIo(m);
    await umount({}, io);
    expect(m.ran).toEqual([]);
    expect(io.reporter.lines).toContain(`! leaving ${sb.boxMount} alone: ${sb.boxMount} holds server:/export (nfs4), not u123456@u123456.your-storagebox.de:backup`);
  });

  it('without a config: a usage error', async () => {
    const err = await rejection(umount({ config: `${sb.root}/nope.json` }));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`no config at ${sb.root}/nope.json`);
  });
});
