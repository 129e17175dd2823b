/**
 * `hbs backup` on the fake machine: which commands run in which case, and what is left (the
 * snapshot directories, `latest`, the record) — rsync itself is the fake's (it writes what a test
 * tells it to).
 */
import { lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backupCommand, type BackupFlags } from '../../../src/commands/backup.js';
import { HbsError } from '../../../src/core/errors.js';
import { lastBackupPath, type LastBackup } from '../../../src/lib/backup.js';
import type { Config } from '../../../src/lib/config.js';
import { FakeMachine } from '../../support/fake-machine.js';
import { expectGolden, stableByteCounts } from '../../support/golden.js';
import { BOX_SOURCE, FIXED_NOW, GiB, makeConfig, makeSandbox, ourLock, putOnBox, testIo, UUID, writeConfig, writeLock, type Sandbox } from '../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
let src: string;
beforeEach(async () => {
  sb = await makeSandbox();
  m = new FakeMachine().box(sb.boxMount, sb.boxHome);
  src = join(sb.root, 'data');
  await mkdir(src, { recursive: true });
  await mkdir(sb.mountPoint, { recursive: true });
});
afterEach(() => sb.cleanup());

const NAME = '2025-01-02T030405Z';
const snaps = () => join(sb.mountPoint, 'snapshots');
const STATS = 'Number of files: 3 (reg: 2, dir: 1)\nNumber of regular files transferred: 2\nTotal file size: 10 bytes\nTotal transferred file size: 10 bytes\nTotal bytes sent: 200\n';

async function upStack(cfg: Config = makeConfig(sb)): Promise<void> {
  await writeConfig(sb, cfg);
  await putOnBox(sb, 'filesystem.img');
  await m.mountBox(sb.boxMount, BOX_SOURCE);
  await writeFile(`${sb.boxHome}.bdi-read_ahead_kb`, '4096\n');
  await writeLock(sb, ourLock(sb));
  m.fileSize(sb.image, 10 * GiB, 0);
  m.ext4(sb.image, UUID);
  m.mountFs(sb.mountPoint, m.attach(sb.image, { directIo: false }));
}

/** The fake rsync: makes the destination with a file in it (as the real one would), prints stats. */
function rsyncWrites(o: { exitCode?: number; after?: () => void } = {}): void {
  m.onRun = async (line) => {
    if (!line.startsWith('setpriv --pdeathsig KILL -- rsync ')) return;
    const dest = line.split(' ').at(-1)!;
    await mkdir(join(dest, src), { recursive: true });
    await writeFile(join(dest, src, 'file'), 'data');
    o.after?.();
  };
  m.failNext(['setpriv', '--pdeathsig', 'KILL', '--', 'rsync'], { exitCode: o.exitCode ?? 0, stdout: STATS });
}

const run = (flags: Partial<BackupFlags> = {}) => {
  const io = testIo(m);
  return { io, done: backupCommand({ config: sb.config, ...flags }, io) };
};
const record = async (): Promise<LastBackup> => JSON.parse(await readFile(lastBackupPath(sb.config), 'utf8')) as LastBackup;

