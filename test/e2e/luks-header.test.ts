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
import { generateKeyFile, luksAddKeyFileCmd, luksFormatCmd, luksHeaderBackupCmd, passphraseKey, readKeyFile, shredKeyFile, type LuksKey } from '../../src/lib/luks.js';
import { commandProbes } from '../../src/lib/probes.js';

/** The knob init offers (--luks-pbkdf, --luks-iter-time): cheap key slots for tests. */
const CHEAP = { pbkdf: 'pbkdf2', iterTimeMs: 100 } as const;
const PASS = 'pass phrase with spaces, "quotes" and ünïcode';
let dir: string;
let image: string;
const logged: string[] = [];
const runner = new RealRunner((l) => logged.push(l));
const probe = commandProbes(runner, (prefix) => mkdtemp(join(tmpdir(), prefix)));
const isLuks = async (path: string): Promise<boolean> => (await probe.signature(path)).TYPE === 'crypto_LUKS';
const opens = (path: string, key: LuksKey): Promise<'ok' | 'wrong'> => probe.testKey(path, key);

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
    expect(await isLuks(image)).toBe(false);
    await runner.run(luksFormatCmd(image, passphraseKey(PASS), CHEAP));
    expect(await isLuks(image)).toBe(true);
    const info = await probe.luksInfo(image);
    expect(info).toMatchObject({ cipher: 'aes-xts-plain64', keySlots: ['0'], dataOffset: 16 * 1024 * 1024 });
    // The key derivation asked for (cryptsetup's own --pbkdf / --iter-time).
    expect(execFileSync('cryptsetup', ['luksDump', image], { encoding: 'utf8' })).toMatch(/PBKDF:\s+pbkdf2/);
    // Sparse: only the header is allocated.
    expect((await stat(image)).blocks * 512).toBeLessThanOrEqual(16 * 1024 * 1024);
  });

  it('open --test-passphrase: the right passphrase passes, a wrong one is told apart', async () => {
    expect(await opens(image, passphraseKey(PASS))).toBe('ok');
    expect(await opens(image, passphraseKey(PASS + 'x'))).toBe('wrong');
    // With a trailing newline it is another key: hbs never appends one.
    expect(await opens(image, passphraseKey(PASS + '\n'))).toBe('wrong');
    // Not a LUKS image at all: an error, not a "wrong key".
    await expect(opens(join(dir, 'nothing'), passphraseKey(PASS))).rejects.toThrow(/could not test the key/);
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
    expect((await probe.luksInfo(image)).keySlots).toEqual(['0', '1']);
    expect(await opens(image, await readKeyFile(keyPath))).toBe('ok');
    await shredKeyFile(keyPath);
    await expect(stat(keyPath)).rejects.toMatchObject({ code: 'ENOENT' });
    // The key (held in memory) still opens it: the file is gone, the slot stays.
    expect(await opens(image, key)).toBe('ok');
  });

  it('luksHeaderBackup writes a file that is itself a LUKS header and never overwrites one', async () => {
    const backup = join(dir, 'header.bak');
    await runner.run(luksHeaderBackupCmd(image, backup));
    expect((await stat(backup)).size).toBe(16 * 1024 * 1024);
    expect(await isLuks(backup)).toBe(true);
    await expect(runner.run(luksHeaderBackupCmd(image, backup))).rejects.toThrow(/command failed/);
  });

  it('a header restored from the backup brings back an image whose header was destroyed', async () => {
    const backup = join(dir, 'header.bak');
    const copy = join(dir, 'copy.img');
    execFileSync('cp', ['--sparse=always', image, copy]);
    await writeFile(copy, Buffer.alloc(1024 * 1024), { flag: 'r+' }); // wipe both headers and the key slots
    expect(await isLuks(copy)).toBe(false);
    execFileSync('cryptsetup', ['luksHeaderRestore', '--batch-mode', copy, '--header-backup-file', backup]);
    expect(await opens(copy, passphraseKey(PASS))).toBe('ok');
  });

  it('no passphrase ever reached a log line or argv', async () => {
    expect(logged.length).toBeGreaterThan(5);
    for (const l of logged) expect(l).not.toContain(PASS);
    expect(await readFile(image).then((b) => b.includes(Buffer.from(PASS)))).toBe(false);
  });
});
