/**
 * End to end: `bin/hbs init --adopt` against a real sshd, with a real LUKS2 image on the box (made
 * with cryptsetup on the plain file: header operations work without device-mapper). Everything up
 * to opening is real here: the refusals, the key check and the dry-run. Opening and mounting need
 * dm-crypt, which this kernel lacks: test/vm/adopt.vmtest.ts runs the whole adoption in a VM.
 */
import { createHash } from 'node:crypto';
import { chown, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { e2eUnavailable, startBox, type StandInBox } from '../support/stand-in-box.js';
import { hbs, teardown, watchArgv } from './helpers.js';

const skip = await e2eUnavailable();
if (skip) console.warn(`skipping end-to-end adopt tests: ${skip}`);

const PASS = 'adopt me: "quoted" pass phrase';
const sha = async (p: string): Promise<string> => createHash('sha256').update(await readFile(p)).digest('hex');

describe.skipIf(skip !== undefined)('hbs init --adopt on a real LUKS2 image on a real local SSH server', () => {
  let box: StandInBox;
  let t: string;
  let image: string;
  let p: { config: string; fstab: string; key: string; boxMount: string; mountPoint: string };

  const args = (extra: string[]): string[] => [
    'init', '--yes',
    '--user', box.user, '--host', box.host, '--port', String(box.port),
    '--box-mount', p.boxMount, '--mount-point', p.mountPoint,
    '--ssh-key', p.key, '--host-key-fingerprint', box.hostKeyFingerprint,
    '--fstab', p.fstab, '--config', p.config,
    ...extra,
  ];
  const env = (): Record<string, string> => ({ HBS_BOX_PASSWORD: box.password });

  beforeAll(async () => {
    box = await startBox();
    t = await mkdtemp(join(tmpdir(), 'hbs-adopt-'));
    p = {
      config: join(t, 'etc', 'config.json'),
      fstab: join(t, 'fstab'),
      key: join(t, 'keys', 'hbs_key'),
      boxMount: join(t, 'box'),
      mountPoint: join(t, 'mnt'),
    };
    // The old server's image: 1 GiB sparse, LUKS2 with the passphrase, owned by the box account.
    image = join(box.home, 'filesystem.img');
    await execa('truncate', ['--size=1G', image]);
    await execa('cryptsetup', ['luksFormat', '--batch-mode', '--type', 'luks2', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000', '--key-file', '-', image], { input: PASS });
    const { stdout } = await execa('id', ['-u', box.user]);
    await chown(image, Number(stdout), Number(stdout));
  });

  afterAll(async () => {
    if (p) await teardown([p.mountPoint], [p.boxMount]);
    await box?.stop();
    if (t) await rm(t, { recursive: true, force: true });
  });

  it('without --adopt: refused and untouched; the hint says --adopt', async () => {
    const before = await sha(image);
    const r = await hbs(args(['--size', '1G']), { env: env() });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/filesystem\.img already exists on the box \(1 GiB, LUKS2 encrypted, UUID [0-9a-f-]+\) .* hbs left it untouched/);
    expect(r.stderr).toMatch(/^hint: .*re-run with --adopt/m);
    expect(await sha(image)).toBe(before);
    await expect(stat(p.config)).rejects.toThrow();
  });

  it('--adopt without a key (no terminal): exit 2, naming the ways to give it', async () => {
    const r = await hbs(args(['--adopt']), { env: env() });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/is LUKS2 encrypted, UUID .*: adopting it needs its key/);
    expect(r.stderr).toContain('--luks-passphrase-stdin');
    await expect(stat(p.config)).rejects.toThrow();
  });

  it('--adopt with a wrong passphrase: one line, exit 2, nothing written (image, config, header backup, fstab)', async () => {
    const before = await sha(image);
    const r = await hbs(args(['--adopt', '--luks-passphrase-stdin']), { input: 'wrong passphrase\n', env: env() });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe(`hbs: the passphrase does not open ${p.boxMount}/filesystem.img (no key slot matches); nothing was changed`);
    expect(r.stdout).toContain('✖ LUKS2 encryption on the image');
    expect(r.stdout).not.toMatch(/cryptsetup (open --type|luksFormat|luksHeaderBackup)|mkfs/);
    expect(await sha(image)).toBe(before);
    await expect(stat(p.config)).rejects.toThrow();
    await expect(stat(join(t, 'etc', 'hbs-filesystem.luks-header'))).rejects.toThrow();
    expect(await readFile(p.fstab, 'utf8').catch(() => '')).toBe('');
  });

  it('--adopt --dry-run with the passphrase: the key is checked, the plan has no format and no secret', async () => {
    const before = await sha(image);
    const { result: r, leaks } = await watchArgv(PASS, () => hbs(args(['--adopt', '--luks-passphrase-stdin', '--dry-run', '--verbose']), { input: PASS, env: env() }));
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(leaks).toEqual([]);
    expect(r.stdout).not.toContain(PASS);
    expect(r.stdout).toContain(`adopting ${p.boxMount}/filesystem.img as it is (1 GiB, LUKS2 encrypted`);
    expect(r.stdout).toContain(`! cryptsetup luksHeaderBackup ${p.boxMount}/filesystem.img --header-backup-file ${join(t, 'etc', 'hbs-filesystem.luks-header')}`);
    expect(r.stdout).toContain(`! cryptsetup open --type luks2 --key-file - ${p.boxMount}/filesystem.img hbs-filesystem <<(stdin)`);
    expect(r.stdout).not.toMatch(/luksFormat|luksAddKey|mkfs|truncate/);
    expect(await sha(image)).toBe(before);
    await expect(stat(p.config)).rejects.toThrow();
  });

  it('a wrong passphrase in a dry-run is found too (the key check is read-only)', async () => {
    const r = await hbs(args(['--adopt', '--luks-passphrase-stdin', '--dry-run']), { input: 'nope', env: env() });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('does not open');
  });
});
