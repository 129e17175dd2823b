import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/core/errors.js';
import { encryptionSummary, parseKdf, resolveEncryption, type EncryptFlags } from '../../src/commands/init/encrypt.js';
import type { Prompter } from '../../src/core/prompter.js';
import { MemoryReporter } from '../../src/core/reporter.js';

const base = { image: 'filesystem.img', config: '/etc/hbs/config.json', defer: false, passwordStdin: false };
const io = (over: { env?: NodeJS.ProcessEnv; stdin?: string; prompter?: Prompter } = {}) => ({
  reporter: new MemoryReporter(),
  prompter: over.prompter,
  readStdin: () => Promise.resolve(over.stdin ?? ''),
  env: over.env ?? {},
});
const run = (f: EncryptFlags, o: Parameters<typeof io>[0] = {}, b = base) => resolveEncryption(f, io(o), b);

let cleanup: string | undefined;
afterEach(async () => {
  if (cleanup) await rm(cleanup, { force: true, recursive: true });
  cleanup = undefined;
});

describe('hbs init --encrypt: keys', () => {
  it('no --encrypt: nothing, and LUKS flags alone are a usage error', async () => {
    expect(await run({})).toBeUndefined();
    await expect(run({ luksUnattended: true })).rejects.toThrow(/--luks-unattended only go with --encrypt/);
  });

  it('passphrase from stdin (one trailing newline dropped) or from HBS_LUKS_PASSPHRASE, which is removed from the environment', async () => {
    const a = await run({ encrypt: true, luksPassphraseStdin: true }, { stdin: 'secret pw\n' });
    expect(Buffer.from(a!.keys[0]!.bytes).toString()).toBe('secret pw');
    const env: NodeJS.ProcessEnv = { HBS_LUKS_PASSPHRASE: 'from env' };
    const b = await resolveEncryption({ encrypt: true }, io({ env }), base);
    expect(Buffer.from(b!.keys[0]!.bytes).toString()).toBe('from env');
    expect(env.HBS_LUKS_PASSPHRASE).toBeUndefined();
    expect(b!.opts).toEqual({
      mapperName: 'hbs-filesystem',
      passphrase: true,
      keyFile: undefined,
      headerBackup: '/etc/hbs/hbs-filesystem.luks-header',
      unattendedKeyFile: null,
      kdf: {},
    });
  });

  it('asks twice at a prompt, again from the start when the two differ', async () => {
    const answers = ['first one', 'typo', 'right one', 'right one'];
    const prompter: Prompter = { input: () => Promise.reject(new Error('no')), confirm: () => Promise.reject(new Error('no')), password: () => Promise.resolve(answers.shift()!) };
    const r = await run({ encrypt: true }, { prompter });
    expect(Buffer.from(r!.keys[0]!.bytes).toString()).toBe('right one');
    expect(answers).toEqual([]);
  });

  it('without a terminal and without any key: a usage error before anything changes', async () => {
    await expect(run({ encrypt: true })).rejects.toBeInstanceOf(UsageError);
  });

  it('refuses both --password-stdin and --luks-passphrase-stdin, and two key files', async () => {
    await expect(run({ encrypt: true, luksPassphraseStdin: true }, {}, { ...base, passwordStdin: true })).rejects.toThrow(/cannot both read stdin/);
    await expect(run({ encrypt: true, luksKeyFile: '/k', luksGenerateKey: true })).rejects.toThrow(/exclude each other/);
  });

  it('generated key file: 64 bytes, 0600, removed by finish() unless kept', async () => {
    const name = `hbs-test-${process.pid}`;
    const path = `/dev/shm/${name}.key`;
    cleanup = path;
    const r = await run({ encrypt: true, luksGenerateKey: true, luksName: name, luksUnattended: true });
    expect(r!.keys).toHaveLength(1);
    expect(r!.keys[0]!.kind).toBe('keyfile');
    expect(r!.opts.unattendedKeyFile).toBe(`/etc/hbs/${name}.key`);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await r!.finish();
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('an existing key file is read, never deleted', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hbs-kf-'));
    cleanup = dir;
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'k'), Buffer.from([1, 2, 3]));
    const r = await run({ encrypt: true, luksKeyFile: join(dir, 'k'), luksPassphraseStdin: true }, { stdin: 'pw' });
    expect(r!.keys.map((k) => k.kind)).toEqual(['passphrase', 'keyfile']);
    await r!.finish();
    await stat(join(dir, 'k'));
  });

  it('--luks-unattended: the crypttab line goes to /etc/crypttab unless --crypttab PATH or --no-crypttab says otherwise', async () => {
    const pw = { stdin: 'pw' };
    const flags = { encrypt: true, luksPassphraseStdin: true, luksUnattended: true } as const;
    expect((await run(flags, pw))!.opts.crypttab).toBe('/etc/crypttab');
    expect((await run({ ...flags, crypttab: '/tmp/x/crypttab' }, pw))!.opts.crypttab).toBe('/tmp/x/crypttab');
    expect((await run({ ...flags, crypttab: 'rel/crypttab' }, pw))!.opts.crypttab).toBe(join(process.cwd(), 'rel/crypttab'));
    expect((await run({ ...flags, crypttab: false }, pw))!.opts.crypttab).toBeNull();
    // Without --luks-unattended there is no key to open the image at boot: no crypttab at all.
    expect((await run({ encrypt: true, luksPassphraseStdin: true }, pw))!.opts).not.toHaveProperty('crypttab');
  });

  it('--crypttab and --no-crypttab without --luks-unattended (or without --encrypt) are usage errors', async () => {
    await expect(run({ encrypt: true, luksPassphraseStdin: true, crypttab: '/etc/crypttab' }, { stdin: 'pw' })).rejects.toThrow(/--crypttab only goes with --luks-unattended/);
    await expect(run({ encrypt: true, luksPassphraseStdin: true, crypttab: false }, { stdin: 'pw' })).rejects.toThrow(/--no-crypttab only goes with --luks-unattended/);
    await expect(run({ crypttab: '/etc/crypttab' })).rejects.toThrow(/--crypttab only go with --encrypt/);
  });

  it('the summary says plainly what an unattended key protects (the box) and what not (root here), and where the boot line is', () => {
    const base2 = { mapperName: 'hbs-filesystem', passphrase: true, headerBackup: '/etc/hbs/h', kdf: {} };
    const text = encryptionSummary({ ...base2, unattendedKeyFile: '/etc/hbs/hbs-filesystem.key', crypttab: '/etc/crypttab' }).join('\n');
    expect(text).toContain('/etc/hbs/hbs-filesystem.key (mode 0400)');
    expect(text).toContain('/etc/crypttab has the line that opens the image at boot');
    expect(text).toMatch(/What it protects: the data on the box/);
    expect(text).toMatch(/does NOT protect against: anyone with root on this machine/);
    expect(encryptionSummary({ ...base2, unattendedKeyFile: '/k', crypttab: null }).join('\n')).toContain('no crypttab line: --no-crypttab');
    expect(encryptionSummary({ ...base2, unattendedKeyFile: null }).join('\n')).not.toMatch(/protect|crypttab/);
  });
});

