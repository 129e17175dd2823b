/**
 * `hbs init --adopt`: an image already on the box (a reinstalled server that lost its config) is
 * used as it is. Driven through initCommand on the fake machine; a luksFormat, luksAddKey, mkfs or
 * truncate anywhere in these runs would be a formatted image.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { askExistingPassphrase } from '../../../src/commands/init/encrypt.js';
import { initCommand, type InitCliFlags } from '../../../src/commands/init/index.js';
import { EXIT } from '../../../src/core/errors.js';
import { MemoryReporter } from '../../../src/core/reporter.js';
import { formatCmd } from '../../../src/core/runner.js';
import type { FakeMachine } from '../../support/fake-machine.js';
import { configFile, fakeBox, initFlags, listTree, MAPPER, modeOf, PINNED } from '../../support/init.js';
import {
  BOX_SOURCE,
  encryptedConfig,
  GiB,
  IMAGE,
  makeSandbox,
  OTHER_UUID,
  otherLock,
  PASSPHRASE,
  putOnBox,
  readLockFile,
  rejection,
  scriptedPrompter,
  testIo,
  writeConfig,
  writeLock,
  type Sandbox,
  type TestIo,
} from '../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
  // A reinstalled server: its hbs key and pin were restored (or made again and put on the box).
  await mkdir(join(sb.root, 'ssh'), { recursive: true });
  await writeFile(sb.sshKey, 'fake private key\n', { mode: 0o600 });
  await writeFile(`${sb.sshKey}.pub`, m.world.publicKey);
  await mkdir(sb.configDir, { recursive: true });
  await writeFile(sb.knownHosts, PINNED, { mode: 0o600 });
});
afterEach(async () => {
  await sb.cleanup();
});

const init = (flags: InitCliFlags = {}, io: TestIo = testIo(m)) => initCommand(initFlags(sb, flags), io);
const tmp = (lines: readonly string[]) => lines.map((l) => l.split(sb.root).join('<tmp>'));
/** `--adopt` without `--size`: the image on the box has its own. */
const adopt = (flags: InitCliFlags = {}): InitCliFlags => ({ adopt: true, size: undefined, ...flags });
const header = () => join(sb.configDir, `${MAPPER}.luks-header`);
const mapper = `/dev/mapper/${MAPPER}`;
const LUKS_UUID = '6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const FS_UUID = 'c0ffee00-1234-4567-89ab-cdef01234567';

const FORMATTING = /^(cryptsetup (luksFormat|luksAddKey|luksErase|erase|reencrypt)|mkfs|mke2fs|wipefs|truncate|dd)\b/;
const assertNothingFormatted = () => expect(m.ran.filter((l) => FORMATTING.test(l))).toEqual([]);

/** A plain ext4 image of 200 GiB on the box. */
async function plainImage(): Promise<void> {
  await putOnBox(sb, IMAGE);
  m.ext4(sb.image, OTHER_UUID);
  m.world.files.set(sb.image, { sizeBytes: 200 * GiB, allocatedBytes: 3 * GiB });
}

/** A LUKS2 image of 100 GiB on the box that opens with PASSPHRASE and holds an ext4. */
async function luksImage(keys = [PASSPHRASE]): Promise<void> {
  await putOnBox(sb, IMAGE);
  m.luksImage(sb.image, keys, LUKS_UUID);
  m.world.files.set(sb.image, { sizeBytes: 100 * GiB, allocatedBytes: 2 * GiB });
  m.ext4(mapper, FS_UUID);
}

const withPassphrase = (flags: InitCliFlags = {}, passphrase = PASSPHRASE): [InitCliFlags, TestIo] => [adopt({ luksPassphraseStdin: true, ...flags }), testIo(m, { stdin: `${passphrase}\n` })];

