import { loopDio } from '../canned.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Expectation } from '../../../src/core/recording-runner.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { remoteAllocatedBytes } from '../../../src/lib/remote-du.js';
import { collectStatus, type StatusReport } from '../../../src/lifecycle/status.js';
import { renderStatus } from '../../../src/ui/status-view.js';
import {
  backing,
  boxMounted,
  dd,
  exists,
  findmnt,
  GiB,
  IMAGE_FACTS,
  lockText,
  LOOP,
  loopList,
  loopMounted,
  makeConfig,
  makeCtx,
  makeSandbox,
  otherLock,
  ourLock,
  remoteDu,
  sftpProbe,
  SSHFS_SOURCE,
  statFs,
  statFsDead,
  statImage,
  UUID,
  writeCalls,
  type Sandbox,
} from './helpers.js';

let sb: Sandbox;
let tempDir: string;
let mkTemp: () => Promise<string>;
beforeEach(async () => {
  sb = await makeSandbox();
  await mkdir(sb.boxMount);
  tempDir = join(sb.root, 'status-tmp');
  mkTemp = async () => {
    await mkdir(tempDir);
    return tempDir;
  };
});
afterEach(async () => {
  await sb.cleanup();
});

const fsBlock = (): string =>
  `# BEGIN hbs managed block (${sb.config}): edit with hbs, not by hand\n` +
  `${SSHFS_SOURCE} ${sb.boxMount} fuse.sshfs reconnect,nofail 0 0\n` +
  `${sb.image} ${sb.mountPoint} ext4 loop,noatime,nodev,nofail 0 0\n` +
  `# END hbs managed block (${sb.config})\n`;

const verify = (stdout: string, exitCode: number): Expectation => ({
  argv: ['findmnt', '--verify', '--tab-file', join(tempDir, 'block')],
  write: false,
  stdout,
  exitCode,
});

const df = (): Expectation => ({
  argv: ['df', '--block-size=1', '--output=size,used,avail', sb.mountPoint],
  write: false,
  stdout: '    1B-blocks       Used      Avail\n10464022528 1073741824 8853979136\n',
});

/** Every probe of a healthy stack, in the order collectStatus runs them (fstab verify comes last). */
const healthyProbes = (): Expectation[] => [
  findmnt(sb.boxMount, boxMounted),
  statFs(sb.boxMount),
  loopList([LOOP, sb.image]),
  findmnt(sb.mountPoint, loopMounted()),
  backing(LOOP, sb.image),
  dd(LOOP),
  statImage(sb.image, IMAGE_FACTS),
  remoteDu(sb, 'backup/filesystem.img', `1048576\tbackup/filesystem.img\n`),
  df(),
  loopDio(LOOP, true),
];

function keyPaths(value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [prefix];
  return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => keyPaths(v, prefix ? `${prefix}.${k}` : k));
}