describe('hbs backup (fake machine)', () => {
  it('a first snapshot: rsync into the .partial, sync, rename, latest; the record and the settings written', async () => {
    await upStack();
    rsyncWrites();
    const r = await run({ source: [src] }).done;
    expect(r).toMatchObject({ result: 'ok', snapshot: NAME, previous: null, files: 3, filesTransferred: 2, bytesTransferred: 10 });
    const cmds = m.ran;
    expect(cmds[0]).toMatch(new RegExp(`^setpriv --pdeathsig KILL -- rsync -aHAX --numeric-ids --delete --relative --partial --info=progress2 --stats --exclude=${sb.mountPoint} --exclude=${sb.boxMount} .* ${src} ${snaps()}/${NAME}\\.partial/$`));
    expect(cmds[0]).not.toContain('--link-dest');
    expect(cmds.slice(1)).toEqual([`sync -f ${sb.mountPoint}`, `mv --no-target-directory ${snaps()}/${NAME}.partial ${snaps()}/${NAME}`]);
    expect(await readlink(join(snaps(), 'latest'))).toBe(NAME);
    expect(await readFile(join(snaps(), NAME, src, 'file'), 'utf8')).toBe('data');
    expect(await record()).toMatchObject({ result: 'ok', snapshot: NAME, exitCode: 0, time: FIXED_NOW.toISOString() });
    expect((JSON.parse(await readFile(sb.config, 'utf8')) as Config).backup).toEqual({ sources: [src], excludes: [], excludeFrom: null, keep: null, timer: null });
  });

  it('the next one links to the newest complete snapshot, not to a .partial or what `latest` says', async () => {
    await upStack();
    await mkdir(join(snaps(), '2025-01-01T000000Z'), { recursive: true });
    await mkdir(join(snaps(), '2024-12-31T000000Z'), { recursive: true });
    await symlink('2024-12-31T000000Z', join(snaps(), 'latest'));
    rsyncWrites();
    const r = await run({ source: [src] }).done;
    expect(r.previous).toBe('2025-01-01T000000Z');
    expect(m.ran[0]).toContain(`--link-dest=${snaps()}/2025-01-01T000000Z `);
    expect(await readlink(join(snaps(), 'latest'))).toBe(NAME);
  });

  it('rsync exit 24 (vanished files) is a warning: exit 0, snapshot complete, the warning recorded', async () => {
    await upStack();
    rsyncWrites({ exitCode: 24 });
    const { io, done } = run({ source: [src] });
    const r = await done;
    expect(r.result).toBe('warning');
    expect(r.warning).toMatch(/vanished/);
    expect(io.reporter.lines.join('\n')).toMatch(/vanished/);
    expect(await readlink(join(snaps(), 'latest'))).toBe(NAME);
    expect(await record()).toMatchObject({ result: 'warning', exitCode: 0 });
  });

  it('any other rsync failure: exit 1, stays .partial, latest unchanged, no retention, the failure recorded', async () => {
    await upStack();
    await mkdir(join(snaps(), '2025-01-01T000000Z'), { recursive: true });
    await symlink('2025-01-01T000000Z', join(snaps(), 'latest'));
    rsyncWrites({ exitCode: 11 });
    const err = (await run({ source: [src], keepDaily: '0', keepWeekly: '0', keepMonthly: '0' }).done.catch((e: unknown) => e)) as HbsError;
    expect(err).toBeInstanceOf(HbsError);
    expect(err.exitCode).toBe(1);
    expect(err.message).toMatch(/rsync failed \(exit 11: error in file I\/O/);
    expect(m.ran.filter((c) => !c.startsWith('setpriv --pdeathsig KILL -- rsync '))).toEqual([]);
    expect((await readdir(snaps())).sort()).toEqual(['2025-01-01T000000Z', `${NAME}.partial`, 'latest']);
    expect(await readlink(join(snaps(), 'latest'))).toBe('2025-01-01T000000Z');
    expect(await record()).toMatchObject({ result: 'failed', snapshot: null, exitCode: 1 });
  });

  it('write errors that show only after rsync (kernel log): exit 1, not renamed, latest unchanged', async () => {
    await upStack();
    rsyncWrites({ after: () => m.world.kernelErrors.set(UUID, ['EXT4-fs error (device loop0): ext4_journal_check_start: Detected aborted journal']) });
    const err = (await run({ source: [src] }).done.catch((e: unknown) => e)) as HbsError;
    expect(err.exitCode).toBe(1);
    expect(err.message).toMatch(/^the snapshot is not complete .*aborted journal/);
    expect(m.ran.some((c) => c.startsWith('mv '))).toBe(false);
    await expect(lstat(join(snaps(), 'latest'))).rejects.toThrow();
  });

  it('an unhealthy filesystem before: nothing written (no rsync), exit 1', async () => {
    await upStack();
    m.world.kernelErrors.set(UUID, ['EXT4-fs (loop0): I/O error while writing superblock']);
    const err = (await run({ source: [src] }).done.catch((e: unknown) => e)) as HbsError;
    expect(err.exitCode).toBe(1);
    expect(err.message).toMatch(/^not backing up: the kernel logged 1 write errors/);
    expect(m.ran).toEqual([]);
  });

  it('room on the box: at least 128 MiB, plus what the last snapshot added', async () => {
    await upStack();
    const MiB = 1024 ** 2;
    await mkdir(join(snaps(), '.hbs-meta'), { recursive: true });
    await mkdir(join(snaps(), '2025-01-01T000000Z'));
    await writeFile(join(snaps(), '.hbs-meta', '2025-01-01T000000Z.json'), JSON.stringify({ bytesTransferred: 100 * MiB }));
    m.world.space.set(sb.boxMount, { totalBytes: GiB, freeBytes: 200 * MiB });
    const err = (await run({ source: [src] }).done.catch((e: unknown) => e)) as HbsError;
    expect(err.exitCode).toBe(1);
    expect(err.message).toMatch(/the box has only 200 MiB free \(a backup needs at least 128 MiB plus the 100 MiB the last snapshot added\)/);
    expect(m.ran).toEqual([]);
    m.world.space.set(sb.boxMount, { totalBytes: GiB, freeBytes: 240 * MiB });
    rsyncWrites();
    expect((await run({ source: [src] }).done).result).toBe('ok');
  });

  it('something else mounted at the mount point: refused, nothing written', async () => {
    await upStack();
    m.mountFs(sb.mountPoint, '/dev/sdb1');
    const err = (await run({ source: [src] }).done.catch((e: unknown) => e)) as HbsError;
    expect(err.exitCode).toBe(1);
    expect(err.message).toMatch(/^not backing up: .* holds \/dev\/sdb1/);
    expect(m.ran).toEqual([]);
  });

  it('the stack down: brought up as hbs mount does, before rsync', async () => {
    await writeConfig(sb, makeConfig(sb));
    await putOnBox(sb, 'filesystem.img');
    m.fileSize(sb.image, 10 * GiB, 0);
    m.ext4(sb.image, UUID);
    rsyncWrites();
    await run({ source: [src] }).done;
    const order = m.ran.map((c) => (c.startsWith('setpriv ') ? 'rsync' : c.split(' ')[0]));
    expect(order.indexOf('sshfs')).toBeGreaterThanOrEqual(0);
    expect(order.indexOf('mount')).toBeLessThan(order.indexOf('rsync'));
    expect(order.indexOf('sshfs')).toBeLessThan(order.indexOf('mount'));
  });

  it('a leftover .partial is resumed; retention removes old ones by renaming first, never the newest', async () => {
    await upStack();
    for (const n of ['2024-10-01T000000Z', '2024-11-01T000000Z', '2024-12-01T000000Z']) await mkdir(join(snaps(), n), { recursive: true });
    await mkdir(join(snaps(), '2024-12-15T000000Z.partial'));
    await mkdir(join(snaps(), '2024-09-01T000000Z.deleting'));
    rsyncWrites();
    const r = await run({ source: [src], keepMonthly: '2' }).done;
    expect(r.resumed).toBe('2024-12-15T000000Z.partial');
    expect(m.ran[0]).toMatch(new RegExp(`${snaps()}/2024-12-15T000000Z\\.partial/$`));
    expect(r.removed).toEqual(['2024-11-01T000000Z', '2024-10-01T000000Z']);
    expect(m.ran).toContain(`mv --no-target-directory ${snaps()}/2024-11-01T000000Z ${snaps()}/2024-11-01T000000Z.deleting`);
    expect((await readdir(snaps())).sort()).toEqual(['.hbs-meta', '2024-12-01T000000Z', NAME, 'latest']);
  });

  it('a dry-run runs nothing and prints the plan', async () => {
    await upStack();
    const { io, done } = run({ source: [src], dryRun: true });
    expect((await done).result).toBe('dry-run');
    expect(m.ran).toEqual([]);
    const out = io.reporter.lines.join('\n');
    expect(out).toMatch(/! setpriv --pdeathsig KILL -- rsync -aHAX /);
    expect(out).toMatch(/! sync -f /);
    expect(out).toMatch(/! mv --no-target-directory /);
    expect(out).toMatch(/! ln -sfn 2025-01-02T030405Z /);
    expect(out).toMatch(/! write .*config\.last-backup\.json/);
    await expect(readdir(snaps())).rejects.toThrow();
  });

  it('golden: the dry-run of a backup with the stack down and retention (test/golden/backup-dry-run.txt)', async () => {
    await writeConfig(sb, makeConfig(sb, { backup: { sources: [src], excludes: ['*.cache'], excludeFrom: null, keep: { daily: 7, weekly: 4, monthly: 12 }, timer: null } }));
    await putOnBox(sb, 'filesystem.img');
    m.fileSize(sb.image, 10 * GiB, 0);
    m.ext4(sb.image, UUID);
    const { io, done } = run({ dryRun: true });
    await done;
    expect(m.ran).toEqual([]);
    await expectGolden('backup-dry-run.txt', stableByteCounts(io.reporter.lines, sb.root), sb.root);
  });
});