describe('hbs init --encrypt: the key derivation (--luks-pbkdf, --luks-iter-time)', () => {
  it('takes each of cryptsetup\'s PBKDFs and an iter time of at least 100 ms; nothing given is cryptsetup\'s defaults', () => {
    for (const pbkdf of ['argon2id', 'argon2i', 'pbkdf2'] as const) expect(parseKdf({ luksPbkdf: pbkdf })).toEqual({ pbkdf });
    expect(parseKdf({ luksIterTime: '100' })).toEqual({ iterTimeMs: 100 });
    expect(parseKdf({ luksIterTime: '9999999' })).toEqual({ iterTimeMs: 9999999 });
    expect(parseKdf({})).toEqual({});
  });

  it.each(['99', '0', '', ' 500', '500ms', '1e3', '10000000', '-100', '2.5'])('refuses --luks-iter-time %j naming it (exit 2)', (v) => {
    let err: unknown;
    try {
      parseKdf({ luksIterTime: v });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toBe(`--luks-iter-time ${JSON.stringify(v)}: milliseconds, at least 100 (cryptsetup's default is 2000)`);
  });

  it('refuses a PBKDF cryptsetup does not have, naming it', () => {
    expect(() => parseKdf({ luksPbkdf: 'scrypt' })).toThrow('--luks-pbkdf "scrypt": one of argon2id, argon2i, pbkdf2');
    expect(() => parseKdf({ luksPbkdf: 'Argon2id' })).toThrow(UsageError);
  });

  it('reach the options of the key slots', async () => {
    const r = await run({ encrypt: true, luksPassphraseStdin: true, luksPbkdf: 'argon2i', luksIterTime: '250' }, { stdin: 'pw' });
    expect(r!.opts.kdf).toEqual({ pbkdf: 'argon2i', iterTimeMs: 250 });
  });

  it('a bad one stops before any key is read or generated', async () => {
    let read = false;
    const err = await resolveEncryption({ encrypt: true, luksPassphraseStdin: true, luksIterTime: '5' }, { ...io(), readStdin: () => ((read = true), Promise.resolve('pw')) }, base).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(read).toBe(false);
  });
});

describe('hbs init --adopt: the key of an encrypted image already on the box', () => {
  const adopt = { ...base, adopt: true, sizeGiven: false };
  const noPrompt: Prompter = { input: () => Promise.reject(new Error('no')), confirm: () => Promise.reject(new Error('no')), password: () => Promise.reject(new Error('asked')) };

  it('--adopt alone: nothing yet (a plain image needs no key; an encrypted one is found on the box)', async () => {
    expect(await run({}, {}, adopt)).toBeUndefined();
  });

  it('a key with --adopt means encrypted, without --encrypt; the passphrase is read as for --encrypt', async () => {
    const r = await run({ luksPassphraseStdin: true }, { stdin: 'old pw\n' }, adopt);
    expect(r!.opts).toMatchObject({ mapperName: 'hbs-filesystem', passphrase: true, headerBackup: '/etc/hbs/hbs-filesystem.luks-header', unattendedKeyFile: null });
    expect(Buffer.from(r!.keys[0]!.bytes).toString()).toBe('old pw');
    const env: NodeJS.ProcessEnv = { HBS_LUKS_PASSPHRASE: 'from env' };
    const e = await resolveEncryption({}, io({ env }), adopt);
    expect(e!.opts.passphrase).toBe(true);
    expect(env.HBS_LUKS_PASSPHRASE).toBeUndefined();
  });

  it('in a terminal without --size, nothing is asked here: the passphrase is asked once, later, against the image', async () => {
    const r = await run({ encrypt: true }, { prompter: noPrompt }, adopt);
    expect(r!.keys).toEqual([]);
    expect(r!.opts.passphrase).toBe(false);
  });

  it('without a terminal and without a key: exit 2 before anything changes, naming the ways to give one', async () => {
    const err = await run({ luksUnattended: true }, {}, adopt).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toBe('adopting an encrypted image needs its key: its passphrase or its key file');
    expect((err as UsageError).hint).toContain('--luks-key-file PATH');
  });

  it('a generated key cannot open an image that exists', async () => {
    await expect(run({ luksGenerateKey: true }, {}, adopt)).rejects.toThrow(/--adopt takes the image as it is/);
  });
});
