/**
 * End to end: two configs on one server (two stand-in boxes, the same image name, the defaults each
 * config derives from its name), both mounted and healthy at once; `hbs status --all`; a collision
 * refused; `hbs uninstall` of one leaving the other alone; the fstab byte for byte as it was; and
 * `hbs init --adopt` bringing the uninstalled image back with its data.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { e2eUnavailable, startBox, type StandInBox } from '../support/stand-in-box.js';
import { hbs, teardown } from './helpers.js';
import { unitName } from '../../src/lib/systemd.js';

const skip = await e2eUnavailable();
if (skip) console.warn(`skipping end-to-end multi-box tests: ${skip}`);

const isMounted = async (p: string): Promise<boolean> => (await execa('findmnt', ['--mountpoint', p], { reject: false })).exitCode === 0;
const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

/** A hand-kept fstab with no final newline. */
const ORIGINAL_FSTAB = '# /etc/fstab of a test machine\nUUID=0000-test /  ext4\terrors=remount-ro 0 1\n# keep this comment';

describe.skipIf(skip !== undefined)('two configs on one server, and hbs uninstall', () => {
  let boxA: StandInBox;
  let boxB: StandInBox;
  let t: string;
  let etc: string;
  let fstab: string;
  let key: string;
  const tag = randomBytes(3).toString('hex');
  // Config names: the defaults (mount points under /srv/backup/NAME/) come from them.
  const names = { a: `mb-a-${tag}`, b: `mb-b-${tag}` };
  const config = (n: string): string => join(etc, `${n}.json`);
  const mountPoint = (n: string): string => `/srv/backup/${n}/backup`;
  const boxMount = (n: string): string => `/srv/backup/${n}/hetzner-backup-space`;
  const initArgs = (n: string, box: StandInBox, extra: string[] = []): string[] => [
    '--config', config(n), 'init', '--yes', '--user', box.user, '--host', box.host, '--port', String(box.port),
    '--ssh-key', key, '--host-key-fingerprint', box.hostKeyFingerprint, '--fstab', fstab, '--systemd-dir', join(t, 'systemd'),
    '--password-stdin', ...extra,
  ];
  const status = (n: string) => hbs(['--config', config(n), 'status']);

  beforeAll(async () => {
    [boxA, boxB] = await Promise.all([startBox(), startBox()]);
    t = await mkdtemp(join(tmpdir(), 'hbs-multi-'));
    etc = join(t, 'etc', 'hbs');
    fstab = join(t, 'fstab');
    key = join(t, 'ssh', 'hbs_ed25519');
    await mkdir(join(t, 'ssh'), { recursive: true });
    await writeFile(fstab, ORIGINAL_FSTAB);
  });

  afterAll(async () => {
    const all = [names.a, names.b];
    await teardown(all.map(mountPoint), all.map(boxMount));
    for (const n of all) {
      // rmdir only: never a recursive delete where a box may still be mounted.
      for (const d of [mountPoint(n), boxMount(n), `/srv/backup/${n}`]) await rmdir(d).catch(() => undefined);
    }
    await boxA?.stop();
    await boxB?.stop();
    if (t) await rm(t, { recursive: true, force: true });
  });

  it('two boxes, the same image name: both set up with their own defaults, both mounted and healthy at once', async () => {
    const a = await hbs(initArgs(names.a, boxA, ['--size', '1G']), { input: boxA.password + '\n' });
    expect(a.stderr).toBe('');
    expect(a.exitCode).toBe(0);
    const b = await hbs(initArgs(names.b, boxB, ['--size', '1G']), { input: boxB.password + '\n' });
    expect(b.stderr).toBe('');
    expect(b.exitCode).toBe(0);
    for (const [n, box] of [[names.a, boxA], [names.b, boxB]] as const) {
      expect(await isMounted(mountPoint(n))).toBe(true);
      expect(await isMounted(boxMount(n))).toBe(true);
      expect(await exists(join(box.home, 'filesystem.img'))).toBe(true);
      await writeFile(join(mountPoint(n), 'whose'), `${n}'s data\n`);
    }
    await execa('sync');
    for (const n of [names.a, names.b]) {
      const s = await status(n);
      expect(s.stdout).toMatch(/^filesystem +up /m);
      expect(s.exitCode).toBe(0);
    }
  });

  it('status --all: one line per config, exit 0 while all are healthy; --json too', async () => {
    const r = await hbs(['--config', config(names.a), 'status', '--all']);
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^ok  ${config(names.a)}  healthy: ${mountPoint(names.a)} `));
    expect(lines[1]).toMatch(new RegExp(`^ok  ${config(names.b)}  healthy: ${mountPoint(names.b)} `));
    const j = await hbs(['--config', config(names.b), 'status', '--all', '--json']);
    expect(j.exitCode).toBe(0);
    const doc = JSON.parse(j.stdout) as { healthy: boolean; configs: { config: string; healthy: boolean }[] };
    expect(doc.healthy).toBe(true);
    expect(doc.configs.map((c) => [c.config, c.healthy])).toEqual([[config(names.a), true], [config(names.b), true]]);
  });

  it("a third config with the first one's mount point is refused: exit 2, one line naming it, nothing changed", async () => {
    const before = await readFile(fstab, 'utf8');
    const c = `mb-c-${tag}`;
    const r = await hbs([...initArgs(c, boxB, ['--size', '1G', '--mount-point', mountPoint(names.a)])], { input: boxB.password + '\n' });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe(`hbs: --mount-point ${mountPoint(names.a)} is the mount point of ${config(names.a)} already`);
    expect(await readFile(fstab, 'utf8')).toBe(before);
    expect(await exists(config(c))).toBe(false);
    expect(await exists(`/srv/backup/${c}`)).toBe(false);
  });

  it('uninstall --dry-run prints the list and changes nothing', async () => {
    const before = { fstab: await readFile(fstab, 'utf8'), etc: (await readdir(etc)).sort() };
    const r = await hbs(['--config', config(names.a), 'uninstall', '--dry-run']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain(`! umount ${mountPoint(names.a)}`);
    expect(r.stdout).toContain(`! remove the hbs block (${config(names.a)}) from ${fstab}`);
    expect(r.stdout).toContain(`! rm ${config(names.a)}  (the config)`);
    expect(await isMounted(mountPoint(names.a))).toBe(true);
    expect(await readFile(fstab, 'utf8')).toBe(before.fstab);
    expect((await readdir(etc)).sort()).toEqual(before.etc);
  });

  it('uninstall of one (with --remove-box-key) leaves the other untouched and healthy; the shared key stays', async () => {
    const authorized = join(boxA.home, '.ssh', 'authorized_keys');
    const foreign = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl admin@laptop\n';
    await writeFile(authorized, foreign + (await readFile(authorized, 'utf8')));
    const bFiles = await Promise.all([readFile(config(names.b), 'utf8'), readFile(join(boxB.home, '.ssh', 'authorized_keys'), 'utf8')]);
    const started = Date.now();
    const r = await hbs(['--config', config(names.a), 'uninstall', '--yes', '--remove-box-key']);
    const ms = Date.now() - started;
    console.log(`hbs uninstall (plain, with --remove-box-key): ${ms} ms`);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain(`the SSH key ${key}: ${config(names.b)} uses it too`);
    // a: down and gone from this machine; its image and data stay on the box.
    expect(await isMounted(mountPoint(names.a))).toBe(false);
    expect(await isMounted(boxMount(names.a))).toBe(false);
    expect(await exists(config(names.a))).toBe(false);
    expect(await exists(mountPoint(names.a))).toBe(false);
    expect(await exists(join(boxA.home, 'filesystem.img'))).toBe(true);
    expect(await exists(join(boxA.home, 'filesystem.img.hbs-lock'))).toBe(false);
    // Only hbs's key left box a's authorized_keys.
    expect(await readFile(authorized, 'utf8')).toBe(foreign);
    expect(await readdir(join(t, 'systemd', 'multi-user.target.wants'))).toEqual([unitName(config(names.b))]);
    // b: as it was, and healthy.
    expect(await readFile(config(names.b), 'utf8')).toBe(bFiles[0]);
    expect(await readFile(join(boxB.home, '.ssh', 'authorized_keys'), 'utf8')).toBe(bFiles[1]);
    expect(await exists(key)).toBe(true);
    expect((await status(names.b)).exitCode).toBe(0);
    expect(await readFile(join(mountPoint(names.b), 'whose'), 'utf8')).toBe(`${names.b}'s data\n`);
    const all = await hbs(['--config', config(names.b), 'status', '--all']);
    expect(all.stdout.split('\n')).toHaveLength(1);
    expect(all.exitCode).toBe(0);
  });

  it('uninstall of a config that is gone says what it cannot know (exit 2)', async () => {
    const r = await hbs(['--config', config(names.a), 'uninstall', '--yes']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`no config at ${config(names.a)}: hbs cannot know what it set up for it`);
  });

  it('--delete-image with --yes and no terminal is refused (exit 2), nothing changed', async () => {
    const r = await hbs(['--config', config(names.b), 'uninstall', '--yes', '--delete-image']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('--delete-image');
    expect((await status(names.b)).exitCode).toBe(0);
  });

  it('init --adopt brings the uninstalled image back with its data', async () => {
    const r = await hbs(initArgs(names.a, boxA, ['--adopt']), { input: boxA.password + '\n' });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(await readFile(join(mountPoint(names.a), 'whose'), 'utf8')).toBe(`${names.a}'s data\n`);
    expect((await status(names.a)).exitCode).toBe(0);
    expect((await hbs(['--config', config(names.a), 'status', '--all'])).exitCode).toBe(0);
  });

  it('uninstalling both gives back the fstab byte for byte (no final newline) and leaves nothing mounted', async () => {
    for (const n of [names.b, names.a]) {
      const r = await hbs(['--config', config(n), 'uninstall', '--yes']);
      expect(r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
    }
    expect(await readFile(fstab, 'utf8')).toBe(ORIGINAL_FSTAB);
    for (const n of [names.a, names.b]) {
      expect(await isMounted(mountPoint(n))).toBe(false);
      expect(await isMounted(boxMount(n))).toBe(false);
    }
    const loops = await execa('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE']);
    expect(loops.stdout).not.toContain(`/srv/backup/mb-`);
    // What is left in the config directory: the logs hbs kept, no config, no known_hosts; the key hbs made is gone with the last config.
    expect((await readdir(etc)).filter((f) => !f.startsWith('logs'))).toEqual([]);
    expect(await exists(key)).toBe(false);
    expect(await readdir(join(t, 'systemd'), { recursive: true })).toEqual(['multi-user.target.wants']);
    // The directories hbs made for the derived mount points, /srv/backup/NAME included.
    for (const n of [names.a, names.b]) expect(await exists(`/srv/backup/${n}`)).toBe(false);
    // The images stay on the boxes.
    for (const box of [boxA, boxB]) expect(await exists(join(box.home, 'filesystem.img'))).toBe(true);
  });
});
