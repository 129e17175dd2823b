/** Each layer of a stack as the probes show it (the fake machine answers them from its table). */
import { describe, expect, it } from 'vitest';
import { inspectBox, inspectCrypt, inspectFs, inspectStack, loopsOf, loopUnder, type BoxLayer } from '../../../src/lib/inspect.js';
import { stackFromConfig, type Stack } from '../../../src/lib/stack.js';
import { FakeMachine } from '../../support/fake-machine.js';
import { encryptedConfig, GiB, makeConfig, type Sandbox } from '../../support/sandbox.js';

/** Paths only: nothing here touches the file system. */
const sb = { root: '/t', boxMount: '/t/box', mountPoint: '/t/mnt', image: '/t/box/filesystem.img', configDir: '/t/etc/hbs', config: '/t/etc/hbs/config.json', sshKey: '/t/k', knownHosts: '/t/etc/hbs/known_hosts' } as Sandbox;
const plain = (over: Parameters<typeof makeConfig>[1] = {}): Stack => stackFromConfig(makeConfig(sb, over), sb.config);
const SOURCE = 'u123456@u123456.your-storagebox.de:backup';
const boxUp: BoxLayer = { state: 'up', detail: 'up', totalBytes: 100 * GiB, freeBytes: 50 * GiB };

function machine(): FakeMachine {
  return new FakeMachine();
}
const sshfsAt = (m: FakeMachine, source: string, fstype = 'fuse.sshfs'): void => {
  m.world.mounts.set(sb.boxMount, { target: sb.boxMount, source, fstype, options: 'rw' });
};

describe('inspectBox', () => {
  it('is down when nothing is mounted at the box mount', async () => {
    expect(await inspectBox(machine().probes, plain())).toEqual({ state: 'down', detail: `${sb.boxMount}: not mounted` });
  });

  it('is up with the figures, by the source hbs mounts it with now (fsname sshfs#…) and by the old one', async () => {
    for (const source of [`sshfs#${SOURCE}`, SOURCE]) {
      const m = machine();
      sshfsAt(m, source);
      m.world.space.set(sb.boxMount, { totalBytes: 100 * GiB, freeBytes: 50 * GiB });
      expect(await inspectBox(m.probes, plain())).toEqual({ state: 'up', detail: `${SOURCE} at ${sb.boxMount}`, totalBytes: 100 * GiB, freeBytes: 50 * GiB });
    }
  });

  it('is a conflict when another box or path is mounted there, or the right source with another fstype; a foreign mount is never asked for its space', async () => {
    for (const [source, fstype] of [
      ['sshfs#u999@elsewhere:backup', 'fuse.sshfs'],
      ['u123456@u123456.your-storagebox.de:elsewhere', 'fuse.sshfs'],
      [SOURCE, 'fuse.rclone'],
    ] as const) {
      const m = machine();
      sshfsAt(m, source, fstype);
      m.probes.space = () => Promise.reject(new Error('must not be asked'));
      expect(await inspectBox(m.probes, plain())).toEqual({ state: 'conflict', detail: `${sb.boxMount} holds ${source} (${fstype}), not ${SOURCE}` });
    }
  });

  it('is broken when the mount does not answer (a dead sshfs: ENOTCONN), naming the reason', async () => {
    const m = machine();
    sshfsAt(m, `sshfs#${SOURCE}`);
    m.world.space.set(sb.boxMount, new Error("stat: cannot read file system information for '/t/box': Transport endpoint is not connected"));
    const box = await inspectBox(m.probes, plain());
    expect(box).toEqual({ state: 'broken', detail: `${sb.boxMount} is mounted but does not answer (stat: cannot read file system information for '/t/box': Transport endpoint is not connected)` });
  });

  it('uses the home directory source (trailing colon) when the remote path is empty', async () => {
    const m = machine();
    sshfsAt(m, 'u1@h.example:');
    m.world.space.set(sb.boxMount, { totalBytes: 1, freeBytes: 1 });
    const stack = plain({ box: { user: 'u1', host: 'h.example', port: 23, remotePath: '' } });
    expect((await inspectBox(m.probes, stack)).detail).toBe(`u1@h.example: at ${sb.boxMount}`);
  });
});

describe('loopsOf', () => {
  it('lists only the loop devices backed by the image; not one whose path merely starts with it', async () => {
    const m = machine();
    m.attach('/var/lib/snapd/snaps/core.snap');
    const a = m.attach(sb.image);
    m.attach(`${sb.image}.old`);
    m.world.loops.push({ name: '/dev/loop9', backFile: null, directIo: false });
    expect(await loopsOf(m.probes, sb.image)).toEqual([a]);
  });
});

