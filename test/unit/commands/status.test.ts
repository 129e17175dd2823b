import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { statusCommand } from '../../../src/commands/status.js';
import { lastBackupPath } from '../../../src/lib/backup.js';
import { formatBlock } from '../../../src/core/block.js';
import type { Config } from '../../../src/lib/config.js';
import type { StatusReport } from '../../../src/lib/status-report.js';
import { renderStatus } from '../../../src/ui/status-view.js';
import { BOX_SPACE, FakeMachine } from '../../support/fake-machine.js';
import {
  BOX_SOURCE,
  encryptedConfig,
  GiB,
  makeConfig,
  makeSandbox,
  otherLock,
  ourLock,
  PASSPHRASE,
  putOnBox,
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

const SOURCE = 'u123456@u123456.your-storagebox.de:backup';
/** What the fake machine's df says of any mounted filesystem. */
const DF = { sizeBytes: 10 * GiB, usedBytes: GiB, freeBytes: 9 * GiB };

const status = () => statusCommand({ config: sb.config }, testIo(m));

/** A plain stack up, as `hbs mount` leaves it: our lock, the box readahead raised, the loop device buffered. */
async function upStack(cfg: Config = makeConfig(sb), o: { directIo?: boolean } = {}): Promise<void> {
  await writeConfig(sb, cfg);
  await putOnBox(sb, 'filesystem.img');
  await m.mountBox(sb.boxMount, BOX_SOURCE);
  await writeFile(`${sb.boxHome}.bdi-read_ahead_kb`, '4096\n');
  await writeLock(sb, ourLock(sb));
  m.fileSize(sb.image, 10 * GiB, 0);
  m.world.remoteAllocated = GiB;
  if (cfg.encryption) {
    m.luksImage(sb.image, [PASSPHRASE]);
    m.openMapping('hbs-filesystem', sb.image, { directIo: o.directIo ?? false });
    m.mountFs(sb.mountPoint, '/dev/mapper/hbs-filesystem');
  } else {
    m.ext4(sb.image, UUID);
    m.mountFs(sb.mountPoint, m.attach(sb.image, { directIo: o.directIo ?? false }));
  }
}

/** The fstab with the stack's block (and a line of the system's own). */
async function fstabWithBlock(): Promise<void> {
  await writeFile(sb.fstab, `UUID=1234 / ext4 defaults 0 1\n${formatBlock(sb.config, [`sshfs#${SOURCE} ${sb.boxMount} fuse.sshfs reconnect,nofail 0 0`, `${sb.image} ${sb.mountPoint} ext4 loop,noatime,nofail 0 0`])}`);
}

function keyPaths(value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [prefix];
  return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => keyPaths(v, prefix ? `${prefix}.${k}` : k));
}

const NO_LOCK = { hostname: null, machineId: null, pid: null, time: null };

describe('hbs status', () => {
  it('a healthy stack: every figure, fstab verified, our lock; nothing is changed', async () => {
    await upStack(makeConfig(sb, { fstab: sb.fstab }));
    await fstabWithBlock();
    const verified: string[] = [];
    const verify = m.probes.verifyTab;
    m.probes.verifyTab = (t) => (verified.push(t), verify(t));
    const report = await status();
    expect(report).toEqual({
      config: sb.config,
      healthy: true,
      box: {
        state: 'up',
        detail: `${SOURCE} at ${sb.boxMount}`,
        reachable: true,
        mountPoint: sb.boxMount,
        source: SOURCE,
        totalBytes: BOX_SPACE.totalBytes,
        usedBytes: BOX_SPACE.totalBytes - BOX_SPACE.freeBytes,
        freeBytes: BOX_SPACE.freeBytes,
        readAheadKb: 4096,
      },
      image: { path: sb.image, exists: true, sizeBytes: 10 * GiB, allocatedBytes: GiB, loopDevices: ['/dev/loop0'] },
      filesystem: {
        state: 'up',
        detail: `${sb.image} at ${sb.mountPoint} (/dev/loop0)`,
        mountPoint: sb.mountPoint,
        device: '/dev/loop0',
        uuid: UUID,
        ...DF,
        loopDirectIo: false,
        readOnly: false,
        errors: { count: 0, kernel: { lines: 0, first: null, last: null }, first: null, last: null, cause: null },
      },
      // The image may still grow by what ext4 has free, and no more than its unallocated part: the box holds that.
      space: { boxFreeBytes: BOX_SPACE.freeBytes, filesystemFreeBytes: DF.freeBytes, imageUnallocatedBytes: 9 * GiB, mayStillNeedBytes: Math.min(DF.freeBytes, 9 * GiB), shortBytes: 0, ok: true },
      fstab: { state: 'ok', path: sb.fstab, detail: `${sb.fstab} has the hbs block (findmnt --verify: ok)` },
      lock: { state: 'ours', hostname: 'testhost', machineId: '0f1e2d3c4b5a69788796a5b4c3d2e1f0', pid: 111, time: '2024-12-31T23:00:00.000Z' },
      encryption: null,
      boot: { state: 'fstab', unit: null, path: null },
      lastBackup: null,
    } satisfies StatusReport);
    // findmnt --verify sees only the block's lines, not the rest of the system's fstab.
    expect(verified).toEqual([`sshfs#${SOURCE} ${sb.boxMount} fuse.sshfs reconnect,nofail 0 0\n${sb.image} ${sb.mountPoint} ext4 loop,noatime,nofail 0 0\n`]);
    expect(m.ran).toEqual([]);
  });

  it('shows the last backup from the record next to the config (it does not count for healthy)', async () => {
    await upStack();
    expect((await status()).lastBackup).toBeNull();
    expect(renderStatus(await status(), false)).toMatch(/^backup +none +no `hbs backup` run recorded yet$/m);
    const rec = { time: '2026-12-02T18:30:00.000Z', result: 'failed', snapshot: null, exitCode: 1, message: 'rsync failed (exit 11)', durationMs: 10, files: null, bytesTransferred: null };
    await writeFile(lastBackupPath(sb.config), JSON.stringify(rec));
    const r = await status();
    expect(r.lastBackup).toEqual(rec);
    expect(r.healthy).toBe(true);
    expect(renderStatus(r, false)).toMatch(/^backup +failed +last run 2026-12-02T18:30:00.000Z — rsync failed \(exit 11\)$/m);
    await writeFile(lastBackupPath(sb.config), JSON.stringify({ ...rec, result: 'ok', snapshot: '2026-12-02T183000Z', message: null }));
    expect(renderStatus(await status(), false)).toMatch(/^backup +ok +last run 2026-12-02T18:30:00.000Z: snapshot 2026-12-02T183000Z$/m);
  });

  it('keeps the JSON keys stable; a down report has the very same keys (nulls, not missing keys)', async () => {
    await upStack();
    const report = await status();
    expect(Object.keys(report)).toEqual(['config', 'healthy', 'box', 'image', 'filesystem', 'space', 'fstab', 'lock', 'encryption', 'boot', 'lastBackup']);
    expect(keyPaths(report)).toEqual([
      'config',
      'healthy',
      'box.state',
      'box.detail',
      'box.reachable',
      'box.mountPoint',
      'box.source',
      'box.totalBytes',
      'box.usedBytes',
      'box.freeBytes',
      'box.readAheadKb',
      'image.path',
      'image.exists',
      'image.sizeBytes',
      'image.allocatedBytes',
      'image.loopDevices',
      'filesystem.state',
      'filesystem.detail',
      'filesystem.mountPoint',
      'filesystem.device',
      'filesystem.uuid',
      'filesystem.sizeBytes',
      'filesystem.usedBytes',
      'filesystem.freeBytes',
      'filesystem.loopDirectIo',
      'filesystem.readOnly',
      'filesystem.errors.count',
      'filesystem.errors.kernel.lines',
      'filesystem.errors.kernel.first',
      'filesystem.errors.kernel.last',
      'filesystem.errors.first',
      'filesystem.errors.last',
      'filesystem.errors.cause',
      'space.boxFreeBytes',
      'space.filesystemFreeBytes',
      'space.imageUnallocatedBytes',
      'space.mayStillNeedBytes',
      'space.shortBytes',
      'space.ok',
      'fstab.state',
      'fstab.path',
      'fstab.detail',
      'lock.state',
      'lock.hostname',
      'lock.machineId',
      'lock.pid',
      'lock.time',
      'encryption',
      'boot.state',
      'boot.unit',
      'boot.path',
      'lastBackup',
    ]);
    // Down, the parts that need the stack up are null — there, not missing.
    const down = new FakeMachine();
    const collapse = (paths: string[]): string[] => [...new Set(paths.map((k) => k.replace(/^(space|filesystem\.errors)\..*$/, '$1')))];
    expect(keyPaths(await statusCommand({ config: sb.config }, testIo(down)))).toEqual(collapse(keyPaths(report)));
  });

  it('everything down: not healthy, reachable from the key login over SFTP, nothing else asked of the box', async () => {
    await writeConfig(sb, makeConfig(sb));
    const asked: string[] = [];
    for (const k of ['file', 'remoteAllocated', 'usage', 'loops'] as const) {
      const real = m.probes[k] as (...a: unknown[]) => Promise<unknown>;
      (m.probes as unknown as Record<string, unknown>)[k] = (...a: unknown[]) => (asked.push(k), real(...a));
    }
    const report = await status();
    expect(asked).toEqual([]);
    expect(report).toEqual({
      config: sb.config,
      healthy: false,
      box: { state: 'down', detail: `${sb.boxMount}: not mounted`, reachable: true, mountPoint: sb.boxMount, source: SOURCE, totalBytes: null, usedBytes: null, freeBytes: null, readAheadKb: null },
      image: { path: sb.image, exists: false, sizeBytes: null, allocatedBytes: null, loopDevices: [] },
      filesystem: {
        state: 'down',
        detail: `${sb.mountPoint}: not mounted`,
        mountPoint: sb.mountPoint,
        device: null,
        uuid: UUID,
        sizeBytes: null,
        usedBytes: null,
        freeBytes: null,
        loopDirectIo: null,
        readOnly: null,
        errors: null,
      },
      space: null,
      fstab: { state: 'disabled', path: null, detail: 'no fstab entries (--no-fstab)' },
      lock: { state: 'unknown', ...NO_LOCK },
      encryption: null,
      boot: { state: 'fstab', unit: null, path: null },
      lastBackup: null,
    } satisfies StatusReport);
  });

  it('a box that cannot be reached over SFTP either', async () => {
    await writeConfig(sb, makeConfig(sb));
    m.world.keyLogin = false;
    const report = await status();
    expect(report.box.reachable).toBe(false);
    expect(report.healthy).toBe(false);
  });

  it('a broken stack (the box does not answer): not healthy, lock unknown, the loop devices listed', async () => {
    await upStack();
    m.world.space.set(sb.boxMount, new Error('Transport endpoint is not connected'));
    const report = await status();
    expect([report.healthy, report.box.state, report.filesystem.state, report.lock.state]).toEqual([false, 'broken', 'broken', 'unknown']);
    expect(report.box.detail).toBe(`${sb.boxMount} is mounted but does not answer (Transport endpoint is not connected)`);
    expect(report.box.reachable).toBe(true);
    expect(report.image.loopDevices).toEqual(['/dev/loop0']);
    expect(report.filesystem.device).toBe('/dev/loop0');
    expect(report.image.exists).toBe(false);
    expect([report.filesystem.sizeBytes, report.filesystem.loopDirectIo]).toEqual([null, null]);
  });

  it('a filesystem that cannot be read, or went read-only: broken', async () => {
    await upStack();
    m.world.unreadable.add('/dev/loop0');
    expect((await status()).filesystem).toMatchObject({ state: 'broken', detail: 'reading /dev/loop0 fails: Input/output error' });
    m.world.unreadable.clear();
    m.mountFs(sb.mountPoint, '/dev/loop0', 'ro,noatime');
    const report = await status();
    expect(report.filesystem).toMatchObject({ state: 'broken', detail: `${sb.mountPoint} went read-only (ext4 saw I/O errors)` });
    expect(report.healthy).toBe(false);
  });

  it('conflicts: another filesystem at the mount point, another source at the box mount', async () => {
    await upStack();
    m.mountFs(sb.mountPoint, '/dev/sdb1');
    const fs = await status();
    expect(fs.filesystem).toMatchObject({ state: 'conflict', detail: `${sb.mountPoint} holds /dev/sdb1 (ext4), not ${sb.image}` });
    expect(fs.healthy).toBe(false);
    m.world.mounts.set(sb.boxMount, { target: sb.boxMount, source: 'server:/export', fstype: 'nfs4', options: 'rw' });
    const box = await status();
    expect(box.box).toMatchObject({ state: 'conflict', detail: `${sb.boxMount} holds server:/export (nfs4), not ${SOURCE}` });
    expect(box.healthy).toBe(false);
  });

  it("another machine's lock makes it unhealthy, and names that machine", async () => {
    await upStack();
    await writeLock(sb, otherLock);
    const report = await status();
    expect(report.healthy).toBe(false);
    expect(report.lock).toEqual({ state: 'other', hostname: 'other-host', machineId: otherLock.machineId, pid: 4242, time: otherLock.time });
  });

  it('a free or unreadable lock is reported without a holder, and is unhealthy', async () => {
    await upStack();
    await writeFile(sb.lock, '{');
    const garbage = await status();
    expect(garbage.lock).toEqual({ state: 'unreadable', ...NO_LOCK });
    expect(garbage.healthy).toBe(false);
    await rm(sb.lock);
    const free = await status();
    expect(free.lock).toEqual({ state: 'free', ...NO_LOCK });
    expect(free.healthy).toBe(false);
  });

  it('fstab: missing file, missing block, and a block findmnt --verify rejects; disabled is healthy', async () => {
    await upStack(makeConfig(sb, { fstab: sb.fstab }));
    const missing = await status();
    expect(missing.fstab).toEqual({ state: 'missing', path: sb.fstab, detail: `${sb.fstab} cannot be read` });
    expect(missing.healthy).toBe(false);

    await writeFile(sb.fstab, 'UUID=1234 / ext4 defaults 0 1\n');
    const noBlock = await status();
    expect(noBlock.fstab).toEqual({ state: 'missing', path: sb.fstab, detail: `${sb.fstab} has no hbs block for ${sb.config}` });
    expect(noBlock.healthy).toBe(false);

    await fstabWithBlock();
    m.world.verifyErrors = 1;
    const invalid = await status();
    expect(invalid.fstab).toEqual({ state: 'invalid', path: sb.fstab, detail: 'findmnt --verify: 0 parse errors, 1 errors' });
    expect(invalid.healthy).toBe(false);

    m.world.verifyErrors = 0;
    expect((await status()).healthy).toBe(true);
    await writeConfig(sb, makeConfig(sb, { fstab: null }));
    expect((await status()).healthy).toBe(true);
  });

  it('unknown figures stay null and are no sickness: no du over ssh (port 22 has no shell), df failing', async () => {
    await upStack();
    m.world.remoteAllocated = undefined;
    m.probes.usage = () => Promise.resolve(undefined);
    const report = await status();
    expect(report.image.allocatedBytes).toBeNull();
    expect([report.filesystem.sizeBytes, report.filesystem.usedBytes, report.filesystem.freeBytes]).toEqual([null, null, null]);
    expect(report.healthy).toBe(true);
  });

  it('a loop device on direct I/O (an older hbs) and a box at the default readahead (fstab at boot) are reported, and are no sickness', async () => {
    await upStack(makeConfig(sb), { directIo: true });
    await writeFile(`${sb.boxHome}.bdi-read_ahead_kb`, '128\n');
    const report = await status();
    expect(report.filesystem.loopDirectIo).toBe(true);
    expect(report.box.readAheadKb).toBe(128);
    expect(report.healthy).toBe(true);
  });
});

describe('hbs status, encrypted', () => {
  const HEADER = (): string => join(sb.configDir, 'hbs-filesystem.luks-header');

  it('open, header backed up: healthy; the encryption block names cipher, key slots, header backup, unattended key, crypttab', async () => {
    const base = encryptedConfig(sb, { unattended: true });
    await upStack({ ...base, encryption: { ...base.encryption!, crypttab: sb.crypttab } });
    await mkdir(sb.configDir, { recursive: true });
    await writeFile(HEADER(), 'header');
    await writeFile(sb.crypttab, formatBlock(sb.config, [`hbs-filesystem ${sb.image} ${join(sb.configDir, 'hbs-filesystem.key')} luks,_netdev,nofail,headless=true`]));
    const report = await status();
    expect(report.encryption).toEqual({
      state: 'open',
      detail: '/dev/mapper/hbs-filesystem open (aes-xts-plain64 on /dev/loop0)',
      device: '/dev/mapper/hbs-filesystem',
      cipher: 'aes-xts-plain64',
      keySlots: ['0'],
      headerBackup: { path: HEADER(), present: true },
      unattendedKeyFile: join(sb.configDir, 'hbs-filesystem.key'),
      crypttab: { path: sb.crypttab, present: true },
    });
    expect(report.filesystem).toMatchObject({ state: 'up', device: '/dev/mapper/hbs-filesystem', loopDirectIo: false });
    expect(report.image.loopDevices).toEqual(['/dev/loop0']);
    expect(report.healthy).toBe(true);
    expect(m.ran).toEqual([]);

    // Without its crypttab line, or without the header backup, it is not.
    await writeFile(sb.crypttab, '# nothing here\n');
    expect((await status()).encryption?.crypttab).toEqual({ path: sb.crypttab, present: false });
    expect((await status()).healthy).toBe(false);
  });

  it('a missing header backup makes it unhealthy; no crypttab configured is fine', async () => {
    await upStack(encryptedConfig(sb));
    const report = await status();
    expect(report.encryption).toMatchObject({ state: 'open', headerBackup: { path: HEADER(), present: false }, unattendedKeyFile: null, crypttab: null });
    expect(report.healthy).toBe(false);
    await mkdir(sb.configDir, { recursive: true });
    await writeFile(HEADER(), 'header');
    expect((await status()).healthy).toBe(true);
  });

  it('closed, or open on another image: unhealthy, said so', async () => {
    await upStack(encryptedConfig(sb));
    await writeFile(HEADER(), 'header');
    m.world.mounts.delete(sb.mountPoint);
    m.world.mappings.set('hbs-filesystem', { loop: '/dev/loop7', backing: '/srv/other.img', cipher: 'aes-xts-plain64' });
    const conflict = await status();
    expect(conflict.encryption).toMatchObject({ state: 'conflict', detail: '/dev/mapper/hbs-filesystem is open on /srv/other.img, not ' + sb.image });
    expect(conflict.healthy).toBe(false);
    m.world.mappings.clear();
    const closed = await status();
    expect(closed.encryption).toMatchObject({ state: 'closed', detail: '/dev/mapper/hbs-filesystem: closed', cipher: 'aes-xts-plain64', keySlots: ['0'] });
    expect(closed.healthy).toBe(false);
  });

  it('the box down: the header cannot be read (key slots null), the mapping may still say its cipher', async () => {
    await writeConfig(sb, encryptedConfig(sb));
    const report = await status();
    expect(report.encryption).toMatchObject({ state: 'closed', cipher: null, keySlots: null });
  });
});

describe('renderStatus', () => {
  const LOOP = '/dev/loop3';
  const healthy = (): StatusReport => ({
    config: '/etc/hbs/config.json',
    healthy: true,
    box: { state: 'up', detail: `${SOURCE} at /mnt/box`, reachable: true, mountPoint: '/mnt/box', source: SOURCE, totalBytes: 100 * GiB, usedBytes: 50 * GiB, freeBytes: 50 * GiB, readAheadKb: 4096 },
    image: { path: '/mnt/box/filesystem.img', exists: true, sizeBytes: 10 * GiB, allocatedBytes: 1.5 * GiB, loopDevices: [LOOP] },
    filesystem: {
      state: 'up',
      detail: `/mnt/box/filesystem.img at /srv/backup (${LOOP})`,
      mountPoint: '/srv/backup',
      device: LOOP,
      uuid: UUID,
      sizeBytes: 10 * GiB,
      usedBytes: GiB,
      freeBytes: 9 * GiB,
      loopDirectIo: false,
      readOnly: false,
      errors: { count: 0, kernel: { lines: 0, first: null, last: null }, first: null, last: null, cause: null },
    },
    space: { boxFreeBytes: 50 * GiB, filesystemFreeBytes: 9 * GiB, imageUnallocatedBytes: 8.5 * GiB, mayStillNeedBytes: 8.5 * GiB, shortBytes: 0, ok: true },
    fstab: { state: 'ok', path: '/etc/fstab', detail: '/etc/fstab has the hbs block (findmnt --verify: ok)' },
    lock: { state: 'ours', hostname: 'testhost', machineId: 'x', pid: 111, time: '2024-12-31T23:00:00.000Z' },
    encryption: null,
    boot: { state: 'enabled', unit: 'hbs-mount@etc-hbs-config.json.service', path: '/etc/systemd/system/multi-user.target.wants/hbs-mount@etc-hbs-config.json.service' },
  });

  it('a healthy report, without colour', () => {
    expect(renderStatus(healthy(), false)).toBe(
      [
        `box         up       ${SOURCE} at /mnt/box — 50 GiB free of 100 GiB (50 GiB used)`,
        `image       ok       /mnt/box/filesystem.img — 10 GiB apparent, 1.5 GiB allocated on the box; attached as ${LOOP}`,
        `filesystem  up       /mnt/box/filesystem.img at /srv/backup (${LOOP}) — 10 GiB, 1 GiB used, 9 GiB free`,
        'space       ok       ext4 may still write 8.5 GiB the box does not hold yet; the box has 50 GiB free',
        'fstab       ok       /etc/fstab has the hbs block (findmnt --verify: ok)',
        'boot        enabled  hbs-mount@etc-hbs-config.json.service enabled',
        'lock        ours     testhost (pid 111) since 2024-12-31T23:00:00.000Z',
        '',
        'healthy',
      ].join('\n'),
    );
  });

  it('a stack up without a lock (fstab at boot) says that `hbs mount` takes it', () => {
    const r = healthy();
    r.healthy = false;
    r.lock = { state: 'free', ...NO_LOCK };
    expect(renderStatus(r, false).split('\n').at(-1)).toBe('NOT healthy — `hbs mount` takes the lock (a stack that came up at boot has none)');
  });

  it('a loop device on direct I/O is pointed out, with what switches it off', () => {
    const r = healthy();
    r.filesystem.loopDirectIo = true;
    expect(renderStatus(r, false).split('\n')[2]).toBe(
      `filesystem  up       /mnt/box/filesystem.img at /srv/backup (${LOOP}) — 10 GiB, 1 GiB used, 9 GiB free; loop device on direct I/O (every read is a round trip to the box: slow restores; \`hbs mount\` switches it off)`,
    );
  });

  it('a box mount at a small readahead (fstab at boot) is pointed out, with what raises it', () => {
    const r = healthy();
    r.box.readAheadKb = 128;
    expect(renderStatus(r, false).split('\n')[0]).toBe(
      `box         up       ${SOURCE} at /mnt/box — 50 GiB free of 100 GiB (50 GiB used); readahead 128 KiB (slow restores; \`hbs umount\` and \`hbs mount\` raise it to 4096 KiB)`,
    );
  });

  it('a down report says whether the box is reachable and what brings it up', () => {
    const r = healthy();
    r.healthy = false;
    r.box = { ...r.box, state: 'down', detail: '/mnt/box: not mounted', reachable: false, totalBytes: null, usedBytes: null, freeBytes: null };
    r.image = { ...r.image, exists: false, sizeBytes: null, allocatedBytes: null, loopDevices: [] };
    r.filesystem = { ...r.filesystem, state: 'down', detail: '/srv/backup: not mounted', device: null, sizeBytes: null, usedBytes: null, freeBytes: null };
    r.fstab = { state: 'disabled', path: null, detail: 'no fstab entries (--no-fstab)' };
    r.lock = { state: 'unknown', ...NO_LOCK };
    r.space = null;
    r.filesystem.errors = null;
    r.boot = { state: 'fstab', unit: null, path: null };
    expect(renderStatus(r, false).split('\n')).toEqual([
      'box         down     /mnt/box: not mounted; box NOT reachable over SFTP',
      'image       unknown  /mnt/box/filesystem.img',
      'filesystem  down     /srv/backup: not mounted',
      'fstab       disabled no fstab entries (--no-fstab)',
      'boot        fstab    fstab mounts it at boot (no lock until `hbs mount`)',
      'lock        unknown  box not readable',
      '',
      'NOT healthy — `hbs mount` brings it up',
    ]);
    r.box.reachable = true;
    expect(renderStatus(r, false).split('\n')[0]).toBe('box         down     /mnt/box: not mounted; box reachable over SFTP');
  });

  it('a broken report points at `hbs mount` to repair; a missing image and unknown allocation are said so', () => {
    const r = healthy();
    r.healthy = false;
    r.filesystem.state = 'broken';
    r.image.allocatedBytes = null;
    r.lock = { state: 'free', ...NO_LOCK };
    const lines = renderStatus(r, false).split('\n');
    expect(lines[1]).toBe(`image       ok       /mnt/box/filesystem.img — 10 GiB apparent, allocated size unknown (needs ssh on port 23); attached as ${LOOP}`);
    expect(lines[6]).toBe('lock        free     no machine holds the image');
    expect(lines.at(-1)).toBe('NOT healthy — `hbs mount` repairs a broken stack');
    r.image.exists = false;
    expect(renderStatus(r, false).split('\n')[1]).toBe(`image       missing  /mnt/box/filesystem.img; attached as ${LOOP}`);
  });

  it('an encryption line: state, cipher, key slots, header backup and the boot line', () => {
    const r = healthy();
    r.encryption = {
      state: 'open',
      detail: '/dev/mapper/hbs-x open (aes-xts-plain64 on /dev/loop3)',
      device: '/dev/mapper/hbs-x',
      cipher: 'aes-xts-plain64',
      keySlots: ['0', '1'],
      headerBackup: { path: '/etc/hbs/h', present: false },
      unattendedKeyFile: '/etc/hbs/k',
      crypttab: { path: '/etc/crypttab', present: true },
    };
    expect(renderStatus(r, false).split('\n')[7]).toBe(
      'encryption  open     /dev/mapper/hbs-x open (aes-xts-plain64 on /dev/loop3); aes-xts-plain64; key slots in use: 0, 1; header backup /etc/hbs/h MISSING; boot line in /etc/crypttab present',
    );
  });

  it('write errors: how many, when, the cause, and what to do; a box that cannot hold what ext4 has free: both figures', () => {
    const r = healthy();
    r.healthy = false;
    r.filesystem.errors = { count: 2, kernel: { lines: 5, first: 'I/O error, dev loop3, sector 8', last: 'Aborting journal on device loop3-8.' }, first: null, last: { time: 'Tue Dec  1 03:00:00 2026', function: 'ext4_journal_check_start' }, cause: 'box-full' };
    r.filesystem.readOnly = true;
    r.space = { boxFreeBytes: 0, filesystemFreeBytes: 9 * GiB, imageUnallocatedBytes: 8.5 * GiB, mayStillNeedBytes: 8.5 * GiB, shortBytes: 8.5 * GiB, ok: false };
    const lines = renderStatus(r, false).split('\n');
    expect(lines[3]).toBe(
      'errors      FAILED   2 errors in the superblock (last Tue Dec  1 03:00:00 2026); the kernel logged 5 failed writes since the mount (last: Aborting journal on device loop3-8.); mounted read-only: the box is full (its free space ran out under the image). Data written since may be lost; `hbs umount` then `hbs mount` runs e2fsck',
    );
    expect(lines[4]).toBe(
      'space       SHORT    ext4 may still write 8.5 GiB the box does not hold yet; the box has 0 B free — 8.5 GiB short: writes will fail before ext4 is full (free space on the box, or snapshots there)',
    );
  });

  it('colours the marks only when asked', () => {
    const plain = renderStatus(healthy(), false);
    const coloured = renderStatus(healthy(), true);
    expect(plain).not.toContain('\u001b[');
    expect(coloured).toContain('\u001b[32mup      \u001b[39m');
    const ESC = String.fromCharCode(27);
    expect(coloured.split(new RegExp(`${ESC}\\[\\d+m`)).join('')).toBe(plain);
  });
});
