/**
 * `hbs init --encrypt`, through initCommand on the fake machine: LUKS2 between the image and
 * ext4, its keys on stdin only, the header backup, the unattended key and its crypttab line, the
 * key derivation flags, and the dry-run that shows all of it without a secret.
 */
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initCommand, type InitCliFlags } from '../../../src/commands/init/index.js';
import { EXIT } from '../../../src/core/errors.js';
import type { Config } from '../../../src/lib/config.js';
import { formatCmd } from '../../../src/core/runner.js';
import type { FakeMachine } from '../../support/fake-machine.js';
import { expectGolden, stableByteCounts } from '../../support/golden.js';
import { block, configFile, fakeBox, initFlags, listTree, MAPPER, modeOf, PINNED, shownContent } from '../../support/init.js';
import { GiB, HOST, IMAGE, makeSandbox, PASSPHRASE, rejection, testIo, USER, UUID, type Sandbox, type TestIo } from '../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
/** Files a test made outside the sandbox (generated key files live in /dev/shm). */
const outside: string[] = [];
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
});
afterEach(async () => {
  await sb.cleanup();
  for (const f of outside.splice(0)) await rm(f, { force: true });
});

const init = (flags: InitCliFlags = {}, io: TestIo = testIo(m)) => initCommand(initFlags(sb, flags), io);
const tmp = (lines: readonly string[]) => lines.map((l) => l.split(sb.root).join('<tmp>'));
const header = () => join(sb.configDir, `${MAPPER}.luks-header`);
const keep = () => join(sb.configDir, `${MAPPER}.key`);
const mapper = `/dev/mapper/${MAPPER}`;

/** The ssh key and the pin of an earlier run, so no box password is needed. */
async function keyAndPin(): Promise<void> {
  await mkdir(join(sb.root, 'ssh'), { recursive: true });
  await writeFile(sb.sshKey, 'fake private key\n', { mode: 0o600 });
  await writeFile(`${sb.sshKey}.pub`, m.world.publicKey);
  await mkdir(sb.configDir, { recursive: true });
  await writeFile(sb.knownHosts, PINNED, { mode: 0o600 });
}

/** `--encrypt --luks-passphrase-stdin` with the passphrase on stdin. */
const withPassphrase = (flags: InitCliFlags = {}): [InitCliFlags, TestIo] => [{ encrypt: true, luksPassphraseStdin: true, ...flags }, testIo(m, { stdin: `${PASSPHRASE}\n` })];

/** A fresh name for a generated key file under /dev/shm, removed after the test. */
function generatedName(): string {
  const name = `hbs-unit-${process.pid}-${outside.length}`;
  outside.push(`/dev/shm/${name}.key`);
  return name;
}

/** No argv, shown command or reported line may carry a secret. */
function assertNowhere(secret: string, io: TestIo): void {
  for (const c of m.commands) {
    expect(c.argv.join(' ')).not.toContain(secret);
    expect(formatCmd(c)).not.toContain(secret);
  }
  expect(io.reporter.lines.join('\n')).not.toContain(secret);
}

