/**
 * End to end: kill -9 at any moment, then the same command again finishes the job — nothing lost,
 * no manual step. A sweep: for each command, hbs is killed (it, every process it started, and the
 * sshfs daemons it left serving its mounts — as a crash or a cgroup kill would) the moment a given
 * program starts (each step's first command, and inside the long ones), and at fixed delays; then
 * the same command runs again without a kill, and the result is checked.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blobsIn } from '../../src/lib/rfc4716.js';
import type { StatusReport } from '../../src/lib/status-report.js';
import { e2eUnavailable, startBox, type StandInBox } from '../support/stand-in-box.js';
import { HBS, hbs, teardown } from './helpers.js';

const skip = await e2eUnavailable();

interface Proc {
  pid: number;
  ppid: number;
  argv: string[];
}

async function processes(): Promise<Proc[]> {
  const out: Proc[] = [];
  for (const e of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(e)) continue;
    const [stat, cmd] = await Promise.all([readFile(`/proc/${e}/stat`, 'utf8').catch(() => ''), readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '')]);
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (stat) out.push({ pid: Number(e), ppid, argv: cmd.split('\0').filter(Boolean) });
  }
  return out;
}

/**
 * A moment to kill at: when a program of the run starts (the shell glob `at` matches "PROGRAM ARGS";
 * with `insideMs`, that long after it started, while it runs), or a delay after hbs started.
 */
type KillPoint = { name: string; at: string; insideMs?: number } | { name: string; afterMs: number };

const SHIMMED = ['cat', 'ssh-keyscan', 'ssh-keygen', 'sshfs', 'fusermount3', 'sftp', 'stat', 'truncate', 'mkfs.ext4', 'dumpe2fs', 'mount', 'umount', 'losetup', 'findmnt', 'blkid', 'sync', 'e2fsck', 'resize2fs', 'cryptsetup'];

/**
 * Shims on PATH in front of the real programs: the one whose command line matches $HBS_KILL_AT says
 * so (its pid in $SHIM_DIR/hit) and then waits to be killed — or runs the real program, to be killed
 * inside it. Every other call goes straight to the real program.
 */
async function makeShims(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const shim = [
    '#!/bin/sh',
    'me=$(basename "$0")',
    'real=$(PATH=$(printf %s "$PATH" | sed "s#^$SHIM_DIR:##") command -v "$me")',
    'line="$me $*"',
    'if [ -n "$HBS_KILL_AT" ] && [ ! -e "$SHIM_DIR/hit" ]; then',
    '  case "$line" in',
    '    $HBS_KILL_AT)',
    '      echo $$ > "$SHIM_DIR/hit.tmp" && mv "$SHIM_DIR/hit.tmp" "$SHIM_DIR/hit"',
    '      if [ -n "$HBS_KILL_INSIDE" ]; then exec "$real" "$@"; fi',
    '      exec sleep 1000 ;;',
    '  esac',
    'fi',
    'exec "$real" "$@"',
    '',
  ].join('\n');
  for (const name of SHIMMED) await writeFile(join(dir, name), shim, { mode: 0o755 });
}

/**
 * Runs hbs and kills it with SIGKILL at the kill point: hbs, every process below it, and the sshfs
 * processes serving `paths` (detached daemons) — as a crash or a cgroup kill would. Returns whether
 * the point was reached (a run that ended before it was not killed).
 */
/** The hbs runs this file killed: what they left in the temporary directory is cleaned up at the end, also after a failure. */
const killedPids = new Set<number>();

/** The temporary home mounts (and directories) of killed runs, if a failed test left them. */
async function cleanKilledTemp(): Promise<void> {
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    const m = /^hbs-[a-z]+-(\d+)-/.exec(name);
    if (!m || !killedPids.has(Number(m[1]))) continue;
    const dir = join(tmpdir(), name);
    if ((await execa('findmnt', [dir], { reject: false })).exitCode === 0) await execa('umount', ['-l', dir], { reject: false });
    // rmdir, never recursive: the box's files could be under it.
    await execa('rmdir', [dir], { reject: false });
  }
}