describe('collectStatus', () => {
  it('a healthy stack: every figure, fstab verified, our lock', async () => {
    await writeFile(sb.fstab, `UUID=1234 / ext4 defaults 0 1\n${fsBlock()}`);
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const runner = new RecordingRunner([...healthyProbes(), verify('Success, no errors or warnings detected\n', 0)]);
    const ctx = makeCtx(sb, runner, {}, makeConfig(sb, { fstab: sb.fstab }));
    const report = await collectStatus(ctx, mkTemp);
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
    expect(report).toEqual({
      config: sb.config,
      healthy: true,
      box: {
        state: 'up',
        detail: `${SSHFS_SOURCE} at ${sb.boxMount}`,
        reachable: true,
        mountPoint: sb.boxMount,
        source: 'u123456@u123456.your-storagebox.de:backup',
        totalBytes: 100 * GiB,
        usedBytes: 50 * GiB,
        freeBytes: 50 * GiB,
      },
      image: { path: sb.image, exists: true, sizeBytes: 10 * GiB, allocatedBytes: GiB, loopDevices: [LOOP] },
      filesystem: {
        state: 'up',
        detail: `${sb.image} at ${sb.mountPoint} (${LOOP})`,
        mountPoint: sb.mountPoint,
        device: LOOP,
        uuid: UUID,
        sizeBytes: 10464022528,
        usedBytes: 1073741824,
        freeBytes: 8853979136,
        loopDirectIo: true,
      },
      fstab: { state: 'ok', path: sb.fstab, detail: `${sb.fstab} has the hbs block (findmnt --verify: ok)` },
      lock: { state: 'ours', hostname: 'testhost', machineId: '0f1e2d3c4b5a69788796a5b4c3d2e1f0', pid: 111, time: '2024-12-31T23:00:00.000Z' },
      encryption: null,
    } satisfies StatusReport);
    expect(await exists(tempDir)).toBe(false); // the verify scratch directory is removed
  });

  it('keeps the JSON keys stable', async () => {
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const runner = new RecordingRunner(healthyProbes());
    const report = await collectStatus(makeCtx(sb, runner), mkTemp);
    expect(Object.keys(report)).toEqual(['config', 'healthy', 'box', 'image', 'filesystem', 'fstab', 'lock', 'encryption']);
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
      'fstab.state',
      'fstab.path',
      'fstab.detail',
      'lock.state',
      'lock.hostname',
      'lock.machineId',
      'lock.pid',
      'lock.time',
      'encryption',
    ]);
    // The down report has the very same keys (nulls, not missing keys).
    const down = await collectStatus(makeCtx(sb, new RecordingRunner([findmnt(sb.boxMount), findmnt(sb.mountPoint), sftpProbe(sb, 0)])), mkTemp);
    expect(keyPaths(down)).toEqual(keyPaths(report));
  });

  it('everything down: not healthy, reachable from the sftp probe, nothing else asked of the box', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount), findmnt(sb.mountPoint), sftpProbe(sb, 0)]);
    const report = await collectStatus(makeCtx(sb, runner), mkTemp);
    runner.assertDone();
    expect(report).toEqual({
      config: sb.config,
      healthy: false,
      box: {
        state: 'down',
        detail: `${sb.boxMount}: not mounted`,
        reachable: true,
        mountPoint: sb.boxMount,
        source: SSHFS_SOURCE,
        totalBytes: null,
        usedBytes: null,
        freeBytes: null,
      },
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
      },
      fstab: { state: 'disabled', path: null, detail: 'no fstab entries (--no-fstab)' },
      lock: { state: 'unknown', hostname: null, machineId: null, pid: null, time: null },
      encryption: null,
    } satisfies StatusReport);
  });

  it('a box that cannot be reached over SFTP either', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount), findmnt(sb.mountPoint), sftpProbe(sb, 255, 'ssh: connect to host: Connection timed out')]);
    const report = await collectStatus(makeCtx(sb, runner), mkTemp);
    expect(report.box.reachable).toBe(false);
    expect(report.healthy).toBe(false);
  });

  it('a broken stack: not healthy, lock unknown, the loop devices listed', async () => {
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFsDead(sb.boxMount),
      loopList([LOOP, sb.image]),
      findmnt(sb.mountPoint, loopMounted()),
      backing(LOOP, sb.image),
      sftpProbe(sb, 0),
    ]);
    const report = await collectStatus(makeCtx(sb, runner), mkTemp);
    runner.assertDone();
    expect([report.healthy, report.box.state, report.filesystem.state, report.lock.state]).toEqual([false, 'broken', 'broken', 'unknown']);
    expect(report.image.loopDevices).toEqual([LOOP]);
    expect(report.filesystem.device).toBe(LOOP);
    expect(report.image.exists).toBe(false);
  });

  it('another machine\'s lock makes it unhealthy, and names that machine', async () => {
    await writeFile(sb.lock, lockText(otherLock));
    const report = await collectStatus(makeCtx(sb, new RecordingRunner(healthyProbes())), mkTemp);
    expect(report.healthy).toBe(false);
    expect(report.lock).toEqual({ state: 'other', hostname: 'other-host', machineId: otherLock.machineId, pid: 4242, time: otherLock.time });
  });

  it('a free or unreadable lock is reported without a holder, and is unhealthy', async () => {
    const free = await collectStatus(makeCtx(sb, new RecordingRunner(healthyProbes())), mkTemp);
    expect(free.lock).toEqual({ state: 'free', hostname: null, machineId: null, pid: null, time: null });
    expect(free.healthy).toBe(false);
    await writeFile(sb.lock, '{');
    const garbage = await collectStatus(makeCtx(sb, new RecordingRunner(healthyProbes())), mkTemp);
    expect(garbage.lock).toEqual({ state: 'unreadable', hostname: null, machineId: null, pid: null, time: null });
  });

  it('fstab: missing file, missing block, and a block findmnt --verify rejects', async () => {
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const cfg = makeConfig(sb, { fstab: sb.fstab });
    const missing = await collectStatus(makeCtx(sb, new RecordingRunner(healthyProbes()), {}, cfg), mkTemp);
    expect(missing.fstab).toEqual({ state: 'missing', path: sb.fstab, detail: `${sb.fstab} cannot be read` });
    expect(missing.healthy).toBe(false);

    await writeFile(sb.fstab, 'UUID=1234 / ext4 defaults 0 1\n');
    const noBlock = await collectStatus(makeCtx(sb, new RecordingRunner(healthyProbes()), {}, cfg), mkTemp);
    expect(noBlock.fstab).toEqual({ state: 'missing', path: sb.fstab, detail: `${sb.fstab} has no hbs block for ${sb.config}` });

    await writeFile(sb.fstab, fsBlock());
    const runner = new RecordingRunner([
      ...healthyProbes(),
      verify(`   [E] unreachable on boot required target: No such file or directory\n\n0 parse errors, 1 error, 0 warnings\n`, 1),
    ]);
    const invalid = await collectStatus(makeCtx(sb, runner, {}, cfg), mkTemp);
    runner.assertDone();
    expect(invalid.fstab).toEqual({ state: 'invalid', path: sb.fstab, detail: 'findmnt --verify: 0 parse errors, 1 errors' });
    expect(invalid.healthy).toBe(false);
    expect(await exists(tempDir)).toBe(false);
  });

  it('unknown figures stay null: no du over ssh (port 22 has no shell), df failing', async () => {
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const probes = healthyProbes();
    probes[7] = remoteDu(sb, 'backup/filesystem.img', '', 1);
    probes[8] = { ...df(), stdout: '', exitCode: 1 };
    const report = await collectStatus(makeCtx(sb, new RecordingRunner(probes)), mkTemp);
    expect(report.image.allocatedBytes).toBeNull();
    expect([report.filesystem.sizeBytes, report.filesystem.usedBytes, report.filesystem.freeBytes]).toEqual([null, null, null]);
    expect(report.healthy).toBe(true); // figures are information, not health
  });
});