describe('hbs init --encrypt', () => {
  it('luksFormat with the passphrase on stdin, a 0600 header backup, then open, mkfs on the mapping (lazy init), mount it', async () => {
    await keyAndPin();
    const [flags, io] = withPassphrase();
    await init(flags, io);

    expect(m.ran).toEqual([
      `sshfs -o ${m.ran[0]!.split(' ')[2]} ${USER}@${HOST}:backup ${sb.boxMount}`,
      `truncate '--size=>10737418240' ${sb.image}`,
      `cryptsetup luksFormat --batch-mode --type luks2 --uuid ${UUID} --key-file - ${sb.image} <<(stdin)`,
      `cryptsetup luksHeaderBackup ${sb.image} --header-backup-file ${header()}`,
      `chmod 0600 ${header()}`,
      `cryptsetup open --type luks2 --key-file - ${sb.image} ${MAPPER} <<(stdin)`,
      `mkfs.ext4 -q -L hbs-backup -U ${UUID} -m 0 -e remount-ro -O 'meta_bg,^resize_inode' -E lazy_itable_init=1,lazy_journal_init=1,nodiscard ${mapper}`,
      `mount -t ext4 -o noatime,noinit_itable ${mapper} ${sb.mountPoint}`,
    ]);
    // The passphrase went to cryptsetup as its exact bytes (no newline), and is the image's only key.
    const keyed = m.commands.filter((c) => c.stdin !== undefined);
    expect(keyed.map((c) => Buffer.from(c.stdin!).toString())).toEqual([PASSPHRASE, PASSPHRASE]);
    expect(m.world.luks.get(sb.image)?.keys).toEqual([PASSPHRASE]);
    expect(await modeOf(header())).toBe(0o600);
    // The mapping's loop device is buffered (reads come through the page cache); ext4 is on the mapping.
    expect(m.world.mappings.get(MAPPER)).toMatchObject({ backing: sb.image, loop: '/dev/loop0' });
    expect(m.loopOf(sb.image)?.directIo).toBe(false);
    expect(m.world.signatures.get(mapper)).toEqual({ TYPE: 'ext4', UUID });
    // The config records the encryption, never a secret; fstab does not mount it at boot (noauto).
    const cfg = (await configFile(sb));
    expect(cfg.encryption).toEqual({ type: 'luks2', mapperName: MAPPER, keys: ['passphrase'], headerBackup: header(), unattendedKeyFile: null });
    expect(cfg.filesystem.mountOptions).toEqual(['noatime', 'noinit_itable']);
    expect((await readFile(sb.fstab, 'utf8')).split('\n')[2]).toBe(
      `${mapper} ${sb.mountPoint} ext4 noauto,_netdev,nofail,noatime,noinit_itable,x-systemd.requires-mounts-for=${sb.boxMount} 0 0`,
    );
    assertNowhere(PASSPHRASE, io);
    expect(await readFile(sb.config, 'utf8')).not.toContain(PASSPHRASE);
    expect(tmp(io.reporter.lines)).toContain('Key slots: passphrase.');
  });

  it('HBS_LUKS_PASSPHRASE works as well, and is taken out of the environment', async () => {
    await keyAndPin();
    const env: NodeJS.ProcessEnv = { HBS_LUKS_PASSPHRASE: PASSPHRASE };
    await init({ encrypt: true }, testIo(m, { env }));
    expect(env.HBS_LUKS_PASSPHRASE).toBeUndefined();
    expect(m.world.luks.get(sb.image)?.keys).toEqual([PASSPHRASE]);
  });

  it('a key file alone: its raw bytes on stdin, binary intact; the file is read, never deleted', async () => {
    await keyAndPin();
    const keyFile = join(sb.root, 'backup.key');
    const bytes = Buffer.from([0, 1, 2, 255, 10, 13, 0x80]);
    await writeFile(keyFile, bytes, { mode: 0o600 });
    await init({ encrypt: true, luksKeyFile: keyFile });
    const format = m.commands.find((c) => c.argv[1] === 'luksFormat');
    expect(Buffer.from(format!.stdin!)).toEqual(bytes);
    expect(m.ran.some((l) => l.includes('luksAddKey'))).toBe(false);
    expect(await readFile(keyFile)).toEqual(bytes);
    expect((await configFile(sb)).encryption?.keys).toEqual(['keyfile']);
  });

  it('passphrase and a generated key file: 64 random bytes under /dev/shm (0600) go into a second slot, then the file is shredded', async () => {
    await keyAndPin();
    const name = generatedName();
    const file = `/dev/shm/${name}.key`;
    let seen: Buffer | undefined;
    const run = m.run.bind(m);
    m.run = async (cmd) => {
      if (cmd.argv[1] === 'luksAddKey') {
        seen = await readFile(file);
        expect((await stat(file)).mode & 0o777).toBe(0o600);
      }
      return run(cmd);
    };
    const [flags, io] = withPassphrase({ luksGenerateKey: true, luksName: name });
    await init(flags, io);
    expect(m.ran).toContain(`cryptsetup luksAddKey --batch-mode --key-file - ${sb.image} ${file} <<(stdin)`);
    const add = m.commands.find((c) => c.argv[1] === 'luksAddKey');
    expect(Buffer.from(add!.stdin!).toString()).toBe(PASSPHRASE); // the first key authorises the second
    expect(seen).toHaveLength(64);
    expect(m.world.luks.get(sb.image)?.keys).toEqual([PASSPHRASE, seen!.toString('hex')]);
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
    const out = io.reporter.lines.join('\n');
    expect(out).toContain(`A new LUKS key file was generated: ${file} (64 random bytes, mode 0600, in RAM).`);
    expect(out).toContain(`The generated key file ${file} was overwritten and deleted from this server`);
    expect((await configFile(sb)).encryption?.keys).toEqual(['passphrase', 'keyfile']);
  });

  it('--luks-keep-key keeps the generated key file; a failed run keeps it too (it may guard a key slot already)', async () => {
    await keyAndPin();
    const kept = generatedName();
    await init(...withPassphrase({ luksGenerateKey: true, luksKeepKey: true, luksName: kept }));
    expect((await stat(`/dev/shm/${kept}.key`)).size).toBe(64);

    await sb.cleanup();
    sb = await makeSandbox();
    m = fakeBox(sb);
    await keyAndPin();
    const failed = generatedName();
    m.failNext(['mount'], { exitCode: 32, stderr: 'mount: wrong fs type' });
    await rejection(init(...withPassphrase({ luksGenerateKey: true, luksName: failed })));
    expect((await stat(`/dev/shm/${failed}.key`)).size).toBe(64);
  });

  it('a header backup already there stops the run before luksFormat (cryptsetup would not overwrite it; it belongs to another header)', async () => {
    await keyAndPin();
    await writeFile(header(), 'an older header');
    const err = await rejection(init(...withPassphrase()));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`the header backup ${header()} exists already (from another image?)`);
    expect(m.ran.filter((l) => l.startsWith('cryptsetup'))).toEqual([]);
    expect(await readFile(header(), 'utf8')).toBe('an older header');
  });

  it('after a reboot, a re-run opens the recorded container (its ext4 checked) and mounts it; nothing is formatted again', async () => {
    await keyAndPin();
    await init(...withPassphrase());
    // Reboot: everything down, the box's files kept.
    await m.run({ argv: ['umount', sb.mountPoint] });
    await m.run({ argv: ['cryptsetup', 'close', MAPPER] });
    await m.run({ argv: ['fusermount3', '-u', sb.boxMount] });
    const ran = m.ran.length;
    const io = testIo(m, { stdin: PASSPHRASE });
    await init({ encrypt: true, luksPassphraseStdin: true }, io);
    expect(m.ran.slice(ran).map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual(['sshfs -o', 'cryptsetup open', 'mount -t']);
    expect(io.reporter.lines).toContain('• LUKS2 encryption on the image — the image is the recorded LUKS2 container; not formatted again');
    expect(io.reporter.lines).toContain(`• ext4 filesystem in the image — already ext4, UUID ${UUID}`);
  });
});