async function runKilled(shims: string, args: string[], point: KillPoint, paths: string[], input = ''): Promise<boolean> {
  await rm(join(shims, 'hit'), { force: true });
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', SHIM_DIR: shims, PATH: `${shims}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` };
  if ('at' in point) {
    env.HBS_KILL_AT = point.at;
    if (point.insideMs) env.HBS_KILL_INSIDE = '1';
  }
  const child = execFile(HBS, args, { env });
  if (child.pid) killedPids.add(child.pid);
  child.stdin?.end(input);
  let done = false;
  const exited = new Promise<void>((resolve) => child.on('exit', () => void ((done = true), resolve())));
  const started = Date.now();
  let hitAt: number | undefined;
  let hit = false;
  while (!done) {
    if (hitAt === undefined && 'at' in point && (await readFile(join(shims, 'hit'), 'utf8').catch(() => '')).trim()) hitAt = Date.now();
    hit = 'afterMs' in point ? Date.now() - started >= point.afterMs : hitAt !== undefined && Date.now() - hitAt >= (point.insideMs ?? 0);
    if (hit) break;
    await new Promise((r) => setTimeout(r, 1));
  }
  if (hit) {
    const all = await processes();
    const tree = new Set([child.pid!]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const q of all) if (!tree.has(q.pid) && tree.has(q.ppid)) grew = tree.add(q.pid) !== undefined;
    }
    const daemons = all.filter((q) => (q.argv[0] ?? '').endsWith('sshfs') && paths.some((x) => q.argv.some((a) => a.startsWith(x))));
    for (const pid of [...tree, ...daemons.map((d) => d.pid)]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
  await exited;
  return hit;
}

describe.skipIf(skip !== undefined)('kill -9 at any moment; the same command again finishes the job', () => {
  let box: StandInBox;
  let t: string;
  let shims: string;
  const p = { config: '', fstab: '', key: '', boxMount: '', mountPoint: '' };
  const reached: Record<string, string[]> = { init: [], mount: [], umount: [], grow: [], uninstall: [] };
  const initArgs = (): string[] => [
    'init', '--yes', '--user', box.user, '--host', box.host, '--port', String(box.port), '--size', '3G', '--box-mount', p.boxMount, '--mount-point', p.mountPoint,
    '--ssh-key', p.key, '--host-key-fingerprint', box.hostKeyFingerprint, '--fstab', p.fstab, '--config', p.config, '--password-stdin', '--no-systemd',
  ];
  const status = async (): Promise<StatusReport> => JSON.parse((await hbs(['status', '--json', '--config', p.config])).stdout) as StatusReport;
  /** hbs's temporary directories whose process is gone (other tests' may be there, alive). */
  const tempLeft = async (): Promise<string[]> =>
    (await readdir(tmpdir())).filter((n) => {
      const m = /^hbs-(home|verify|probe)-(\d+)-/.exec(n);
      if (!m) return false;
      try {
        process.kill(Number(m[2]), 0);
        return false;
      } catch {
        return true;
      }
    });

  /** Everything init made, gone: a fresh server and a fresh box account (the key too). */
  async function fresh(): Promise<void> {
    await teardown([p.mountPoint], [p.boxMount]);
    for (const f of ['filesystem.img', 'filesystem.img.hbs-lock', '.ssh']) await rm(join(box.home, f), { recursive: true, force: true });
    await rm(join(t, 'server'), { recursive: true, force: true });
    await mkdir(join(t, 'server'), { recursive: true });
    await writeFile(p.fstab, '# the fstab of this test\n');
  }

  /** What a finished init leaves: mounted and healthy, one key of each format on the box, one fstab block, ext4 clean, nothing temporary. */
  async function expectFinished(what: string): Promise<void> {
    const s = await status();
    expect(s.healthy, `${what}: ${JSON.stringify(s)}`).toBe(true);
    const keys = blobsIn(await readFile(join(box.home, '.ssh', 'authorized_keys'), 'utf8'));
    expect([keys.rfc4716.size, keys.openssh.size], what).toEqual([1, 1]);
    const fstab = await readFile(p.fstab, 'utf8');
    expect(fstab.match(/# BEGIN hbs managed block/g)?.length, what).toBe(1);
    expect(await readdir(join(t, 'server', 'etc')).then((n) => n.filter((x) => x.endsWith('.creating'))), what).toEqual([]);
    expect(await tempLeft(), what).toEqual([]);
    const loops = (await execa('losetup', ['--associated', join(p.boxMount, 'filesystem.img')])).stdout.trim().split('\n').filter(Boolean);
    expect(loops, what).toHaveLength(1);
  }

  async function fsckClean(what: string): Promise<void> {
    const down = await hbs(['umount', '--config', p.config]);
    expect(down.exitCode, `${what}: ${down.stdout}${down.stderr}`).toBe(0);
    const f = await execa('e2fsck', ['-fn', join(box.home, 'filesystem.img')], { reject: false });
    expect(f.exitCode, `${what}: ${f.stdout}`).toBe(0);
  }

  beforeAll(async () => {
    box = await startBox();
    t = await mkdtemp(join(tmpdir(), 'hbs-crash-'));
    shims = join(t, 'shims');
    await makeShims(shims);
    Object.assign(p, {
      config: join(t, 'server', 'etc', 'config.json'),
      fstab: join(t, 'server', 'fstab'),
      key: join(t, 'server', 'key'),
      boxMount: join(t, 'box'),
      mountPoint: join(t, 'mnt'),
    });
  });

  afterAll(async () => {
    await teardown([p.mountPoint], [p.boxMount]);
    await cleanKilledTemp();
    await box?.stop();
    if (t) await rm(t, { recursive: true, force: true });
    console.info(`kill points reached: ${Object.entries(reached).map(([k, v]) => `${k} ${v.length} (${v.join(', ')})`).join('; ')}`);
  });

  const initPoints = (): KillPoint[] => [
    { name: 'host keys (ssh-keyscan)', at: 'ssh-keyscan *' },
    { name: 'key made (ssh-keygen)', at: 'ssh-keygen -q *' },
    { name: 'key upload: password mount', at: 'sshfs *password_stdin*' },
    { name: 'key upload: inside the password mount', at: 'sshfs *password_stdin*', insideMs: 150 },
    { name: 'key upload: unmounting', at: 'fusermount3 -u *hbs-home-*' },
    { name: 'key login check (sftp)', at: 'sftp *' },
    { name: 'box mount (sshfs)', at: `sshfs *${p.boxMount}` },
    { name: 'inside the box mount', at: `sshfs *${p.boxMount}`, insideMs: 100 },
    { name: 'space (stat -f)', at: 'stat --file-system*' },
    { name: 'image made (truncate)', at: 'truncate *' },
    { name: 'mkfs.ext4', at: 'mkfs.ext4 *' },
    { name: 'inside mkfs.ext4', at: 'mkfs.ext4 *', insideMs: 30 },
    { name: 'superblock before the mount (dumpe2fs)', at: 'dumpe2fs *' },
    { name: 'mount', at: `mount -t ext4 *${p.mountPoint}` },
    { name: 'inside the mount', at: `mount -t ext4 *${p.mountPoint}`, insideMs: 20 },
    { name: 'box readahead', at: 'cat */read_ahead_kb' },
    { name: 'fstab check (findmnt --verify)', at: 'findmnt --verify*' },
    ...[400, 1200, 2400].map((ms) => ({ name: `${ms} ms`, afterMs: ms })),
  ];

  it('init: killed at every step (and inside mkfs, the mount, the key upload), a second init finishes it', async () => {
    const only = process.env.HBS_CRASH_ONLY;
    for (const point of initPoints().filter((x) => !only || x.name.includes(only))) {
      await fresh();
      const hit = await runKilled(shims, initArgs(), point, [p.boxMount, join(tmpdir(), 'hbs-home-')], box.password + '\n');
      if (hit) reached.init!.push(point.name);
      const again = await hbs(initArgs(), { input: box.password + '\n' });
      expect(again.stderr, `init after a kill at ${point.name}`).toBe('');
      expect(again.exitCode, `init after a kill at ${point.name}: ${again.stdout}`).toBe(0);
      await expectFinished(`init after a kill at ${point.name}`);
      await fsckClean(`init after a kill at ${point.name}`);
    }
    if (!only) expect(reached.init!.length).toBeGreaterThanOrEqual(19);
  }, 900_000);

  it('mount and umount: killed anywhere, the same command again finishes; the data stays', async () => {
    await fresh();
    const init = await hbs(initArgs(), { input: box.password + '\n' });
    expect(init.exitCode, init.stdout + init.stderr).toBe(0);
    await writeFile(join(p.mountPoint, 'data'), 'written before any kill\n');
    // Written and synced: what a crash may lose is only what was never synced, as on any disk.
    await execa('sync');
    const sum = createHash('sha256').update(await readFile(join(p.mountPoint, 'data'))).digest('hex');
    const mountPoints: KillPoint[] = [
      { name: 'box mount (sshfs)', at: 'sshfs *' },
      { name: 'image check (blkid)', at: 'blkid *' },
      { name: 'superblock (dumpe2fs)', at: 'dumpe2fs *' },
      { name: 'mount', at: `mount -t ext4 *` },
      { name: 'box readahead', at: 'cat */read_ahead_kb' },
      ...[100, 300, 600].map((ms) => ({ name: `${ms} ms`, afterMs: ms })),
    ];
    const umountPoints: KillPoint[] = [
      { name: 'sync', at: 'sync *' },
      { name: 'umount', at: 'umount *' },
      { name: 'inside umount', at: 'umount *', insideMs: 5 },
      { name: 'fusermount3', at: 'fusermount3 *' },
      ...[100, 300].map((ms) => ({ name: `${ms} ms`, afterMs: ms })),
    ];
    // Down and up again, each with a kill: as many rounds as the longer list has points.
    for (let i = 0; i < Math.max(umountPoints.length, mountPoints.length); i++) {
      const point = umountPoints[i % umountPoints.length]!;
      if (await runKilled(shims, ['umount', '--config', p.config], point, [p.boxMount])) reached.umount!.push(point.name);
      const again = await hbs(['umount', '--config', p.config]);
      expect(again.exitCode, `umount after a kill at ${point.name}: ${again.stderr}`).toBe(0);
      const s = await status();
      expect([s.box.state, s.filesystem.state], `umount after a kill at ${point.name}`).toEqual(['down', 'down']);
      expect((await execa('losetup', ['--list', '--noheadings'])).stdout, `umount after a kill at ${point.name}`).not.toContain(p.boxMount);
      const mp = mountPoints[i % mountPoints.length]!;
      if (await runKilled(shims, ['mount', '--config', p.config], mp, [p.boxMount])) reached.mount!.push(mp.name);
      const up = await hbs(['mount', '--config', p.config]);
      expect(up.exitCode, `mount after a kill at ${mp.name}: ${up.stderr}`).toBe(0);
      expect((await status()).healthy, `mount after a kill at ${mp.name}`).toBe(true);
      expect(createHash('sha256').update(await readFile(join(p.mountPoint, 'data'))).digest('hex')).toBe(sum);
    }
    reached.umount = [...new Set(reached.umount)];
    reached.mount = [...new Set(reached.mount)];
    await fsckClean('after the mount/umount sweep');
  }, 900_000);

  it('grow: killed anywhere, the same grow again finishes it; ext4 clean, the data intact', async () => {
    expect((await hbs(['mount', '--config', p.config])).exitCode).toBe(0);
    const sum = createHash('sha256').update(await readFile(join(p.mountPoint, 'data'))).digest('hex');
    const points: KillPoint[] = [
      { name: 'file extended (truncate)', at: 'truncate *' },
      { name: 'loop refreshed (losetup --set-capacity)', at: 'losetup --set-capacity*' },
      { name: 'online resize2fs', at: 'resize2fs /dev/loop*' },
      { name: 'unmounted for the offline path', at: 'umount *' },
      { name: 'e2fsck -f', at: 'e2fsck *' },
      { name: 'inside e2fsck -f', at: 'e2fsck *', insideMs: 50 },
      { name: 'offline resize2fs', at: 'resize2fs *filesystem.img' },
      { name: 'inside the offline resize2fs', at: 'resize2fs *filesystem.img', insideMs: 50 },
      { name: 'mounted again', at: 'mount -t ext4 *' },
      ...[200, 800].map((ms) => ({ name: `${ms} ms`, afterMs: ms })),
    ];
    let size = 3;
    for (const point of points) {
      size += 1;
      const args = ['grow', '--size', `${size}G`, '--offline', '--config', p.config];
      if (await runKilled(shims, args, point, [p.boxMount])) reached.grow!.push(point.name);
      // A kill during the offline path may leave it unmounted: mount brings it back, grow finishes.
      const grown = await hbs(args);
      if (grown.exitCode !== 0) {
        expect(grown.stderr, `grow after a kill at ${point.name}`).toMatch(/hbs mount/);
        const up = await hbs(['mount', '--config', p.config]);
        expect(up.exitCode, `mount after a kill at ${point.name} and a grow (${grown.stdout}${grown.stderr}): ${up.stdout}${up.stderr}`).toBe(0);
        const again = await hbs(args);
        expect(again.exitCode, `grow after a kill at ${point.name}: ${again.stderr}`).toBe(0);
      }
      const s = await status();
      expect(s.image.sizeBytes, `grow after a kill at ${point.name}`).toBe(size * 1024 ** 3);
      expect(s.healthy, `grow after a kill at ${point.name}`).toBe(true);
      expect(createHash('sha256').update(await readFile(join(p.mountPoint, 'data'))).digest('hex')).toBe(sum);
    }
    await fsckClean('after the grow sweep');
  }, 900_000);

  it('uninstall: killed anywhere, uninstall again finishes it (the fstab as it was, nothing mounted, the image kept); adopt brings it back', async () => {
    await fresh();
    const FSTAB = '# the fstab of this test\n';
    const init = await hbs(initArgs(), { input: box.password + '\n' });
    expect(init.exitCode, init.stdout + init.stderr).toBe(0);
    await writeFile(join(p.mountPoint, 'data'), 'written before any kill\n');
    await execa('sync');
    const home = join(tmpdir(), 'hbs-home-');
    const points: KillPoint[] = [
      { name: 'home mount for the box key (sshfs)', at: 'sshfs *' },
      { name: 'inside the home mount', at: 'sshfs *', insideMs: 100 },
      { name: 'home unmount', at: `fusermount3 -u ${home}*` },
      { name: 'sync', at: 'sync *' },
      { name: 'umount', at: 'umount *' },
      { name: 'inside umount', at: 'umount *', insideMs: 5 },
      { name: 'box unmount', at: `fusermount3 -u ${p.boxMount}` },
      ...[1500, 2500].map((ms) => ({ name: `${ms} ms`, afterMs: ms })),
    ];
    const args = ['uninstall', '--yes', '--remove-box-key', '--config', p.config];
    const reachedHere: string[] = [];
    for (const point of points) {
      if (await runKilled(shims, args, point, [p.boxMount, home])) reachedHere.push(point.name);
      const again = await hbs(args);
      // Killed after the last step (the config), there is nothing left to go by: exit 2, and all is done.
      const gone = again.exitCode === 2 && again.stderr.includes('no config at');
      expect(again.exitCode === 0 || gone, `uninstall after a kill at ${point.name}: ${again.stdout}${again.stderr}`).toBe(true);
      expect(await readFile(p.fstab, 'utf8'), `uninstall after a kill at ${point.name}`).toBe(FSTAB);
      for (const f of [p.config, p.key, `${p.key}.pub`, p.mountPoint]) await expect(stat(f), `${f} after a kill at ${point.name}`).rejects.toThrow();
      expect((await execa('findmnt', ['--list', '--noheadings', '-o', 'TARGET'])).stdout, `after a kill at ${point.name}`).not.toContain(t);
      expect((await execa('losetup', ['--list', '--noheadings'])).stdout).not.toContain(p.boxMount);
      expect(await tempLeft(), `after a kill at ${point.name}`).toEqual([]);
      const keys = blobsIn(await readFile(join(box.home, '.ssh', 'authorized_keys'), 'utf8').catch(() => ''));
      expect([keys.rfc4716.size, keys.openssh.size], `box key after a kill at ${point.name}`).toEqual([0, 0]);
      const adopt = await hbs([...initArgs(), '--adopt'], { input: box.password + '\n' });
      expect(adopt.exitCode, `adopt after a kill at ${point.name}: ${adopt.stdout}${adopt.stderr}`).toBe(0);
      expect(await readFile(join(p.mountPoint, 'data'), 'utf8')).toBe('written before any kill\n');
    }
    reached.uninstall = reachedHere;
    expect(reachedHere.length).toBeGreaterThanOrEqual(7);
    await fsckClean('after the uninstall sweep');
  }, 900_000);
});