describe('inspectFs', () => {
  it('is down when nothing is mounted at the mount point', async () => {
    expect(await inspectFs(machine().probes, plain(), boxUp)).toEqual({ state: 'down', detail: `${sb.mountPoint}: not mounted` });
  });

  it('is up when the image is mounted there through a loop device, readable and writable', async () => {
    const m = machine();
    const loop = m.attach(sb.image);
    m.mountFs(sb.mountPoint, loop, 'rw,errors=remount-ro');
    const fs = await inspectFs(m.probes, plain(), boxUp);
    expect(fs).toMatchObject({ state: 'up', device: loop, readOnly: false, detail: `${sb.image} at ${sb.mountPoint} (${loop})` });
  });

  it('is a conflict when another file, a device, or a loop device without a file is mounted there; nothing is read from it', async () => {
    const m = machine();
    m.probes.readsBack = () => Promise.reject(new Error('must not read a filesystem that is not ours'));
    const other = m.attach('/srv/other.img');
    m.mountFs(sb.mountPoint, other);
    expect(await inspectFs(m.probes, plain(), boxUp)).toMatchObject({ state: 'conflict', detail: `${sb.mountPoint} holds /srv/other.img (ext4), not ${sb.image}` });
    m.world.mounts.set(sb.mountPoint, { target: sb.mountPoint, source: '/dev/sdb1', fstype: 'xfs', options: 'rw' });
    expect(await inspectFs(m.probes, plain(), boxUp)).toMatchObject({ state: 'conflict', detail: `${sb.mountPoint} holds /dev/sdb1 (xfs), not ${sb.image}` });
    m.world.loops.push({ name: '/dev/loop7', backFile: null, directIo: false });
    m.mountFs(sb.mountPoint, '/dev/loop7');
    expect((await inspectFs(m.probes, plain(), boxUp)).detail).toBe(`${sb.mountPoint} holds /dev/loop7 (ext4), not ${sb.image}`);
  });

  it('is broken, without reading, when the box under it is not up', async () => {
    for (const state of ['broken', 'down'] as const) {
      const m = machine();
      m.probes.readsBack = () => Promise.reject(new Error('must not read through a dead box'));
      const loop = m.attach(sb.image);
      m.mountFs(sb.mountPoint, loop);
      expect(await inspectFs(m.probes, plain(), { state, detail: 'x' })).toMatchObject({ state: 'broken', device: loop, readOnly: false, detail: `mounted from ${loop}, but the box under it is ${state}` });
    }
  });

  it('is broken when a direct read fails, or when ext4 remounted it read-only', async () => {
    const m = machine();
    const loop = m.attach(sb.image);
    m.mountFs(sb.mountPoint, loop);
    m.world.unreadable.add(loop);
    expect(await inspectFs(m.probes, plain(), boxUp)).toMatchObject({ state: 'broken', detail: `reading ${loop} fails: Input/output error` });
    m.world.unreadable.clear();
    m.mountFs(sb.mountPoint, loop, 'ro,nodev,noatime');
    expect(await inspectFs(m.probes, plain(), boxUp)).toMatchObject({ state: 'broken', readOnly: true, detail: `${sb.mountPoint} went read-only (ext4 saw I/O errors)` });
  });

  it('encrypted: the mapping mounted there is ours when it is open on the image', async () => {
    const m = machine();
    const stack = stackFromConfig(encryptedConfig(sb), sb.config);
    m.openMapping('hbs-filesystem', sb.image);
    m.mountFs(sb.mountPoint, '/dev/mapper/hbs-filesystem');
    expect(await inspectFs(m.probes, stack, boxUp)).toMatchObject({ state: 'up', device: '/dev/mapper/hbs-filesystem' });
    m.world.mappings.set('hbs-filesystem', { loop: '/dev/loop5', backing: '/srv/other.img' });
    expect(await inspectFs(m.probes, stack, boxUp)).toMatchObject({ state: 'conflict', detail: `${sb.mountPoint} holds /srv/other.img (ext4), not ${sb.image}` });
  });
});

describe('inspectCrypt', () => {
  it('closed, open on this image, or open on something else; undefined for a plain stack', async () => {
    const m = machine();
    const stack = stackFromConfig(encryptedConfig(sb), sb.config);
    expect(await inspectCrypt(m.probes, plain())).toBeUndefined();
    expect(await inspectCrypt(m.probes, stack)).toEqual({ state: 'closed', detail: '/dev/mapper/hbs-filesystem: closed' });
    const loop = m.openMapping('hbs-filesystem', sb.image);
    expect(await inspectCrypt(m.probes, stack)).toMatchObject({ state: 'open', detail: `/dev/mapper/hbs-filesystem open (aes-xts-plain64 on ${loop})` });
    m.world.mappings.set('hbs-filesystem', { loop: '/dev/loop5', backing: '/srv/other.img' });
    expect(await inspectCrypt(m.probes, stack)).toMatchObject({ state: 'conflict', detail: '/dev/mapper/hbs-filesystem is open on /srv/other.img, not /t/box/filesystem.img' });
  });
});

describe('inspectStack', () => {
  it('does not list loop devices when the box is down; lists them when it is mounted, even broken', async () => {
    const m = machine();
    const loop = m.attach(sb.image);
    m.mountFs(sb.mountPoint, loop);
    const down = await inspectStack(m.probes, plain());
    expect([down.box.state, down.loops, down.fs.state]).toEqual(['down', [], 'broken']);
    sshfsAt(m, `sshfs#${SOURCE}`);
    m.world.space.set(sb.boxMount, new Error('Transport endpoint is not connected'));
    const broken = await inspectStack(m.probes, plain());
    expect([broken.box.state, broken.loops, broken.fs.state]).toEqual(['broken', [loop], 'broken']);
  });
});

describe('loopUnder', () => {
  it('the loop device itself, the one under the mapping, or none under anything else', async () => {
    const m = machine();
    const stack = stackFromConfig(encryptedConfig(sb), sb.config);
    expect(await loopUnder(m.probes, plain(), '/dev/loop4')).toBe('/dev/loop4');
    const loop = m.openMapping('hbs-filesystem', sb.image);
    expect(await loopUnder(m.probes, stack, '/dev/mapper/hbs-filesystem')).toBe(loop);
    expect(await loopUnder(m.probes, stack, '/dev/sdb1')).toBeUndefined();
    expect(await loopUnder(m.probes, plain(), '/dev/mapper/hbs-filesystem')).toBeUndefined();
  });
});