describe('hbs init --adopt, a plain image', () => {
  it('takes the ext4 image as it is: no truncate, no mkfs; the config records its own size and UUID', async () => {
    await plainImage();
    const io = testIo(m);
    await init(adopt(), io);
    assertNothingFormatted();
    expect(m.ran.map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual(['sshfs -o', 'mount -t']);
    expect(m.ran).toContain(`mount -t ext4 -o loop,noatime ${sb.image} ${sb.mountPoint}`);
    expect((await configFile(sb)).image).toEqual({ name: IMAGE, sizeBytes: 200 * GiB, uuid: OTHER_UUID, label: 'hbs-backup' });
    expect(tmp(io.reporter.lines)).toContain(`• Sparse image file on the box — adopted <tmp>/box/filesystem.img as it is (200 GiB, ext4 UUID ${OTHER_UUID}); not formatted`);
    expect(tmp(io.reporter.lines)).toContain('The image <tmp>/box/filesystem.img (200 GiB, ext4, adopted) is mounted at <tmp>/mnt.');
  });

  it('no placeholder size: a nearly full box does not refuse it, since nothing is created', async () => {
    await plainImage();
    const io = testIo(m);
    const mount = m.mountBox.bind(m);
    m.mountBox = async (target, source) => {
      await mount(target, source);
      if (target === sb.boxMount) m.world.space.set(target, { totalBytes: 1024 * GiB, freeBytes: 1024 ** 2 });
      return m;
    };
    await init(adopt(), io);
    expect(io.reporter.lines).toContain('• Space on the box — 1 MiB free of 1 TiB');
    expect((await configFile(sb)).image.sizeBytes).toBe(200 * GiB);
  });

  it('without --size and without an image there: exit 2, nothing created', async () => {
    const err = await rejection(init(adopt()));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`--adopt: there is no image at ${sb.image} to adopt`);
    expect(err.hint).toContain('--size');
    expect(m.ran.filter((l) => !l.startsWith('sshfs'))).toEqual([]);
    expect(await listTree(sb.boxMount)).toEqual([]);
  });

  it('with --size and no image there: a new one is made after all', async () => {
    await init({ adopt: true, size: '10G' });
    expect(m.ran).toContain(`truncate '--size=>10737418240' ${sb.image}`);
  });

  it('--dry-run with the box not mounted yet: the adoption is shown, never a create or a mkfs', async () => {
    await plainImage();
    const io = testIo(m);
    await init(adopt({ dryRun: true }), io);
    expect(m.ran).toEqual([]);
    const text = tmp(io.reporter.lines).join('\n');
    expect(text).not.toMatch(/truncate|mkfs|the sparse image/);
    expect(text).toContain('• Sparse image file on the box — --adopt: <tmp>/box/filesystem.img is used as it is (checked once the box is mounted); never formatted');
    expect(text).toContain('• ext4 filesystem in the image — adopted: its ext4 UUID is read once the box is mounted; never formatted');
    expect(text).toContain('  ! mount -t ext4 -o loop,noatime <tmp>/box/filesystem.img <tmp>/mnt');
  });

  it('with --encrypt (or a key) on a plain ext4 image: refused, encrypting it would mean formatting it (exit 2)', async () => {
    await plainImage();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    const err = await rejection(init(...withPassphrase({ encrypt: true })));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toMatch(/plain \(unencrypted\) ext4 image, so --encrypt cannot use it; hbs left it untouched$/);
    expect(err.hint).toContain('without --encrypt');
    expect(m.ran).toEqual([]);
  });
});