describe('hbs init --encrypt --luks-unattended', () => {
  const line = () => `${MAPPER} ${sb.image} ${keep()} luks,_netdev,nofail,headless=true`;

  it('keeps the first key in a 0400 file, writes the crypttab line (new file 0600) and an fstab line that mounts at boot', async () => {
    await keyAndPin();
    const [flags, io] = withPassphrase({ luksUnattended: true, crypttab: sb.crypttab });
    await init(flags, io);
    expect(await readFile(keep(), 'utf8')).toBe(PASSPHRASE);
    expect(await modeOf(keep())).toBe(0o400);
    expect(await readFile(sb.crypttab, 'utf8')).toBe(block(sb, [line()]));
    expect(await modeOf(sb.crypttab)).toBe(0o600);
    expect((await listTree(sb.root)).filter((f) => f.includes('hbs-backup'))).toEqual([]);
    expect((await readFile(sb.fstab, 'utf8')).split('\n')[2]).toBe(
      `${mapper} ${sb.mountPoint} ext4 _netdev,nofail,noatime,noinit_itable,x-systemd.requires-mounts-for=${sb.boxMount} 0 0`,
    );
    expect((await configFile(sb)).encryption).toEqual({
      type: 'luks2',
      mapperName: MAPPER,
      keys: ['passphrase'],
      headerBackup: header(),
      unattendedKeyFile: keep(),
      crypttab: sb.crypttab,
    });
    // crypttab before fstab: the fstab line relies on the mapping boot opens.
    const order = io.reporter.lines.filter((l) => /^[✔•] (crypttab|fstab)/.test(l));
    expect(order.map((l) => l.split(' ')[1])).toEqual(['crypttab', 'fstab']);
    const text = io.reporter.lines.join('\n');
    expect(text).toContain(`Unattended mounts: a key is kept at ${keep()} (mode 0400)`);
    expect(text).toMatch(/does NOT protect against: anyone with root on this machine/);
    assertNowhere(PASSPHRASE, io);
  });

  it('merges into an existing crypttab: its lines byte for byte, its mode, a backup first; a re-run changes nothing', async () => {
    await keyAndPin();
    const other = '# <target name> <source device> <key file> <options>\ncryptswap /dev/sda2 /dev/urandom swap,cipher=aes-xts-plain64\nhome UUID=1234 none luks,discard\n';
    await writeFile(sb.crypttab, other);
    await chmod(sb.crypttab, 0o644);
    const io = testIo(m, { stdin: PASSPHRASE });
    await init({ encrypt: true, luksPassphraseStdin: true, luksUnattended: true, crypttab: sb.crypttab }, io);
    expect(await readFile(sb.crypttab, 'utf8')).toBe(other + block(sb, [line()]));
    expect(await modeOf(sb.crypttab)).toBe(0o644);
    expect(await readFile(`${sb.crypttab}.hbs-backup-20250102T030405Z`, 'utf8')).toBe(other);

    const again = testIo(m, { stdin: PASSPHRASE });
    await init({ encrypt: true, luksPassphraseStdin: true, luksUnattended: true, crypttab: sb.crypttab }, again);
    expect(again.reporter.lines).toContain(`• crypttab line (opens the image at boot) — ${sb.crypttab} already has the hbs block`);
    expect(await readFile(sb.crypttab, 'utf8')).toBe(other + block(sb, [line()]));
    expect((await listTree(sb.root)).filter((p) => p.includes('crypttab.hbs-backup'))).toHaveLength(1);
  });

  it('an outdated hbs line is replaced in place, the lines around it kept', async () => {
    await keyAndPin();
    const old = block(sb, [line().replace(sb.image, `${sb.boxMount}/old.img`)]);
    await writeFile(sb.crypttab, `home UUID=1234 none luks\n${old}# mine\nbackup /dev/sdb1 none luks\n`);
    await init({ encrypt: true, luksPassphraseStdin: true, luksUnattended: true, crypttab: sb.crypttab }, testIo(m, { stdin: PASSPHRASE }));
    expect(await readFile(sb.crypttab, 'utf8')).toBe(`home UUID=1234 none luks\n${block(sb, [line()])}# mine\nbackup /dev/sdb1 none luks\n`);
  });

  it('--no-crypttab: no crypttab line (the config says null), `hbs mount` uses the kept key', async () => {
    await keyAndPin();
    await writeFile(sb.crypttab, 'home UUID=1234 none luks\n');
    const io = testIo(m, { stdin: PASSPHRASE });
    await init({ encrypt: true, luksPassphraseStdin: true, luksUnattended: true, crypttab: false }, io);
    expect(await readFile(sb.crypttab, 'utf8')).toBe('home UUID=1234 none luks\n');
    expect((await configFile(sb)).encryption?.crypttab).toBeNull();
    expect(io.reporter.lines).toContain('• crypttab line (opens the image at boot) — skipped (--no-crypttab)');
    expect(io.reporter.lines.join('\n')).toContain('no crypttab line: --no-crypttab; `hbs mount` uses the key');
  });

  it('without --luks-unattended there is no crypttab step at all, and no key rests on this machine', async () => {
    await keyAndPin();
    await writeFile(sb.crypttab, 'home UUID=1234 none luks\n');
    const io = testIo(m, { stdin: PASSPHRASE });
    await init({ encrypt: true, luksPassphraseStdin: true }, io);
    expect(io.reporter.lines.some((l) => l.includes('crypttab'))).toBe(false);
    expect(await readFile(sb.crypttab, 'utf8')).toBe('home UUID=1234 none luks\n');
    expect(Object.keys((await configFile(sb)).encryption ?? {})).not.toContain('crypttab');
    expect(await listTree(sb.configDir)).toEqual(['config.json', `${MAPPER}.luks-header`, 'known_hosts']);
  });

  it('paths crypttab cannot hold (systemd does not unescape them) are refused before anything changes; --no-crypttab allows them', async () => {
    const boxMount = join(sb.root, 'my box');
    const err = await rejection(init({ encrypt: true, luksPassphraseStdin: true, luksUnattended: true, crypttab: sb.crypttab, boxMount }, testIo(m, { stdin: PASSPHRASE })));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toMatch(/^the crypttab line for --luks-unattended cannot be written: image path ".*my box\/filesystem.img" has white space/);
    expect(err.hint).toContain('--no-crypttab');
    expect(m.ran).toEqual([]);
    expect(await listTree(sb.root)).toEqual([]);
    // With --no-crypttab nothing goes to crypttab, so the same paths pass that check.
    await keyAndPin();
    m.box(boxMount, sb.boxHome);
    await init({ encrypt: true, luksPassphraseStdin: true, luksUnattended: true, crypttab: false, boxMount }, testIo(m, { stdin: PASSPHRASE }));
    expect(m.world.mounts.get(sb.mountPoint)?.source).toBe(mapper);
  });
});

