import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { inspectBox, inspectFs, inspectStack, loopsFor, type BoxLayer } from '../../../src/lifecycle/stack.js';
import {
  backing,
  boxMounted,
  dd,
  findmnt,
  GiB,
  LOOP,
  loopList,
  loopMounted,
  makeConfig,
  makeSandbox,
  statFs,
  statFsDead,
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

const boxUp = (): BoxLayer => ({ state: 'up', detail: 'up', totalBytes: 100 * GiB, freeBytes: 50 * GiB });

describe('inspectBox', () => {
  it('is down when nothing is mounted at the box mount', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount)]);
    expect(await inspectBox(runner, makeConfig(sb))).toEqual({ state: 'down', detail: `${sb.boxMount}: not mounted` });
    runner.assertDone();
  });

  it('is a conflict when another source is mounted there with sshfs', async () => {
    const other = 'u123456@u123456.your-storagebox.de:elsewhere';
    const runner = new RecordingRunner([findmnt(sb.boxMount, { ...boxMounted, source: other })]);
    expect(await inspectBox(runner, makeConfig(sb))).toEqual({
      state: 'conflict',
      detail: `${sb.boxMount} holds ${other} (fuse.sshfs), not ${SSHFS_SOURCE}`,
    });
    runner.assertDone(); // no stat: a foreign mount is never probed
  });

  it('is a conflict when the right source string is mounted with another fstype', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount, { source: SSHFS_SOURCE, fstype: 'fuse.rclone' })]);
    const box = await inspectBox(runner, makeConfig(sb));
    expect(box.state).toBe('conflict');
    expect(box.detail).toBe(`${sb.boxMount} holds ${SSHFS_SOURCE} (fuse.rclone), not ${SSHFS_SOURCE}`);
    runner.assertDone();
  });

  it('goes by the top of stacked mounts', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount, { source: 'tmpfs', fstype: 'tmpfs' }, boxMounted), statFs(sb.boxMount)]);
    expect((await inspectBox(runner, makeConfig(sb))).state).toBe('up');
    runner.assertDone();
  });

  it('is broken when stat -f fails on the mount (dead sshfs: ENOTCONN), naming the reason', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount, boxMounted), statFsDead(sb.boxMount)]);
    const box = await inspectBox(runner, makeConfig(sb));
    expect(box.state).toBe('broken');
    expect(box.detail).toBe(
      `${sb.boxMount} is mounted but does not answer (stat: cannot read file system information for '${sb.boxMount}': Transport endpoint is not connected)`,
    );
    expect(box.totalBytes).toBeUndefined();
    runner.assertDone();
  });

  it('is broken when stat -f prints something that is not three numbers', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount, boxMounted), statFs(sb.boxMount, '4096 ?\n')]);
    const box = await inspectBox(runner, makeConfig(sb));
    expect(box).toEqual({ state: 'broken', detail: `${sb.boxMount} is mounted but does not answer (cannot read the free space of ${sb.boxMount}: 4096 ?)` });
  });

  it('is up with the figures from stat -f (fragment size × blocks)', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount, boxMounted), statFs(sb.boxMount, '4096 26214400 13107200\n')]);
    expect(await inspectBox(runner, makeConfig(sb))).toEqual({
      state: 'up',
      detail: `${SSHFS_SOURCE} at ${sb.boxMount}`,
      totalBytes: 100 * GiB,
      freeBytes: 50 * GiB,
    });
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
  });

  it('uses the home directory source (trailing colon) when remotePath is empty', async () => {
    const cfg = makeConfig(sb, { box: { user: 'u1', host: 'h.example', port: 23, remotePath: '' } });
    const runner = new RecordingRunner([findmnt(sb.boxMount, { ...boxMounted, source: 'u1@h.example:' }), statFs(sb.boxMount)]);
    expect((await inspectBox(runner, cfg)).detail).toBe(`u1@h.example: at ${sb.boxMount}`);
  });

  it('knows the box by the source hbs mounts it with now (fsname sshfs#…, as fstab says), and by the old one', async () => {
    const now = new RecordingRunner([findmnt(sb.boxMount, { ...boxMounted, source: `sshfs#${SSHFS_SOURCE}` }), statFs(sb.boxMount)]);
    expect((await inspectBox(now, makeConfig(sb))).state).toBe('up');
    const other = new RecordingRunner([findmnt(sb.boxMount, { ...boxMounted, source: 'sshfs#u999@elsewhere:backup' })]);
    expect((await inspectBox(other, makeConfig(sb))).state).toBe('conflict');
  });
});

describe('loopsFor', () => {
  it('lists only the loop devices backed by the image, also a deleted one', async () => {
    const runner = new RecordingRunner([
      loopList(['/dev/loop0', '/var/lib/snapd/snaps/core.snap'], ['/dev/loop3', sb.image], ['/dev/loop4', null], ['/dev/loop7', `${sb.image} (deleted)`]),
    ]);
    expect(await loopsFor(runner, sb.image)).toEqual(['/dev/loop3', '/dev/loop7']);
    runner.assertDone();
  });

  it('is empty when losetup prints nothing or fails', async () => {
    const runner = new RecordingRunner([loopList(), { ...loopList(), exitCode: 1, stdout: '' }]);
    expect(await loopsFor(runner, sb.image)).toEqual([]);
    expect(await loopsFor(runner, sb.image)).toEqual([]);
    runner.assertDone();
  });

  it('does not mistake an image whose path merely starts with ours', async () => {
    const runner = new RecordingRunner([loopList(['/dev/loop1', `${sb.image}.old`])]);
    expect(await loopsFor(runner, sb.image)).toEqual([]);
  });
});