describe('remoteAllocatedBytes', () => {
  const conn = (remotePath: string): Parameters<typeof remoteAllocatedBytes>[1] => ({
    user: 'u123456',
    host: 'u123456.your-storagebox.de',
    port: 23,
    remotePath,
    key: sb.sshKey,
    knownHosts: sb.knownHosts,
  });

  it('asks du -k on the box and converts KiB to bytes; trailing slashes of the path are dropped', async () => {
    const runner = new RecordingRunner([remoteDu(sb, 'backup/filesystem.img', '2048\tbackup/filesystem.img\n')]);
    expect(await remoteAllocatedBytes(runner, conn('backup//'), 'filesystem.img')).toBe(2048 * 1024);
    runner.assertDone();
  });

  it('uses the bare name in the home directory', async () => {
    const runner = new RecordingRunner([remoteDu(sb, 'filesystem.img', '4\tfilesystem.img\n')]);
    expect(await remoteAllocatedBytes(runner, conn(''), 'filesystem.img')).toBe(4096);
  });

  it('does not send a path with characters the remote shell would interpret', async () => {
    const runner = new RecordingRunner([]);
    expect(await remoteAllocatedBytes(runner, conn('my backups'), 'filesystem.img')).toBeUndefined();
    expect(await remoteAllocatedBytes(runner, conn('backup'), 'a;rm -rf ~')).toBeUndefined();
    expect(runner.calls).toEqual([]);
  });

  it('is undefined when du fails or prints no number', async () => {
    const runner = new RecordingRunner([remoteDu(sb, 'backup/x.img', '', 1), remoteDu(sb, 'backup/x.img', 'du: cannot access\n')]);
    expect(await remoteAllocatedBytes(runner, conn('backup'), 'x.img')).toBeUndefined();
    expect(await remoteAllocatedBytes(runner, conn('backup'), 'x.img')).toBeUndefined();
  });
});