describe('hbs init --adopt, an encrypted image not recorded here', () => {
  it('with the right key: checks it, backs up the header, opens it, reads its ext4, writes config and fstab, mounts; never formats', async () => {
    await luksImage();
    const [flags, io] = withPassphrase();
    await init(flags, io);

    assertNothingFormatted();
    expect(m.ran.slice(1)).toEqual([
      `cryptsetup luksHeaderBackup ${sb.image} --header-backup-file ${header()}`,
      `chmod 0600 ${header()}`,
      `cryptsetup open --type luks2 --key-file - ${sb.image} ${MAPPER} <<(stdin)`,
      `mount -t ext4 -o noatime,noinit_itable ${mapper} ${sb.mountPoint}`,
    ]);
    const cfg = (await configFile(sb));
    expect(cfg.image).toEqual({ name: IMAGE, sizeBytes: 100 * GiB, uuid: FS_UUID, label: 'hbs-backup' });
    expect(cfg.filesystem.mountOptions).toEqual(['noatime', 'noinit_itable']);
    expect(cfg.encryption).toEqual({ type: 'luks2', mapperName: MAPPER, keys: ['passphrase'], headerBackup: header(), unattendedKeyFile: null });
    expect(await modeOf(header())).toBe(0o600);
    expect(await readFile(sb.fstab, 'utf8')).toContain(`${mapper} ${sb.mountPoint} ext4 noauto,_netdev,nofail,noatime,noinit_itable`);
    expect(tmp(io.reporter.lines.filter((l) => /^[•✔]/.test(l))).slice(9, 13)).toEqual([
      `• Sparse image file on the box — adopting <tmp>/box/filesystem.img as it is (100 GiB, LUKS2 encrypted, UUID ${LUKS_UUID}); never formatted`,
      `✔ LUKS2 encryption on the image — adopted as it is (LUKS UUID ${LUKS_UUID}): passphrase opens it; never formatted`,
      `✔ Open the encrypted image — ${mapper} open`,
      `• ext4 filesystem in the image — adopted: ext4 UUID ${FS_UUID} in ${mapper}; not formatted`,
    ]);
    expect(io.reporter.lines).toContain(`Encrypted with LUKS2, adopted as it was (no luksFormat, no mkfs); the filesystem is on ${mapper}.`);
    for (const c of m.commands) expect(formatCmd(c)).not.toContain(PASSPHRASE);
    expect(io.reporter.lines.join('\n')).not.toContain(PASSPHRASE);
    expect(await readFile(sb.config, 'utf8')).not.toContain(PASSPHRASE);
  });

  it('with a wrong key: one line, exit 2, and nothing changed past the box mount (no backup, no open, no config, no fstab)', async () => {
    await luksImage();
    const err = await rejection(init(...withPassphrase({}, 'not it')));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`the passphrase does not open ${sb.image} (no key slot matches); nothing was changed`);
    expect(m.ran.filter((l) => !l.startsWith('sshfs'))).toEqual([]);
    expect(await listTree(sb.configDir)).toEqual(['known_hosts']);
    expect(await listTree(sb.root)).not.toContain('fstab');
    expect(await readLockFile(sb)).toBeUndefined();
  });

  it('every key given must fit: a passphrase that opens it and a key file that does not is refused', async () => {
    await luksImage();
    const keyFile = join(sb.root, 'old.key');
    await writeFile(keyFile, Buffer.from([9, 8, 7]));
    const err = await rejection(init(...withPassphrase({ luksKeyFile: keyFile })));
    expect(err.message).toBe(`the key file ${keyFile} does not open ${sb.image} (no key slot matches); nothing was changed`);
    expect(m.ran.filter((l) => !l.startsWith('sshfs'))).toEqual([]);
  });

  it('a key file that opens it works alone, and is never deleted', async () => {
    const keyFile = join(sb.root, 'old.key');
    await writeFile(keyFile, Buffer.from([0xff, 0xfe, 7, 0]));
    await luksImage([Buffer.from([0xff, 0xfe, 7, 0]).toString('hex')]);
    await init(adopt({ luksKeyFile: keyFile }));
    expect(m.world.mappings.get(MAPPER)?.backing).toBe(sb.image);
    expect(await readFile(keyFile)).toEqual(Buffer.from([0xff, 0xfe, 7, 0]));
    expect((await configFile(sb)).encryption?.keys).toEqual(['keyfile']);
  });

  it('without --adopt: refused and untouched, with or without --encrypt; the hint says --adopt and how to give the key', async () => {
    await luksImage();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    for (const flags of [{}, { encrypt: true, luksPassphraseStdin: true }]) {
      const err = await rejection(init(flags, testIo(m, { stdin: PASSPHRASE })));
      expect(err.exitCode).toBe(EXIT.failed);
      expect(err.message).toBe(
        `${sb.image} already exists on the box (100 GiB, LUKS2 encrypted, UUID ${LUKS_UUID}) and is not the image recorded in ${sb.config}; hbs left it untouched`,
      );
      expect(err.hint).toMatch(/never reformatted.*re-run with --adopt and its passphrase \(--luks-passphrase-stdin.*--luks-key-file PATH/);
    }
    expect(m.ran).toEqual([]);
  });

  it('--adopt without any key (no terminal): exit 2 naming the ways to give one', async () => {
    await luksImage();
    const err = await rejection(init(adopt()));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${sb.image} is LUKS2 encrypted, UUID ${LUKS_UUID} (100 GiB): adopting it needs its key`);
    expect(err.hint).toContain('--luks-passphrase-stdin');
    expect(err.hint).toContain('--luks-key-file PATH');
    expect(m.ran.filter((l) => !l.startsWith('sshfs'))).toEqual([]);
  });

  it('--adopt with --luks-generate-key: a new key cannot open an image that exists (exit 2)', async () => {
    const err = await rejection(init(adopt({ luksGenerateKey: true })));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe('--adopt takes the image as it is: a newly generated key cannot open it');
  });

  it('a header backup already there is kept when it is this header, and refused (untouched) when it is another', async () => {
    await luksImage();
    await writeFile(header(), 'this header');
    m.world.signatures.set(header(), { TYPE: 'crypto_LUKS', VERSION: '2', UUID: LUKS_UUID });
    const io = testIo(m, { stdin: PASSPHRASE });
    await init(adopt({ luksPassphraseStdin: true }), io);
    expect(m.ran.some((l) => l.includes('luksHeaderBackup'))).toBe(false);
    expect(await readFile(header(), 'utf8')).toBe('this header');

    await sb.cleanup();
    sb = await makeSandbox();
    m = fakeBox(sb);
    await mkdir(join(sb.root, 'ssh'), { recursive: true });
    await writeFile(sb.sshKey, 'k');
    await mkdir(sb.configDir, { recursive: true });
    await luksImage();
    await writeFile(header(), 'another header');
    m.world.signatures.set(header(), { TYPE: 'crypto_LUKS', VERSION: '2', UUID: 'another' });
    const err = await rejection(init(...withPassphrase()));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toMatch(/exists already and is not this image's header \(LUKS UUID another, the image has 6a1b2c3d/);
    expect(await readFile(header(), 'utf8')).toBe('another header');
    expect(m.ran.filter((l) => l.startsWith('cryptsetup'))).toEqual([]);
  });

  it('--luks-unattended: the given key goes to a new 0400 file, and boot gets its crypttab and fstab lines', async () => {
    await luksImage();
    const keep = join(sb.configDir, `${MAPPER}.key`);
    await init(...withPassphrase({ luksUnattended: true, crypttab: sb.crypttab }));
    expect(await readFile(keep, 'utf8')).toBe(PASSPHRASE);
    expect(await modeOf(keep)).toBe(0o400);
    expect(await readFile(sb.crypttab, 'utf8')).toContain(`${MAPPER} ${sb.image} ${keep} luks,_netdev,nofail,headless=true`);
    expect(await readFile(sb.fstab, 'utf8')).toContain(`${mapper} ${sb.mountPoint} ext4 _netdev,nofail,`);
    assertNothingFormatted();
  });

  it('an unattended key file already there: kept when it opens the image, refused (never overwritten) when not', async () => {
    await luksImage();
    const keep = join(sb.configDir, `${MAPPER}.key`);
    await writeFile(keep, 'stale key');
    const err = await rejection(init(...withPassphrase({ luksUnattended: true, crypttab: false })));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${keep} exists already and does not open ${sb.image}`);
    expect(await readFile(keep, 'utf8')).toBe('stale key');
    expect(m.ran.filter((l) => l.startsWith('cryptsetup'))).toEqual([]);

    await writeFile(keep, PASSPHRASE);
    await init(...withPassphrase({ luksUnattended: true, crypttab: false }));
    expect(await readFile(keep, 'utf8')).toBe(PASSPHRASE);
  });

  it('no ext4 inside the opened image: the mapping is closed again and the run stops; nothing is formatted', async () => {
    await luksImage();
    m.world.signatures.delete(mapper);
    const err = await rejection(init(...withPassphrase()));
    expect(err.message).toBe(`${mapper} (the opened ${sb.image}) holds no filesystem hbs recognises, not ext4; closed it again, nothing else was changed`);
    expect(m.ran.slice(-2)).toEqual([`cryptsetup open --type luks2 --key-file - ${sb.image} ${MAPPER} <<(stdin)`, `cryptsetup close ${MAPPER}`]);
    expect(m.world.mappings.size).toBe(0);
    assertNothingFormatted();
    expect(await listTree(sb.configDir)).toEqual(['known_hosts', `${MAPPER}.luks-header`].sort());
  });

  it('a mapping already open on the image (by hand): its ext4 is read there, nothing is opened again', async () => {
    await luksImage();
    m.openMapping(MAPPER, sb.image);
    await init(...withPassphrase());
    expect(m.ran.some((l) => l.startsWith('cryptsetup open'))).toBe(false);
    expect((await configFile(sb)).image.uuid).toBe(FS_UUID);
  });

  it('the old server still holds the lock: refused before the header is read or the image opened', async () => {
    await luksImage();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await writeLock(sb, { ...otherLock, hostname: 'old-server' });
    const err = await rejection(init(...withPassphrase()));
    expect(err.message).toContain('in use by another machine: old-server');
    expect(m.ran).toEqual([]);
  });

  it('a re-run after the adoption finds everything recorded and done', async () => {
    await luksImage();
    await init(...withPassphrase());
    const ran = m.ran.length;
    const io = testIo(m, { stdin: PASSPHRASE });
    await init(adopt({ luksPassphraseStdin: true }), io);
    expect(m.ran.length).toBe(ran);
    expect(tmp(io.reporter.lines)).toContain(`• Sparse image file on the box — <tmp>/box/filesystem.img is the LUKS2 image recorded in <tmp>/etc/hbs/config.json (100 GiB)`);
    expect(io.reporter.lines).toContain('• LUKS2 encryption on the image — the image is the recorded LUKS2 container; not formatted again');
    expect(io.reporter.lines).toContain('• Write the config — ' + sb.config + ' is up to date');
  });

  it('the recorded config of an encrypted image is what a re-run keeps (its mount options too)', async () => {
    await luksImage();
    await writeConfig(sb, { ...encryptedConfig(sb), image: { name: IMAGE, sizeBytes: 100 * GiB, uuid: FS_UUID, label: 'hbs-backup' }, fstab: sb.fstab });
    const before = await readFile(sb.config, 'utf8');
    await init(...withPassphrase());
    expect(await readFile(sb.config, 'utf8')).toBe(before);
    assertNothingFormatted();
  });
});

