/**
 * LUKS header operations for real, on a plain file (this kernel has no device-mapper, so nothing
 * is opened here: that is the VM suite's job). Needs cryptsetup; fails loudly without it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RealRunner } from '../../src/core/real-runner.js';
import {
  checkKey,
  generateKeyFile,
  isLuks,
  luksAddKeyFileCmd,
  luksFormatCmd,
  luksHeaderBackupCmd,
  luksInfo,
  passphraseKey,
  readKeyFile,
  shredKeyFile,
  WrongKeyError,
} from '../../src/lib/luks.js';

const CHEAP = { ...process.env, HBS_TEST_CHEAP_PBKDF: '1' };
const PASS = 'pass phrase with spaces, "quotes" and ünïcode';
let dir: string;
let image: string;
const logged: string[] = [];
const runner = new RealRunner((l) => logged.push(l));

beforeAll(async () => {
  execFileSync('cryptsetup', ['--version']); // missing: this throws and every test fails
  dir = await mkdtemp(join(tmpdir(), 'hbs-luks-'));
  image = join(dir, 'image.img');
  execFileSync('truncate', ['--size=64M', image]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('LUKS header operations on a plain file', () => {
  it('luksFormat with the passphrase on stdin; isLuks; luksDump shows the cipher and one slot', async () => {
    expect(await isLuks(runner, image)).toBe(false);
    await runner.run(luksFormatCmd(image, passphraseKey(PASS), CHEAP));
    expect(await isLuks(runner, image)).toBe(true);
    const info = await luksInfo(runner, image);
    expect(info).toMatchObject({ cipher: 'aes-xts-plain64', keySlots: ['0'], dataOffset: 16 * 1024 * 1024 });
    // Sparse: only the header is allocated.
    expect((await stat(image)).blocks * 512).toBeLessThanOrEqual(16 * 1024 * 1024);
  });

  it('open --test-passphrase: the right passphrase passes, a wrong one is a WrongKeyError', async () => {
    await checkKey(runner, image, passphraseKey(PASS));
    await expect(checkKey(runner, image, passphraseKey(PASS + 'x'))).rejects.toBeInstanceOf(WrongKeyError);
    // With a trailing newline it is another key: hbs never appends one.
    await expect(checkKey(runner, image, passphraseKey(PASS + '\n'))).rejects.toBeInstanceOf(WrongKeyError);
  });

  it('the same passphrase typed at cryptsetup itself (interactive, newline stripped) opens it too', () => {
    // cryptsetup strips the newline of a passphrase read from a terminal or pipe without --key-file.
    execFileSync('cryptsetup', ['open', '--test-passphrase', image], { input: PASS + '\n' });
  });

  it('a generated key file (binary, 0600) goes into a second slot and opens the image', async () => {
    const keyPath = join(dir, 'k.key');
    const key = await generateKeyFile(keyPath);
    expect((await stat(keyPath)).mode & 0o777).toBe(0o600);
    expect(key.bytes.length).toBe(64);
    await runner.run(luksAddKeyFileCmd(image, passphraseKey(PASS), keyPath, CHEAP));
    expect((await luksInfo(runner, image)).keySlots).toEqual(['0', '1']);
    await checkKey(runner, image, await readKeyFile(keyPath));
    await shredKeyFile(keyPath);
    await expect(stat(keyPath)).rejects.toMatchObject({ code: 'ENOENT' });
    // The key (held in memory) still opens it: the file is gone, the slot stays.
    await checkKey(runner, image, key);
  });

  it('luksHeaderBackup writes a file that is itself a LUKS header and never overwrites one', async () => {
    const backup = join(dir, 'header.bak');
    await runner.run(luksHeaderBackupCmd(image, backup));
    expect((await stat(backup)).size).toBe(16 * 1024 * 1024);
    expect(await isLuks(runner, backup)).toBe(true);
    await expect(runner.run(luksHeaderBackupCmd(image, backup))).rejects.toThrow(/command failed/);
  });

  it('a header restored from the backup brings back an image whose header was destroyed', async () => {
    const backup = join(dir, 'header.bak');
    const copy = join(dir, 'copy.img');
    execFileSync('cp', ['--sparse=always', image, copy]);
    await writeFile(copy, Buffer.alloc(1024 * 1024), { flag: 'r+' }); // wipe both headers and the key slots
    expect(await isLuks(runner, copy)).toBe(false);
    execFileSync('cryptsetup', ['luksHeaderRestore', '--batch-mode', copy, '--header-backup-file', backup]);
    await checkKey(runner, copy, passphraseKey(PASS));
  });

  it('no passphrase ever reached a log line or argv', async () => {
    expect(logged.length).toBeGreaterThan(5);
    for (const l of logged) expect(l).not.toContain(PASS);
    expect(await readFile(image).then((b) => b.includes(Buffer.from(PASS)))).toBe(false);
  });
});
