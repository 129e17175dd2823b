/**
 * End to end: `hbs backup` against the stand-in box (real sshd, sshfs, loop device, ext4, rsync).
 * The box's home is a small filesystem of its own (as in full-box.test.ts), so the last test can
 * really fill it.
 *   - bad input exits 2 naming the value, and changes nothing;
 *   - two snapshots: unchanged files are hard links (same inode), owners (odd uid:gid) kept;
 *   - a dry-run prints the rsync, the rename and the link, and changes nothing;
 *   - a leftover .partial is resumed; retention keeps the right ones;
 *   - a second run while one holds the lock exits 75;
 *   - with the box gone the run fails and the bare mount point stays empty; with it back the run
 *     brings the stack up itself;
 *   - the timer units pass `systemd-analyze verify`;
 *   - a run that fills the box exits non-zero and `latest` still names the previous snapshot.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chown, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackupResult } from '../../src/commands/backup.js';
import type { SnapshotsReport } from '../../src/commands/snapshots.js';
import type { StatusReport } from '../../src/lib/status-report.js';
import { e2eUnavailable, startBox, type StandInBox } from '../support/stand-in-box.js';
import { HBS, hbs, initThinOn, smallBoxDisk, teardown } from './helpers.js';

const skip = await e2eUnavailable();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skip !== undefined)('hbs backup', () => {
  let box: StandInBox;
  let t: string;
  let boxFs: string;
  let src: string;
  const p = { config: '', key: '', boxMount: '', mountPoint: '' };
  const snaps = () => join(p.mountPoint, 'snapshots');
  const names = async () => (await readdir(snaps()).catch(() => [] as string[])).filter((n) => /^\d{4}-/.test(n)).sort();
  const latest = () => readlink(join(snaps(), 'latest'));
  /** Snapshot names have seconds: two runs must not start within the same one. */
  const nextSecond = () => sleep(1100 - (Date.now() % 1000));
  const backup = async (args: string[] = []): Promise<{ code: number; doc: BackupResult; stderr: string; stdout: string }> => {
    await nextSecond();
    const r = await hbs(['backup', '--json', '--config', p.config, ...args]);
    return { code: r.exitCode, doc: JSON.parse(r.stdout) as BackupResult, stderr: r.stderr, stdout: r.stdout };
  };

  beforeAll(async () => {
    t = await mkdtemp(join(tmpdir(), 'hbs-backup-'));
    await execa('chmod', ['0755', t]);
    boxFs = await smallBoxDisk(t, '600M');
    box = await startBox({ stateDir: join(boxFs, 'state') });
    Object.assign(p, { config: join(t, 'etc', 'config.json'), key: join(t, 'key'), boxMount: join(t, 'box'), mountPoint: join(t, 'mnt') });
    const r = await initThinOn(box, p);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    // The sources: a tree with odd owners, a hard-linked pair, a symlink.
    src = join(t, 'src');
    await mkdir(join(src, 'etc', 'deep'), { recursive: true });
    for (let i = 0; i < 50; i++) await writeFile(join(src, 'etc', 'deep', `f${i}`), `file ${i}\n`.repeat(100));
    await writeFile(join(src, 'etc', 'owned'), 'owned by 12345:23456\n');
    await chown(join(src, 'etc', 'owned'), 12345, 23456);
    await writeFile(join(src, 'etc', 'changes'), 'one\n');
    await execa('ln', [join(src, 'etc', 'owned'), join(src, 'etc', 'owned-link')]);
    await execa('ln', ['-s', 'owned', join(src, 'etc', 'sym')]);
  }, 180_000);

  afterAll(async () => {
    await teardown([p.mountPoint], [p.boxMount]);
    await box?.stop();
    await execa('umount', [boxFs], { reject: false });
    await rm(t, { recursive: true, force: true });
  });

  it('bad input: exit 2, one line naming the value, nothing changed', async () => {
    const config = await readFile(p.config, 'utf8');
    const cases: [string[], RegExp][] = [
      [['--source', 'relative/dir'], /--source "relative\/dir": not an absolute path/],
      [['--source', join(t, 'nope')], /--source .*nope: no such file or directory/],
      [['--source', join(p.mountPoint, 'x')], /inside the backup filesystem/],
      [['--source', join(p.boxMount)], /inside the box mount/],
      [['--source', src, '--keep-daily', 'seven'], /--keep-daily "seven": not a whole number/],
      [['--source', src, '--keep-weekly', '-1'], /--keep-weekly "-1"/],
      [['--source', src, '--install-timer', '--on-calendar', 'every full moon', '--systemd-dir', join(t, 'units')], /--on-calendar "every full moon": systemd does not take it/],
      [['--source', src, '--on-calendar', 'daily'], /--on-calendar goes with --install-timer/],
      [['--source', src, '--exclude-from', join(t, 'no-such-list')], /--exclude-from .*no-such-list: not a readable file/],
      [[], /nothing to back up: give --source PATH/],
    ];
    for (const [args, msg] of cases) {
      const r = await hbs(['backup', '--config', p.config, ...args]);
      expect(r.exitCode, args.join(' ')).toBe(2);
      expect(r.stderr.split('\n')[0], args.join(' ')).toMatch(msg);
      expect(r.stdout).toBe('');
    }
    expect(await readFile(p.config, 'utf8')).toBe(config);
    expect(await names()).toEqual([]);
    await expect(stat(join(t, 'units'))).rejects.toThrow();
  });

  let first = '';
  let second = '';
  it('the first snapshot: each source at its absolute path, owners and hard links kept, `latest`, settings kept in the config', async () => {
    const r = await backup(['--source', src]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.doc.result).toBe('ok');
    first = r.doc.snapshot!;
    expect(first).toMatch(/^\d{4}-\d{2}-\d{2}T\d{6}Z$/);
    expect(await names()).toEqual([first]);
    expect(await latest()).toBe(first);
    const copy = join(snaps(), first, src);
    const st = await stat(join(copy, 'etc', 'owned'));
    expect([st.uid, st.gid]).toEqual([12345, 23456]);
    expect((await stat(join(copy, 'etc', 'owned-link'))).ino).toBe(st.ino);
    expect(await readlink(join(copy, 'etc', 'sym'))).toBe('owned');
    expect(await readFile(join(copy, 'etc', 'deep', 'f7'), 'utf8')).toBe('file 7\n'.repeat(100));
    expect(r.doc.files).toBeGreaterThanOrEqual(55);
    const cfg = JSON.parse(await readFile(p.config, 'utf8')) as { backup: { sources: string[] } };
    expect(cfg.backup.sources).toEqual([src]);
  }, 120_000);

  it('the second snapshot (sources from the config): unchanged files are hard links into the first, a changed one is new', async () => {
    await writeFile(join(src, 'etc', 'changes'), 'two\n');
    const r = await backup();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    second = r.doc.snapshot!;
    expect(r.doc.previous).toBe(first);
    expect(r.doc.filesTransferred).toBe(1);
    expect(await names()).toEqual([first, second]);
    expect(await latest()).toBe(second);
    const a = join(snaps(), first, src, 'etc');
    const b = join(snaps(), second, src, 'etc');
    expect((await stat(join(b, 'deep', 'f3'))).ino).toBe((await stat(join(a, 'deep', 'f3'))).ino);
    expect((await stat(join(b, 'owned'))).ino).toBe((await stat(join(a, 'owned'))).ino);
    expect((await stat(join(b, 'changes'))).ino).not.toBe((await stat(join(a, 'changes'))).ino);
    expect(await readFile(join(a, 'changes'), 'utf8')).toBe('one\n');
    expect(await readFile(join(b, 'changes'), 'utf8')).toBe('two\n');
  }, 120_000);

  it('a dry-run prints the rsync, the rename and the new `latest`, and changes nothing', async () => {
    await nextSecond();
    const r = await hbs(['backup', '--dry-run', '--config', p.config]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^ *! setpriv --pdeathsig KILL -- rsync -aHAX --numeric-ids --delete .*--link-dest=${snaps()}/${second} ${src} ${snaps()}/\\S+\\.partial/$`, 'm'));
    expect(r.stdout).toMatch(/^ *! mv --no-target-directory \S+\.partial \S+$/m);
    expect(r.stdout).toMatch(/^ *! ln -sfn \S+ \S+\/latest/m);
    expect(r.stdout).toMatch(/^ *! write .*last-backup\.json/m);
    expect(await names()).toEqual([first, second]);
    expect(await latest()).toBe(second);
  });

  it('snapshots lists them (complete, latest, files, what each added); status shows the last backup', async () => {
    const r = await hbs(['snapshots', '--json', '--config', p.config]);
    expect(r.exitCode).toBe(0);
    const doc = JSON.parse(r.stdout) as SnapshotsReport;
    expect(doc.snapshots.map((s) => [s.name, s.state, s.latest])).toEqual([[first, 'complete', false], [second, 'complete', true]]);
    expect(doc.snapshots[1]!.addedBytes).toBe(4);
    expect(doc.snapshots[0]!.files).toBeGreaterThanOrEqual(55);
    const text = await hbs(['snapshots', '--config', p.config]);
    expect(text.stdout).toContain(`${second} (latest)`);
    const s = JSON.parse((await hbs(['status', '--json', '--config', p.config])).stdout) as StatusReport;
    expect(s.lastBackup).toMatchObject({ result: 'ok', snapshot: second, exitCode: 0 });
    expect((await hbs(['status', '--config', p.config])).stdout).toMatch(new RegExp(`^backup +ok .*snapshot ${second}`, 'm'));
  });

  it('a second run while one holds the lock exits 75 and writes nothing', async () => {
    const lock = join(t, 'etc', 'config.backup.lock');
    // In a process group of its own: the lock is also held by flock's child (sleep), which must go too.
    const holder: ChildProcess = spawn('flock', ['--exclusive', lock, 'sleep', '60'], { stdio: 'ignore', detached: true });
    try {
      for (let i = 0; i < 100 && (await execa('flock', ['--nonblock', lock, 'true'], { reject: false })).exitCode === 0; i++) await sleep(50);
      const r = await hbs(['backup', '--config', p.config]);
      expect(r.exitCode).toBe(75);
      expect(r.stderr).toMatch(/another hbs backup is running/);
      expect(await names()).toEqual([first, second]);
    } finally {
      process.kill(-holder.pid!, 'SIGTERM');
      await new Promise((r) => holder.once('exit', r));
    }
  });

  it('a .partial a killed run left is resumed (not left as junk); retention keeps the right ones and never the partial', async () => {
    // Older snapshots, as earlier runs would have left them.
    const old = ['2025-01-10T010000Z', '2025-01-20T010000Z', '2025-02-05T010000Z', '2025-02-06T010000Z', '2025-03-01T010000Z'];
    for (const n of old) await mkdir(join(snaps(), n, 'x'), { recursive: true });
    const killed = join(snaps(), '2026-01-01T000000Z.partial');
    await mkdir(join(killed, src, 'etc'), { recursive: true });
    await writeFile(join(killed, src, 'etc', 'stray'), 'from a source file deleted since\n');
    const r = await backup(['--keep-daily', '2', '--keep-weekly', '0', '--keep-monthly', '3', '--save']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.doc.resumed).toBe('2026-01-01T000000Z.partial');
    const third = r.doc.snapshot!;
    await expect(lstat(killed)).rejects.toThrow();
    await expect(stat(join(snaps(), third, src, 'etc', 'stray'))).rejects.toThrow();
    // daily 2: the newest of the two newest days with snapshots (today: this run's; 2025-03-01);
    // monthly 3: the newest of this month, of 2025-03 and of 2025-02 (02-06). Today's older two go.
    const today = [first, second, third];
    const kept = await names();
    expect(kept).toContain(third);
    expect(kept).toContain('2025-03-01T010000Z');
    expect(kept).toContain('2025-02-06T010000Z');
    expect(kept).not.toContain('2025-02-05T010000Z');
    expect(kept).not.toContain('2025-01-20T010000Z');
    expect(kept).not.toContain('2025-01-10T010000Z');
    expect(kept.filter((n) => today.includes(n))).toEqual([third]);
    expect(await latest()).toBe(third);
    const cfg = JSON.parse(await readFile(p.config, 'utf8')) as { backup: { keep: unknown } };
    expect(cfg.backup.keep).toEqual({ daily: 2, weekly: 0, monthly: 3 });
  }, 120_000);

  it('the timer: a service and a timer for this config that pass systemd-analyze verify', async () => {
    const dir = join(t, 'units');
    const r = await hbs(['backup', '--config', p.config, '--install-timer', '--on-calendar', '*-*-* 02:30', '--systemd-dir', dir]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const files = (await readdir(dir)).filter((f) => f.startsWith('hbs-backup@')).sort();
    expect(files).toHaveLength(2);
    const [service, timer] = files.map((f) => join(dir, f)) as [string, string];
    expect(service.endsWith('.service') && timer.endsWith('.timer')).toBe(true);
    const serviceText = await readFile(service, 'utf8');
    expect(serviceText).toMatch(new RegExp(`^ExecStart=\\S+ \\S+ --config ${p.config} backup$`, 'm'));
    const timerText = await readFile(timer, 'utf8');
    expect(timerText).toMatch(/^OnCalendar=\*-\*-\* 02:30$/m);
    expect(timerText).toMatch(/^Persistent=true$/m);
    expect(timerText).toMatch(/^RandomizedDelaySec=/m);
    expect(await readlink(join(dir, 'timers.target.wants', files[1]!))).toBe(timer);
    const v = await execa('systemd-analyze', ['verify', service, timer], { reject: false });
    expect(v.stderr).toBe('');
    expect(v.exitCode).toBe(0);
  });

  it('with the box gone the run fails and writes nothing into the bare mount point; with it back the run brings the stack up', async () => {
    expect((await hbs(['umount', '--config', p.config])).exitCode).toBe(0);
    await box.stop();
    try {
      const r = await hbs(['backup', '--config', p.config]);
      expect(r.stderr).toMatch(/^hbs: Mount the box with sshfs: /m);
      expect(r.exitCode).toBe(1);
      expect(await readdir(p.mountPoint)).toEqual([]);
      expect((await execa('findmnt', ['--mountpoint', p.mountPoint], { reject: false })).exitCode).not.toBe(0);
    } finally {
      box = await startBox({ stateDir: join(boxFs, 'state') });
    }
    const before = await hbs(['status', '--json', '--config', p.config]);
    expect((JSON.parse(before.stdout) as StatusReport).lastBackup?.result).toBe('failed');
    const r = await backup();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.doc.previous).toMatch(/^\d{4}-/);
    expect(await latest()).toBe(r.doc.snapshot);
  }, 180_000);

  it('kill -9 in the middle of rsync: rsync dies with it, the lock goes; the next run resumes the .partial and completes it', async () => {
    const good = await latest();
    await execa('dd', ['if=/dev/urandom', `of=${join(src, 'big')}`, 'bs=1M', 'count=120', 'status=none']);
    const sum = (f: string) => execa('sha256sum', [f]).then((r) => r.stdout.split(' ')[0]);
    const want = await sum(join(src, 'big'));
    await nextSecond();
    const child = execa(HBS, ['backup', '--config', p.config], { reject: false, env: { NO_COLOR: '1' } });
    let partial = '';
    // Until rsync is writing the big file into the .partial (its temporary name starts with .big).
    for (let i = 0; i < 600 && !partial; i++) {
      const part = (await readdir(snaps()).catch(() => [] as string[])).find((n) => n.endsWith('.partial'));
      const inside = part ? await readdir(join(snaps(), part, src)).catch(() => [] as string[]) : [];
      if (part && inside.some((n) => n.startsWith('.big.'))) partial = part;
      else await sleep(100);
    }
    expect(partial).not.toBe('');
    // rsync, hbs's child, stopped first: it cannot finish on its own, only the kernel's SIGKILL ends it.
    const rsync = (await execa('pgrep', ['-P', String(child.pid), 'rsync'])).stdout.trim().split('\n').map(Number);
    expect(rsync).toHaveLength(1);
    process.kill(rsync[0]!, 'SIGSTOP');
    const writers = async () => (await execa('pgrep', ['-f', `${snaps()}/${partial}`], { reject: false })).stdout.trim();
    try {
      process.kill(child.pid!, 'SIGKILL');
      await child;
      // rsync (and the children it forked) go with it: nothing writes into the .partial any more.
      for (let i = 0; i < 100 && (await writers()) !== ''; i++) await sleep(100);
      expect(await writers()).toBe('');
    } finally {
      for (const pid of (await writers()).split('\n').filter(Boolean).map(Number)) process.kill(pid, 'SIGKILL');
    }
    expect(await latest()).toBe(good);
    const r = await backup();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.doc.resumed).toBe(partial);
    expect(await latest()).toBe(r.doc.snapshot);
    expect(await sum(join(snaps(), r.doc.snapshot!, src, 'big'))).toBe(want);
    expect((await readdir(join(snaps(), r.doc.snapshot!, src))).filter((n) => n.startsWith('.big.'))).toEqual([]);
    expect((await readdir(snaps())).filter((n) => n.endsWith('.partial'))).toEqual([]);
    await rm(join(src, 'big'));
  }, 300_000);

  it('a run that fills the box exits non-zero; the snapshot stays .partial and `latest` still names the previous one', async () => {
    const good = await latest();
    await execa('dd', ['if=/dev/urandom', `of=${join(src, 'big')}`, 'bs=1M', 'count=700', 'status=none']);
    try {
      await nextSecond();
      const r = await hbs(['backup', '--json', '--config', p.config]);
      expect(r.exitCode).toBe(1);
      // Measured: rsync itself exits 0 here (ext4 takes the writes into the page cache); the sync after it (EIO or EROFS), or the check after that, fails.
      expect(r.stderr).toMatch(/^hbs: (sync -f \S+ failed: |the snapshot is not complete|rsync failed)/);
      expect((JSON.parse(r.stdout) as { result: string }).result).toBe('failed');
      expect(await latest()).toBe(good);
      const all = await readdir(snaps());
      expect(all.filter((n) => n.endsWith('.partial'))).toHaveLength(1);
      const s = JSON.parse((await hbs(['status', '--json', '--config', p.config])).stdout) as StatusReport;
      expect(s.lastBackup?.result).toBe('failed');
      expect(s.lastBackup?.exitCode).toBe(1);
      // The next run does not write into a filesystem that failed.
      await nextSecond();
      const again = await hbs(['backup', '--config', p.config]);
      expect(again.exitCode).toBe(1);
      expect(again.stderr).toMatch(/^hbs: not backing up: /);
      expect(await latest()).toBe(good);
      expect((await readdir(snaps())).filter((n) => n.endsWith('.partial'))).toHaveLength(1);
    } finally {
      await rm(join(src, 'big'), { force: true });
    }
  }, 600_000);
});