describe('inspectFs', () => {
  it('is down when nothing is mounted at the mount point', async () => {
    const runner = new RecordingRunner([findmnt(sb.mountPoint)]);
    expect(await inspectFs(runner, makeConfig(sb), boxUp())).toEqual({ state: 'down', detail: `${sb.mountPoint}: not mounted` });
    runner.assertDone();
  });

  it('is a conflict when another loop file is mounted there', async () => {
    const other = '/srv/other.img';
    const runner = new RecordingRunner([findmnt(sb.mountPoint, loopMounted('/dev/loop5')), backing('/dev/loop5', other)]);
    expect(await inspectFs(runner, makeConfig(sb), boxUp())).toEqual({
      state: 'conflict',
      detail: `${sb.mountPoint} holds ${other} (ext4), not ${sb.image}`,
    });
    runner.assertDone(); // no dd on a filesystem that is not ours
  });

  it('is a conflict when a non-loop device is mounted there, without asking losetup', async () => {
    const runner = new RecordingRunner([findmnt(sb.mountPoint, { source: '/dev/sdb1', fstype: 'xfs' })]);
    expect(await inspectFs(runner, makeConfig(sb), boxUp())).toEqual({
      state: 'conflict',
      detail: `${sb.mountPoint} holds /dev/sdb1 (xfs), not ${sb.image}`,
    });
    runner.assertDone();
  });

  it('is a conflict when the loop device has no backing file any more', async () => {
    const runner = new RecordingRunner([findmnt(sb.mountPoint, loopMounted()), backing(LOOP, undefined)]);
    expect((await inspectFs(runner, makeConfig(sb), boxUp())).detail).toBe(`${sb.mountPoint} holds ${LOOP} (ext4), not ${sb.image}`);
  });

  it('is broken, without reading, when the box under it is not up', async () => {
    for (const state of ['broken', 'down'] as const) {
      const runner = new RecordingRunner([findmnt(sb.mountPoint, loopMounted()), backing(LOOP, sb.image)]);
      expect(await inspectFs(runner, makeConfig(sb), { state, detail: 'x' })).toEqual({
        state: 'broken',
        device: LOOP,
        readOnly: false,
        detail: `mounted from ${LOOP}, but the box under it is ${state}`,
      });
      runner.assertDone();
    }
  });

  it('is broken when a direct read of the loop device fails', async () => {
    const runner = new RecordingRunner([
      findmnt(sb.mountPoint, loopMounted()),
      backing(LOOP, `${sb.image} (deleted)`),
      dd(LOOP, 1, `dd: error reading '${LOOP}': Input/output error\n`),
    ]);
    expect(await inspectFs(runner, makeConfig(sb), boxUp())).toEqual({
      state: 'broken',
      device: LOOP,
      readOnly: false,
      detail: `reading ${LOOP} fails: dd: error reading '${LOOP}': Input/output error`,
    });
    runner.assertDone();
  });

  it('says timeout when the read fails without a message', async () => {
    const runner = new RecordingRunner([findmnt(sb.mountPoint, loopMounted()), backing(LOOP, sb.image), dd(LOOP, 124)]);
    expect((await inspectFs(runner, makeConfig(sb), boxUp())).detail).toBe(`reading ${LOOP} fails: timeout`);
  });

  it('is broken when ext4 remounted it read-only', async () => {
    const runner = new RecordingRunner([findmnt(sb.mountPoint, loopMounted(LOOP, 'ro,nodev,noatime')), backing(LOOP, sb.image), dd(LOOP)]);
    expect(await inspectFs(runner, makeConfig(sb), boxUp())).toEqual({
      state: 'broken',
      device: LOOP,
      readOnly: true,
      detail: `${sb.mountPoint} went read-only (ext4 saw I/O errors)`,
    });
    runner.assertDone();
  });

  it('does not mistake an option merely containing "ro" for read-only', async () => {
    const runner = new RecordingRunner([findmnt(sb.mountPoint, loopMounted(LOOP, 'rw,errors=remount-ro')), backing(LOOP, sb.image), dd(LOOP)]);
    expect((await inspectFs(runner, makeConfig(sb), boxUp())).state).toBe('up');
  });

  it('is up when the image is mounted there, readable and writable', async () => {
    const runner = new RecordingRunner([findmnt(sb.mountPoint, loopMounted()), backing(LOOP, sb.image), dd(LOOP)]);
    expect(await inspectFs(runner, makeConfig(sb), boxUp())).toEqual({
      state: 'up',
      device: LOOP,
      readOnly: false,
      detail: `${sb.image} at ${sb.mountPoint} (${LOOP})`,
    });
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
  });
});

describe('inspectStack', () => {
  it('does not list loop devices when the box is down', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount), findmnt(sb.mountPoint)]);
    const s = await inspectStack(runner, makeConfig(sb));
    expect([s.box.state, s.loops, s.fs.state]).toEqual(['down', [], 'down']);
    runner.assertDone();
  });

  it('lists the loop devices of the image when the box is mounted, even broken', async () => {
    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFsDead(sb.boxMount),
      loopList([LOOP, sb.image]),
      findmnt(sb.mountPoint, loopMounted()),
      backing(LOOP, sb.image),
    ]);
    const s = await inspectStack(runner, makeConfig(sb));
    expect([s.box.state, s.loops, s.fs.state]).toEqual(['broken', [LOOP], 'broken']);
    runner.assertDone();
  });
});