describe('hbs init --adopt --dry-run, encrypted', () => {
  it('box mounted: checks the key (read-only), prints the backup, the open and the config, never a format and never the secret', async () => {
    await luksImage();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    const before = await listTree(sb.root);
    const [flags, io] = withPassphrase({ dryRun: true });
    await init(flags, io);
    expect(m.ran).toEqual([]);
    expect(await listTree(sb.root)).toEqual(before);
    const text = tmp(io.reporter.lines).join('\n');
    expect(text).not.toContain(PASSPHRASE);
    expect(text).not.toMatch(/luksFormat|luksAddKey|mkfs|truncate/);
    expect(tmp(io.reporter.lines.filter((l) => l.startsWith('  ! ') && !l.startsWith('  !   |')))).toEqual([
      '  ! write <tmp>/box-home.bdi-read_ahead_kb (a kernel setting) (mode 0644, 5 bytes, in place)',
      '  ! mkdir -p -m 0700 <tmp>/etc/hbs',
      '  ! cryptsetup luksHeaderBackup <tmp>/box/filesystem.img --header-backup-file <tmp>/etc/hbs/hbs-filesystem.luks-header',
      '  ! chmod 0600 <tmp>/etc/hbs/hbs-filesystem.luks-header',
      '  ! cryptsetup open --type luks2 --key-file - <tmp>/box/filesystem.img hbs-filesystem <<(stdin)',
      '  ! mkdir -p -m 0700 <tmp>/etc/hbs',
      expect.stringMatching(/^ {2}! write <tmp>\/etc\/hbs\/config\.json \(mode 0600, \d+ bytes, atomic\)$/),
      expect.stringMatching(/^ {2}! write <tmp>\/box\/filesystem\.img\.hbs-lock \(this machine's lock\)/),
      '  ! mkdir -p -m 0755 <tmp>/mnt',
      '  ! mount -t ext4 -o noatime,noinit_itable /dev/mapper/hbs-filesystem <tmp>/mnt',
      '  ! findmnt --verify the hbs block, and <tmp>/fstab with it (no new errors allowed; else it is left as it is)',
      expect.stringMatching(/^ {2}! back up <tmp>\/fstab \(if it exists\), then write its hbs block/),
    ]);
    expect(text).toContain(`✔ LUKS2 encryption on the image — would change (not done: dry-run)`);
    expect(text).toContain('"uuid": "<the ext4 UUID, read once the image is open>"');
    expect(text).toContain('• ext4 filesystem in the image — adopted: its ext4 UUID is read once it is open; never formatted');
  });

  it('a wrong key stops the dry-run too: it is checked read-only', async () => {
    await luksImage();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    const err = await rejection(init(...withPassphrase({ dryRun: true }, 'not it')));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(m.ran).toEqual([]);
  });

  it('without the key (not needed to print the plan): no key is checked, the same keyed commands, with their stdin marker', async () => {
    await luksImage();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    let tested = 0;
    const test = m.probes.testKey;
    m.probes.testKey = (image, key) => (tested++, test(image, key));
    const io = testIo(m);
    await init(adopt({ dryRun: true, encrypt: true }), io);
    expect(io.reporter.lines.filter((l) => l.startsWith('  ! cryptsetup'))).toEqual([
      `  ! cryptsetup luksHeaderBackup ${sb.image} --header-backup-file ${header()}`,
      `  ! cryptsetup open --type luks2 --key-file - ${sb.image} ${MAPPER} <<(stdin)`,
    ]);
    expect(tested).toBe(0);
  });

  it('a whole reinstall (box not mounted yet): the adoption is shown, never a create, luksFormat or mkfs', async () => {
    await luksImage();
    const [flags, io] = withPassphrase({ dryRun: true });
    await init(flags, io);
    expect(m.ran).toEqual([]);
    const text = tmp(io.reporter.lines).join('\n');
    expect(text).not.toContain(PASSPHRASE);
    expect(text).not.toMatch(/luksFormat|luksAddKey|mkfs|truncate|the sparse image/);
    expect(text).toContain('• Sparse image file on the box — --adopt: <tmp>/box/filesystem.img is used as it is (LUKS, checked once the box is mounted); never formatted');
    expect(text).toContain('  ! cryptsetup luksHeaderBackup <tmp>/box/filesystem.img');
    expect(text).toContain('  ! cryptsetup open --type luks2 --key-file - <tmp>/box/filesystem.img hbs-filesystem <<(stdin)');
    expect(text).toContain('• ext4 filesystem in the image — adopted: its ext4 UUID is read once it is open; never formatted');
  });
});

describe('hbs init in a terminal, on an encrypted image it finds', () => {
  it('says it is encrypted, offers adoption, asks the passphrase (checked against the image), then adopts it', async () => {
    await luksImage();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    const p = scriptedPrompter([true, 'typo', PASSPHRASE, true]);
    const io = testIo(m, { prompter: p });
    await init({ yes: false }, io);
    expect(p.asked[0]).toContain('It is encrypted (LUKS). Adopt it as it is (no luksFormat, no mkfs, the data stays)? You need its passphrase.');
    expect(p.asked[1]).toMatch(/^LUKS passphrase of .*filesystem\.img/);
    expect(p.asked[2]).toContain('(attempt 2 of 3)');
    expect(p.asked[3]).toBe('Make these changes?');
    expect(io.reporter.lines.join('\n')).toContain(`the passphrase does not open ${sb.image}`);
    assertNothingFormatted();
    expect((await configFile(sb)).image.uuid).toBe(FS_UUID);
    expect(io.reporter.lines.join('\n')).not.toContain(PASSPHRASE);
  });

  it('"no" leaves it alone (exit 130)', async () => {
    await luksImage();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    const err = await rejection(init({ yes: false }, testIo(m, { prompter: scriptedPrompter([false]) })));
    expect(err.exitCode).toBe(EXIT.aborted);
    expect(err.message).toBe('not adopted; the image was left as it is');
    expect(m.ran).toEqual([]);
  });

  it('the passphrase is asked once per attempt; three wrong ones stop with exit 2', async () => {
    await luksImage();
    const p = scriptedPrompter(['a', 'b', 'c']);
    const reporter = new MemoryReporter();
    const err = await rejection(askExistingPassphrase(p, reporter, m.probes, sb.image));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(p.asked).toHaveLength(3);
    expect(p.asked[2]).toContain('(attempt 3 of 3)');
    expect(reporter.lines.filter((l) => l.includes('does not open'))).toHaveLength(2);
  });
});