describe('renderStatus', () => {
  const healthy = (): StatusReport => ({
    config: '/etc/hbs/config.json',
    healthy: true,
    box: {
      state: 'up',
      detail: `${SSHFS_SOURCE} at /mnt/box`,
      reachable: true,
      mountPoint: '/mnt/box',
      source: SSHFS_SOURCE,
      totalBytes: 100 * GiB,
      usedBytes: 50 * GiB,
      freeBytes: 50 * GiB,
    },
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
      loopDirectIo: true,
    },
    fstab: { state: 'ok', path: '/etc/fstab', detail: '/etc/fstab has the hbs block (findmnt --verify: ok)' },
    lock: { state: 'ours', hostname: 'testhost', machineId: 'x', pid: 111, time: '2024-12-31T23:00:00.000Z' },
    encryption: null,
  });

  it('a healthy report, without colour', () => {
    expect(renderStatus(healthy(), false)).toBe(
      [
        `box         up       ${SSHFS_SOURCE} at /mnt/box — 50 GiB free of 100 GiB (50 GiB used)`,
        `image       ok       /mnt/box/filesystem.img — 10 GiB apparent, 1.5 GiB allocated on the box; attached as ${LOOP}`,
        `filesystem  up       /mnt/box/filesystem.img at /srv/backup (${LOOP}) — 10 GiB, 1 GiB used, 9 GiB free`,
        'fstab       ok       /etc/fstab has the hbs block (findmnt --verify: ok)',
        'lock        ours     testhost (pid 111) since 2024-12-31T23:00:00.000Z',
        '',
        'healthy',
      ].join('\n'),
    );
  });

  it('a stack up without a lock (fstab at boot) says that `hbs mount` takes it', () => {
    const r = healthy();
    r.healthy = false;
    r.lock = { state: 'free', hostname: null, machineId: null, pid: null, time: null };
    expect(renderStatus(r, false).split('\n').at(-1)).toBe('NOT healthy — `hbs mount` takes the lock (a stack that came up at boot has none)');
  });

  it('a loop device without direct I/O (fstab at boot) is pointed out, with what switches it on', () => {
    const r = healthy();
    r.filesystem.loopDirectIo = false;
    expect(renderStatus(r, false).split('\n')[2]).toBe(
      `filesystem  up       /mnt/box/filesystem.img at /srv/backup (${LOOP}) — 10 GiB, 1 GiB used, 9 GiB free; loop device without direct I/O (slower writes; \`hbs mount\` switches it on)`,
    );
  });

  it('a down report says whether the box is reachable and what brings it up', () => {
    const r = healthy();
    r.healthy = false;
    r.box = { ...r.box, state: 'down', detail: '/mnt/box: not mounted', reachable: false, totalBytes: null, usedBytes: null, freeBytes: null };
    r.image = { ...r.image, exists: false, sizeBytes: null, allocatedBytes: null, loopDevices: [] };
    r.filesystem = { ...r.filesystem, state: 'down', detail: '/srv/backup: not mounted', device: null, sizeBytes: null, usedBytes: null, freeBytes: null };
    r.fstab = { state: 'disabled', path: null, detail: 'no fstab entries (--no-fstab)' };
    r.lock = { state: 'unknown', hostname: null, machineId: null, pid: null, time: null };
    expect(renderStatus(r, false).split('\n')).toEqual([
      'box         down     /mnt/box: not mounted; box NOT reachable over SFTP',
      'image       unknown  /mnt/box/filesystem.img',
      'filesystem  down     /srv/backup: not mounted',
      'fstab       disabled no fstab entries (--no-fstab)',
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
    r.lock = { state: 'free', hostname: null, machineId: null, pid: null, time: null };
    const lines = renderStatus(r, false).split('\n');
    expect(lines[1]).toBe(`image       ok       /mnt/box/filesystem.img — 10 GiB apparent, allocated size unknown (needs ssh on port 23); attached as ${LOOP}`);
    expect(lines[4]).toBe('lock        free     no machine holds the image');
    expect(lines[6]).toBe('NOT healthy — `hbs mount` repairs a broken stack');
    r.image.exists = false;
    expect(renderStatus(r, false).split('\n')[1]).toBe(`image       missing  /mnt/box/filesystem.img; attached as ${LOOP}`);
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
