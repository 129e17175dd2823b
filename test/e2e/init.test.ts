/**
 * End to end: the built `bin/hbs init` against a real sshd on 127.0.0.1, real sshfs/FUSE, a real
 * loop device and real e2fsprogs. Needs root; says why it skips elsewhere.
 */
import { quoteArg } from '../../src/core/runner.js';
import { createHash } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { e2eUnavailable, startBox, type StandInBox } from '../support/stand-in-box.js';
import { hbs, loopDioAt, readAheadAt, teardown, watchArgv } from './helpers.js';

const skip = await e2eUnavailable();
if (skip) console.warn(`skipping end-to-end init tests: ${skip}`);

const sha = async (p: string): Promise<string> => createHash('sha256').update(await readFile(p)).digest('hex');

describe.skipIf(skip !== undefined)('hbs init against a real local SSH server', () => {
  let box: StandInBox;
  let t: string;
  let p: { config: string; fstab: string; key: string; boxMount: string; mountPoint: string };
  const FSTAB_BEFORE = '# /etc/fstab: static file system information.\n#\tkept\n\nproc   /proc\tproc  defaults   0 0\n# last line without newline';
  const OLD_KEYS = '# keys from before\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl old@elsewhere\n';

  const initArgs = (extra: string[] = []): string[] => [
    'init', '--yes',
    '--user', box.user, '--host', box.host, '--port', String(box.port),
    '--size', '10G',
    '--box-mount', p.boxMount, '--mount-point', p.mountPoint,
    '--ssh-key', p.key, '--host-key-fingerprint', box.hostKeyFingerprint,
    '--fstab', p.fstab, '--config', p.config,
    ...extra,
  ];

  beforeAll(async () => {
    box = await startBox();
    // Paths with a space: they must survive argv, sshfs options and fstab escaping.
    t = await mkdtemp(join(tmpdir(), 'hbs e2e-'));
    p = {
      config: join(t, 'etc', 'config.json'),
      fstab: join(t, 'fstab'),
      key: join(t, 'keys', 'hbs key'),
      boxMount: join(t, 'box'),
      mountPoint: join(t, 'mnt point'),
    };
    await writeFile(p.fstab, FSTAB_BEFORE);
    const sshDir = join(box.home, '.ssh');
    await mkdir(sshDir, { mode: 0o700 });
    await writeFile(join(sshDir, 'authorized_keys'), OLD_KEYS, { mode: 0o600 });
    const { stdout } = await execa('id', ['-u', box.user]);
    await chown(sshDir, Number(stdout), Number(stdout));
    await chown(join(sshDir, 'authorized_keys'), Number(stdout), Number(stdout));
  });

  afterAll(async () => {
    if (p) await teardown([p.mountPoint, join(t, 'mnt2')], [p.boxMount, join(t, 'box2')]);
    await box?.stop();
    if (t) await rm(t, { recursive: true, force: true });
  });

  it('sets up everything with the password on stdin, never in argv', async () => {
    const { result: r, leaks } = await watchArgv(box.password, () => hbs(initArgs(['--password-stdin']), { input: box.password + '\n' }));
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(leaks).toEqual([]);
    expect(r.stdout).toContain(`  hbs --config ${quoteArg(p.config)} backup --source /etc --source /home`);
    expect(r.stdout).not.toContain(box.password);
  });

  it('leaves key login working, with both key formats and the old lines in authorized_keys', async () => {
    const ak = await readFile(join(box.home, '.ssh', 'authorized_keys'), 'utf8');
    expect(ak.startsWith(OLD_KEYS)).toBe(true);
    expect(ak.endsWith('\n')).toBe(true);
    const pub = (await readFile(`${p.key}.pub`, 'utf8')).trim().split(/\s+/)[1]!;
    expect(ak).toContain('---- BEGIN SSH2 PUBLIC KEY ----');
    expect(ak.split('\n').filter((l) => l.startsWith('ssh-ed25519 ' + pub))).toHaveLength(1);
    expect((await stat(join(box.home, '.ssh'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(box.home, '.ssh', 'authorized_keys'))).mode & 0o777).toBe(0o600);
    expect((await stat(p.key)).mode & 0o777).toBe(0o600);
    const login = await execa(
      'sftp',
      ['-b', '-', '-P', String(box.port), '-i', p.key, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
        '-o', `UserKnownHostsFile="${join(t, 'etc', 'known_hosts')}"`, '-o', 'StrictHostKeyChecking=yes', `${box.user}@${box.host}`],
      { input: 'pwd\n', reject: false },
    );
    expect(login.stderr).not.toMatch(/denied|verification failed/i);
    expect(login.exitCode).toBe(0);
  });

  it('made a sparse ext4 image on the box and mounted it', async () => {
    const image = join(box.home, 'filesystem.img');
    const st = await stat(image);
    expect(st.size).toBe(10 * 1024 ** 3);
    expect(st.blocks * 512).toBeLessThan(16 * 1024 * 1024);
    const probe = await execa('blkid', ['--probe', '--output', 'export', image]);
    expect(probe.stdout).toContain('TYPE=ext4');
    const config = JSON.parse(await readFile(p.config, 'utf8')) as { image: { uuid: string } };
    expect(probe.stdout).toContain(`UUID=${config.image.uuid}`);
    expect((await stat(p.config)).mode & 0o777).toBe(0o600);
    const m = await execa('findmnt', ['--json', '--mountpoint', p.mountPoint, '--output', 'SOURCE,FSTYPE']);
    expect(m.stdout).toContain('"fstype": "ext4"');
    // The loop device buffered, the box mount reading ahead 4 MiB (restores at link speed; steps/box.ts, steps/fs.ts).
    expect(await loopDioAt(p.mountPoint)).toBe('0');
    expect(await readAheadAt(p.boxMount)).toBe('4096');
    const box_ = await execa('findmnt', ['--json', '--mountpoint', p.boxMount, '--output', 'SOURCE,FSTYPE']);
    expect(box_.stdout).toContain('"fstype": "fuse.sshfs"');
  });

  it('keeps owners through unmount and remount (what plain sshfs cannot)', async () => {
    const f = join(p.mountPoint, 'owned-by-4242');
    await writeFile(f, 'data');
    await chown(f, 4242, 4343);
    await chmod(f, 0o640);
    // Plain sshfs on the same box refuses the same chown: the problem hbs solves.
    await expect(chown(join(p.boxMount, '.profile'), 4242, 4343)).rejects.toThrow();
    await execa('umount', [p.mountPoint]);
    await execa('mount', ['-o', 'loop', join(p.boxMount, 'filesystem.img'), p.mountPoint]);
    const st = await stat(f);
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([4242, 4343, 0o640]);
    expect(await readFile(f, 'utf8')).toBe('data');
  });

  it('wrote an fstab block that findmnt --verify accepts and that mounts the stack', async () => {
    const fstab = await readFile(p.fstab, 'utf8');
    expect(fstab.startsWith(FSTAB_BEFORE + '\n# BEGIN hbs managed block')).toBe(true);
    const v = await execa('findmnt', ['--verify', '--tab-file', p.fstab], { reject: false });
    expect(v.stdout + v.stderr).toMatch(/0 parse errors, 0 errors|Success, no errors/);
    expect(v.exitCode).toBe(0);
    const backups = (await execa('ls', [t])).stdout.split('\n').filter((n) => n.startsWith('fstab.hbs-backup-'));
    expect(backups).toHaveLength(1);
    expect(await readFile(join(t, backups[0]!), 'utf8')).toBe(FSTAB_BEFORE);
    // The lines themselves work: take the stack down and bring it up from this fstab alone.
    await teardown([p.mountPoint], [p.boxMount]);
    await execa('mount', ['--fstab', p.fstab, p.boxMount]);
    await execa('mount', ['--fstab', p.fstab, p.mountPoint]);
    expect((await stat(join(p.mountPoint, 'owned-by-4242'))).uid).toBe(4242);
    // `mount -a` again (an admin's habit) sees both lines as mounted: the box is not mounted on top
    // of itself, and the image does not get a second loop device and a second ext4 mount.
    await execa('mount', ['-a', '-T', p.fstab]);
    await execa('mount', ['-a', '-T', p.fstab]);
    for (const mp of [p.boxMount, p.mountPoint]) {
      const lines = (await execa('findmnt', ['-rn', '-o', 'SOURCE', '--mountpoint', mp])).stdout.trim().split('\n');
      expect(lines, mp).toHaveLength(1);
    }
    expect((await execa('losetup', ['--associated', join(p.boxMount, 'filesystem.img')])).stdout.trim().split('\n')).toHaveLength(1);
    // fstab cannot set the box mount's readahead; `hbs mount` on the stack boot brought up raises it (and status says so before).
    const before = JSON.parse((await hbs(['status', '--json', '--config', p.config])).stdout) as { box: { readAheadKb: number } };
    expect(before.box.readAheadKb).toBe(Number(await readAheadAt(p.boxMount)));
    expect(before.box.readAheadKb).toBeLessThan(4096);
    const m = await hbs(['mount', '--config', p.config]);
    expect(m.exitCode, m.stderr).toBe(0);
    expect(await readAheadAt(p.boxMount)).toBe('4096');
    expect(await loopDioAt(p.mountPoint)).toBe('0');
  });

  it('changes nothing when run again with the same answers', async () => {
    const before = { fstab: await sha(p.fstab), config: await sha(p.config), ak: await sha(join(box.home, '.ssh', 'authorized_keys')) };
    const r = await hbs(initArgs());
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).not.toMatch(/^✔/m); // every step reports "already done" (•), none did work
    expect(r.stdout.match(/^• /gm)?.length).toBeGreaterThanOrEqual(10);
    expect({ fstab: await sha(p.fstab), config: await sha(p.config), ak: await sha(join(box.home, '.ssh', 'authorized_keys')) }).toEqual(before);
  });

  it('--dry-run prints the plan and changes nothing on the machine or the box', async () => {
    const other = { config: join(t, 'etc2', 'config.json'), boxMount: join(t, 'box2'), mountPoint: join(t, 'mnt2') };
    const fstabBefore = await sha(p.fstab);
    const r = await hbs([
      'init', '--yes', '--dry-run', '--user', box.user, '--host', box.host, '--port', String(box.port), '--size', '5G',
      '--image', 'second.img', '--box-mount', other.boxMount, '--mount-point', other.mountPoint, '--ssh-key', p.key,
      '--host-key-fingerprint', box.hostKeyFingerprint, '--fstab', p.fstab, '--config', other.config,
    ]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^ {2}! sshfs -o /m);
    expect(r.stdout).toContain('! mkfs.ext4');
    await expect(stat(other.config)).rejects.toThrow();
    await expect(stat(other.boxMount)).rejects.toThrow();
    await expect(stat(join(t, 'etc2'))).rejects.toThrow();
    await expect(stat(join(box.home, 'second.img'))).rejects.toThrow();
    expect(await sha(p.fstab)).toBe(fstabBefore);
  });

  it('--dry-run --encrypt --luks-unattended shows the crypttab line (the key file by path, never a key) and writes nothing', async () => {
    // crypttab cannot hold white space (systemd does not unescape it): this run's own paths have some.
    const spaced = (c: string): string[] => [
      'init', '--yes', '--dry-run', '--user', box.user, '--host', box.host, '--port', String(box.port), '--size', '5G',
      '--image', 'enc5.img', '--box-mount', join(c, 'box5'), '--mount-point', join(c, 'mnt5'), '--ssh-key', p.key,
      '--host-key-fingerprint', box.hostKeyFingerprint, '--fstab', p.fstab, '--config', join(c, 'etc5', 'config.json'),
      '--encrypt', '--luks-passphrase-stdin', '--luks-unattended', '--crypttab', join(c, 'crypttab5'),
    ];
    const pass = 'dry run passphrase';
    const refused = await hbs(spaced(t), { input: `${pass}\n` });
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(/crypttab line for --luks-unattended cannot be written: image path ".*box5\/enc5\.img" has white space/);
    const c = await mkdtemp(join(tmpdir(), 'hbs-dry-'));
    try {
      const r = await hbs(spaced(c), { input: `${pass}\n` });
      expect(r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toContain(`! back up ${join(c, 'crypttab5')} (if it exists), then write its hbs block (${join(c, 'etc5', 'config.json')}) — the line that opens the image at boot`);
      expect(r.stdout).toContain(`!   | hbs-enc5 ${join(c, 'box5')}/enc5.img ${join(c, 'etc5', 'hbs-enc5.key')} luks,_netdev,nofail,headless=true`);
      // The fstab lines too, exactly as they would be written.
      expect(r.stdout).toMatch(/! {3}\| \/dev\/mapper\/hbs-enc5 \S+mnt5 ext4 _netdev,nofail,noatime,noinit_itable,x-systemd\.requires-mounts-for=/);
      expect(r.stdout).not.toContain(pass);
      expect(await readdir(c)).toEqual([]);
    } finally {
      await rm(c, { recursive: true, force: true });
    }
  });

  it('refuses an image file it did not create, and leaves it untouched', async () => {
    const foreign = join(box.home, 'foreign.img');
    await writeFile(foreign, 'somebody else\'s data\n'.repeat(1000));
    const before = await sha(foreign);
    const r = await hbs([...initArgs(), '--image', 'foreign.img', '--config', join(t, 'etc3', 'config.json'), '--no-fstab', '--mount-point', join(t, 'mnt3')]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/foreign\.img already exists on the box .* hbs left it untouched/);
    expect(await sha(foreign)).toBe(before);
    await expect(stat(join(t, 'etc3', 'config.json'))).rejects.toThrow();
  });

  it('refuses bad input with exit 2 and changes nothing', async () => {
    const fresh = join(t, 'etc4', 'config.json');
    for (const bad of [['--size', '1.5.0G'], ['--user', 'root'], ['--host', 'box;reboot'], ['--port', '70000'], ['--mount-point', 'relative/dir'], ['--image', '../escape.img']]) {
      const r = await hbs([...initArgs(['--config', fresh]), ...bad]);
      expect(r.exitCode, bad.join(' ')).toBe(2);
      expect(r.stderr).toContain(bad[1]);
      expect(r.stderr.trim().split('\n')[0]).toMatch(/^hbs: /);
    }
    const noPassword = await hbs([...initArgs(['--config', fresh]), '--ssh-key', join(t, 'keys4', 'new key')]);
    expect(noPassword.exitCode).toBe(2);
    expect(noPassword.stderr).toContain('--password-stdin');
    await expect(stat(join(t, 'keys4'))).rejects.toThrow();
    const mismatch = await hbs([...initArgs(['--config', fresh]), '--host-key-fingerprint', 'SHA256:' + 'A'.repeat(43)]);
    expect(mismatch.exitCode).toBe(2);
    expect(mismatch.stderr).toContain(box.hostKeyFingerprint);
    await expect(stat(join(t, 'etc4'))).rejects.toThrow();
  });

  it('never overwrites a config that describes another setup', async () => {
    const before = await sha(p.config);
    const r = await hbs([...initArgs(), '--image', 'other.img']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('already describes another setup');
    expect(await sha(p.config)).toBe(before);
    await expect(stat(join(box.home, 'other.img'))).rejects.toThrow();
  });
});