describe('hbs init --luks-pbkdf / --luks-iter-time', () => {
  it.each([
    [{ luksPbkdf: 'scrypt' }, '--luks-pbkdf "scrypt": one of argon2id, argon2i, pbkdf2'],
    [{ luksIterTime: '99' }, '--luks-iter-time "99": milliseconds, at least 100'],
    [{ luksIterTime: '0' }, '--luks-iter-time "0": milliseconds, at least 100'],
    [{ luksIterTime: '2s' }, '--luks-iter-time "2s": milliseconds, at least 100'],
    [{ luksIterTime: '-500' }, '--luks-iter-time "-500": milliseconds'],
  ] as [InitCliFlags, string][])('%j: exit 2 naming the bad value, before anything changes', async (bad, message) => {
    await keyAndPin();
    const err = await rejection(init(...withPassphrase(bad)));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message.startsWith(message)).toBe(true);
    expect(m.ran).toEqual([]);
    expect(await listTree(sb.configDir)).toEqual(['known_hosts']);
  });

  it('reach luksFormat and luksAddKey (for the key file slot) as cryptsetup --pbkdf / --iter-time; 100 ms is allowed', async () => {
    await keyAndPin();
    const keyFile = join(sb.root, 'second.key');
    await writeFile(keyFile, 'a second key');
    await init(...withPassphrase({ luksPbkdf: 'pbkdf2', luksIterTime: '100', luksKeyFile: keyFile }));
    expect(m.ran).toContain(`cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --iter-time 100 --uuid ${UUID} --key-file - ${sb.image} <<(stdin)`);
    expect(m.ran).toContain(`cryptsetup luksAddKey --batch-mode --pbkdf pbkdf2 --iter-time 100 --key-file - ${sb.image} ${keyFile} <<(stdin)`);
    expect(m.world.luks.get(sb.image)?.keys).toEqual([PASSPHRASE, 'a second key']);
  });

  it('without them, cryptsetup keeps its own defaults (no --pbkdf, no --iter-time)', async () => {
    await keyAndPin();
    await init(...withPassphrase());
    expect(m.ran.filter((l) => /--pbkdf|--iter-time/.test(l))).toEqual([]);
  });

  it('only go with --encrypt', async () => {
    const err = await rejection(init({ luksIterTime: '500' }));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe('--luks-iter-time only go with --encrypt (or --adopt, for an encrypted image already on the box)');
  });
});

describe('hbs init --encrypt --dry-run', () => {
  it('passphrase and a generated key file: prints every change, no secret, generates no key file (golden)', async () => {
    const name = 'hbs-filesystem';
    const io = testIo(m, { stdin: `${PASSPHRASE}\n` });
    await init({ dryRun: true, encrypt: true, luksPassphraseStdin: true, luksGenerateKey: true }, io);
    expect(m.ran).toEqual([]);
    expect(await listTree(sb.root)).toEqual([]);
    await expect(stat(`/dev/shm/${name}.key`)).rejects.toMatchObject({ code: 'ENOENT' });
    const text = io.reporter.lines.join('\n');
    expect(text).not.toContain(PASSPHRASE);
    expect(text).toContain(`  ! cryptsetup luksFormat --batch-mode --type luks2 --uuid ${UUID} --key-file - ${sb.image} <<(stdin)`);
    expect(text).toContain(`  ! cryptsetup luksAddKey --batch-mode --key-file - ${sb.image} /dev/shm/${name}.key <<(stdin)`);
    await expectGolden('init-encrypt-dry-run.txt', stableByteCounts(io.reporter.lines, sb.root), sb.root);
  });

  it('--luks-unattended: the crypttab line and the fstab lines as written, the kept key file only by size (never its content)', async () => {
    const io = testIo(m, { stdin: `${PASSPHRASE}\n` });
    await init({ dryRun: true, encrypt: true, luksPassphraseStdin: true, luksUnattended: true, crypttab: sb.crypttab, luksIterTime: '500' }, io);
    const lines = io.reporter.lines;
    expect(shownContent(lines, new RegExp(`^ {2}! back up ${sb.crypttab} \\(if it exists\\), then write its hbs block \\(${sb.config}\\) — the line that opens the image at boot`))).toEqual([
      `${MAPPER} ${sb.image} ${keep()} luks,_netdev,nofail,headless=true`,
    ]);
    expect(shownContent(lines, new RegExp(`^ {2}! back up ${sb.fstab} `))[1]).toBe(
      `${mapper} ${sb.mountPoint} ext4 _netdev,nofail,noatime,noinit_itable,x-systemd.requires-mounts-for=${sb.boxMount} 0 0`,
    );
    const keyWrite = lines.findIndex((l) => l.startsWith(`  ! write ${keep()} `));
    expect(lines[keyWrite]).toBe(
      `  ! write ${keep()} (the key for unattended mounts; anyone with root here can read it) (mode 0400, ${Buffer.byteLength(PASSPHRASE)} bytes, only if it does not exist)`,
    );
    expect(lines[keyWrite + 1]).not.toMatch(/^ {2}! {3}\|/);
    expect(lines).toContain(`  ! cryptsetup luksFormat --batch-mode --type luks2 --iter-time 500 --uuid ${UUID} --key-file - ${sb.image} <<(stdin)`);
    const config = JSON.parse(shownContent(lines, new RegExp(`^ {2}! write ${sb.config} `)).join('\n')) as Config;
    expect(config.encryption).toEqual({ type: 'luks2', mapperName: MAPPER, keys: ['passphrase'], headerBackup: header(), unattendedKeyFile: keep(), crypttab: sb.crypttab });
    expect(config.image).toEqual({ name: IMAGE, sizeBytes: 10 * GiB, uuid: UUID, label: 'hbs-backup' });
    expect(lines.join('\n')).not.toContain(PASSPHRASE);
    expect(m.ran).toEqual([]);
  });

  it('without any key and without a terminal: the plan still shows the keyed commands with their stdin marker', async () => {
    const io = testIo(m);
    await init({ dryRun: true, encrypt: true }, io);
    expect(io.reporter.lines).toContain(`  ! cryptsetup luksFormat --batch-mode --type luks2 --uuid ${UUID} --key-file - ${sb.image} <<(stdin)`);
    expect(io.reporter.lines).toContain(`  ! cryptsetup open --type luks2 --key-file - ${sb.image} ${MAPPER} <<(stdin)`);
  });

  it('a real run without any key and without a terminal: exit 2 before anything changes', async () => {
    const err = await rejection(init({ encrypt: true, passwordStdin: true }, testIo(m, { stdin: 'pw' })));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe('--encrypt needs a key: a passphrase or a key file');
    expect(m.ran).toEqual([]);
  });
});
