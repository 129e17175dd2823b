import { dirname, join, resolve } from 'node:path';
import { UsageError } from '../../core/errors.js';
import type { Prompter } from '../../core/prompter.js';
import type { Reporter } from '../../core/reporter.js';
import { acquireKey } from '../../lib/keys.js';
import { defaultMapperName, generateKeyFile, MIN_ITER_TIME_MS, passphraseKey, readKeyFile, shredKeyFile, type KdfOptions, type LuksKey } from '../../lib/luks.js';
import type { Probes } from '../../lib/probes.js';
import type { EncryptOptions } from '../../steps/init/context.js';

/** The --encrypt flags as commander hands them over. */
export interface EncryptFlags {
  encrypt?: boolean;
  luksPassphraseStdin?: boolean;
  luksKeyFile?: string;
  luksGenerateKey?: boolean;
  luksKeepKey?: boolean;
  luksUnattended?: boolean;
  luksHeaderBackup?: string;
  luksName?: string;
  /** A path, or false for --no-crypttab; only with --luks-unattended. */
  crypttab?: string | false;
  /** cryptsetup's --pbkdf and --iter-time for new key slots. */
  luksPbkdf?: string;
  luksIterTime?: string;
}

export interface EncryptIo {
  reporter: Reporter;
  prompter?: Prompter;
  readStdin: () => Promise<string>;
  env: NodeJS.ProcessEnv;
}

export interface EncryptSetup {
  opts: EncryptOptions;
  /** Passphrase first (when given), then the key file. Never logged. */
  keys: LuksKey[];
  /** Removes a generated key file unless the person chose to keep it (call after a successful init). */
  finish(): Promise<void>;
}

const GENERATED_DIR = '/dev/shm';

function luksFlagsGiven(f: EncryptFlags): string[] {
  const named: [keyof EncryptFlags, string][] = [
    ['luksPassphraseStdin', '--luks-passphrase-stdin'],
    ['luksKeyFile', '--luks-key-file'],
    ['luksGenerateKey', '--luks-generate-key'],
    ['luksKeepKey', '--luks-keep-key'],
    ['luksUnattended', '--luks-unattended'],
    ['luksHeaderBackup', '--luks-header-backup'],
    ['luksName', '--luks-name'],
    ['luksPbkdf', '--luks-pbkdf'],
    ['luksIterTime', '--luks-iter-time'],
  ];
  const given = named.filter(([k]) => f[k] !== undefined && f[k] !== false).map(([, n]) => n);
  return f.crypttab === undefined ? given : [...given, f.crypttab === false ? '--no-crypttab' : '--crypttab'];
}

export const DEFAULT_CRYPTTAB = '/etc/crypttab';

export const MIN_PASSPHRASE = 8;

/** Mapper name, header backup and unattended key path from the flags (defaults next to the config); no key yet. */
export function encryptOptionsFor(o: { image: string; config: string }, f: Pick<EncryptFlags, 'luksName' | 'luksHeaderBackup' | 'luksUnattended' | 'crypttab' | 'luksPbkdf' | 'luksIterTime'> = {}): EncryptOptions {
  const mapperName = f.luksName ?? defaultMapperName(o.image, o.config);
  const confDir = dirname(o.config);
  return {
    mapperName,
    passphrase: false,
    headerBackup: f.luksHeaderBackup ? resolve(f.luksHeaderBackup) : join(confDir, `${mapperName}.luks-header`),
    unattendedKeyFile: f.luksUnattended ? join(confDir, `${mapperName}.key`) : null,
    ...(f.luksUnattended ? { crypttab: f.crypttab === false ? null : resolve(f.crypttab ?? DEFAULT_CRYPTTAB) } : {}),
    kdf: parseKdf(f),
  };
}

const PBKDFS = ['argon2id', 'argon2i', 'pbkdf2'] as const;

/** --luks-pbkdf and --luks-iter-time, checked: a usage error naming the bad value. */
export function parseKdf(f: Pick<EncryptFlags, 'luksPbkdf' | 'luksIterTime'>): KdfOptions {
  const kdf: KdfOptions = {};
  if (f.luksPbkdf !== undefined) {
    const p = PBKDFS.find((k) => k === f.luksPbkdf);
    if (!p) throw new UsageError(`--luks-pbkdf ${JSON.stringify(f.luksPbkdf)}: one of ${PBKDFS.join(', ')}`);
    kdf.pbkdf = p;
  }
  if (f.luksIterTime !== undefined) {
    const ms = /^\d{1,7}$/.test(f.luksIterTime) ? Number(f.luksIterTime) : NaN;
    if (!(ms >= MIN_ITER_TIME_MS)) throw new UsageError(`--luks-iter-time ${JSON.stringify(f.luksIterTime)}: milliseconds, at least ${MIN_ITER_TIME_MS} (cryptsetup's default is 2000)`);
    kdf.iterTimeMs = ms;
  }
  return kdf;
}

/**
 * The passphrase of an image that exists (adoption): asked once per attempt, since it is checked
 * against the image (`open --test-passphrase`, read-only) instead of typed twice; three attempts.
 */
export async function askExistingPassphrase(prompter: Prompter, reporter: Reporter, probe: Probes, image: string): Promise<LuksKey> {
  const ask = async (attempt: number): Promise<LuksKey> =>
    passphraseKey(
      await prompter.password({
        message: `LUKS passphrase of ${image}${attempt > 1 ? ` (attempt ${attempt} of 3)` : ''} (a key file instead: stop and re-run with --luks-key-file PATH):`,
        validate: (v) => (v === '' ? 'the passphrase is needed to open the image' : true),
      }),
    );
  const key = await acquireKey({ kind: 'ask', ask }, image, 'adopting it', (k) => probe.testKey(image, k), (t) => reporter.warn(t));
  return key as LuksKey;
}

async function askPassphrase(prompter: Prompter): Promise<string> {
  for (;;) {
    const first = await prompter.password({
      message: 'LUKS passphrase for the image (without it, or the key file, the data is gone):',
      validate: (v) => (v.length >= MIN_PASSPHRASE ? true : `at least ${MIN_PASSPHRASE} characters`),
    });
    const again = await prompter.password({ message: 'The same passphrase again:' });
    if (again === first) return first;
    // Asked again from the start: a typo in either would lock the data away.
  }
}

/**
 * Works out the keys for `hbs init --encrypt`: a passphrase (stdin, HBS_LUKS_PASSPHRASE or typed
 * twice) and/or a key file (given, or 64 random bytes generated under /dev/shm, 0600). Nothing on
 * the box changes here; a generated key file is the only thing written (and only when not a dry-run).
 */
export async function resolveEncryption(
  f: EncryptFlags,
  io: EncryptIo,
  /** `defer`: nothing is asked or generated now (a dry-run). */
  o: { image: string; config: string; defer: boolean; passwordStdin: boolean; adopt?: boolean; sizeGiven?: boolean },
): Promise<EncryptSetup | undefined> {
  const fromEnv = io.env.HBS_LUKS_PASSPHRASE;
  delete io.env.HBS_LUKS_PASSPHRASE; // children must not inherit it
  const given = luksFlagsGiven(f);
  // --adopt with a key (or any LUKS flag) means: the image there is encrypted, open it with this.
  const adoptEncrypted = Boolean(o.adopt) && (given.length > 0 || Boolean(fromEnv));
  if (!f.encrypt && !adoptEncrypted) {
    if (given.length) throw new UsageError(`${given.join(', ')} only go with --encrypt (or --adopt, for an encrypted image already on the box)`);
    return undefined;
  }
  if (o.adopt && (f.luksGenerateKey || f.luksKeepKey)) {
    throw new UsageError('--adopt takes the image as it is: a newly generated key cannot open it', 'give its passphrase (--luks-passphrase-stdin, HBS_LUKS_PASSPHRASE or at the prompt) or its key file (--luks-key-file PATH)');
  }
  if (f.luksKeyFile && f.luksGenerateKey) throw new UsageError('--luks-key-file and --luks-generate-key exclude each other: one key file at most');
  if (f.luksKeepKey && !f.luksGenerateKey) throw new UsageError('--luks-keep-key is about a generated key file (--luks-generate-key)');
  if (f.crypttab !== undefined && !f.luksUnattended) {
    throw new UsageError(`${f.crypttab === false ? '--no-crypttab' : '--crypttab'} only goes with --luks-unattended: without a key kept here, boot cannot open the image`);
  }
  if (f.crypttab === '') throw new UsageError('--crypttab needs a path (or --no-crypttab)');
  if (f.luksPassphraseStdin && o.passwordStdin) {
    throw new UsageError('--password-stdin and --luks-passphrase-stdin cannot both read stdin', 'pass the box password in HBS_BOX_PASSWORD or the LUKS passphrase in HBS_LUKS_PASSPHRASE');
  }
  const mapperName = f.luksName ?? defaultMapperName(o.image, o.config);
  if (!/^[A-Za-z0-9_.+-]+$/.test(mapperName)) throw new UsageError(`--luks-name "${mapperName}": letters, digits and _ . + - only`);
  parseKdf(f);

  let passphrase: string | undefined;
  if (f.luksPassphraseStdin) {
    passphrase = (await io.readStdin()).replace(/\r?\n$/, '');
    if (passphrase === '') throw new UsageError('--luks-passphrase-stdin: nothing came in on stdin');
  } else if (fromEnv) {
    passphrase = fromEnv;
  }

  const keys: LuksKey[] = [];
  let keyFile: EncryptOptions['keyFile'];
  if (f.luksKeyFile) {
    const path = resolve(f.luksKeyFile);
    keyFile = { path, generated: false, keep: true };
  } else if (f.luksGenerateKey) {
    keyFile = { path: join(GENERATED_DIR, `${mapperName}.key`), generated: true, keep: Boolean(f.luksKeepKey) };
  }

  // Adopting without --size: no new image can come of this run, so the passphrase is asked once,
  // later, and checked against the image found on the box (askExistingPassphrase).
  const existingOnly = Boolean(o.adopt) && !o.sizeGiven;
  if (passphrase === undefined && !keyFile) {
    if (io.prompter && !o.defer) {
      if (!existingOnly) passphrase = await askPassphrase(io.prompter);
    } else if (!o.defer) {
      throw new UsageError(
        o.adopt ? 'adopting an encrypted image needs its key: its passphrase or its key file' : '--encrypt needs a key: a passphrase or a key file',
        o.adopt
          ? 'give --luks-passphrase-stdin (or HBS_LUKS_PASSPHRASE) or --luks-key-file PATH'
          : 'give --luks-passphrase-stdin (or HBS_LUKS_PASSPHRASE), --luks-key-file PATH or --luks-generate-key',
      );
    }
  }
  if (passphrase !== undefined) keys.push(passphraseKey(passphrase));
  if (keyFile && !o.defer) {
    if (keyFile.generated) {
      keys.push(await generateKeyFile(keyFile.path));
      io.reporter.info(`A new LUKS key file was generated: ${keyFile.path} (64 random bytes, mode 0600, in RAM).`);
      io.reporter.info('  Copy it somewhere offline NOW (e.g. a USB stick, a password manager): without it (or the passphrase) the data is gone.');
      io.reporter.info(keyFile.keep ? '  It stays where it is (--luks-keep-key).' : '  hbs overwrites and deletes it from this server when init has finished.');
    } else {
      keys.push(await readKeyFile(keyFile.path));
    }
  }

  const opts: EncryptOptions = {
    ...encryptOptionsFor({ image: o.image, config: o.config }, f),
    passphrase: passphrase !== undefined,
    keyFile,
  };
  return {
    opts,
    keys,
    finish: async () => {
      if (keyFile?.generated && !keyFile.keep && !o.defer) {
        await shredKeyFile(keyFile.path);
        io.reporter.info(`The generated key file ${keyFile.path} was overwritten and deleted from this server (you kept a copy offline).`);
      }
    },
  };
}

/** Lines for the end of init: where the header backup is, and what losing it means. */
export function encryptionSummary(e: EncryptOptions, adopted = false): string[] {
  const keys = [e.passphrase ? 'passphrase' : '', e.keyFile ? `key file${e.keyFile.generated ? ' (generated)' : ` ${e.keyFile.path}`}` : ''].filter(Boolean).join(' + ');
  const lines = [
    adopted
      ? `Encrypted with LUKS2, adopted as it was (no luksFormat, no mkfs); the filesystem is on /dev/mapper/${e.mapperName}.`
      : `Encrypted with LUKS2; the filesystem is on /dev/mapper/${e.mapperName}.`,
    adopted ? `Opened with: ${keys} (its other key slots, if any, are as they were).` : `Key slots: ${keys}.`,
    `Header backup: ${e.headerBackup} (mode 0600). Keep a copy off this machine too:`,
    '  without the header (or a backup of it) AND a key, the data on the box is gone for good.',
  ];
  if (e.unattendedKeyFile) {
    lines.push(
      `Unattended mounts: a key is kept at ${e.unattendedKeyFile} (mode 0400) so the stack can come up without you` +
        (e.crypttab ? `; ${e.crypttab} has the line that opens the image at boot.` : ' (no crypttab line: --no-crypttab; `hbs mount` uses the key).'),
      '  What it protects: the data on the box. The provider, and anyone who gets the image or the box',
      '  account, see only ciphertext.',
      '  What it does NOT protect against: anyone with root on this machine (or a copy of its disk or',
      '  backups) can read the key and so the data. Without --luks-unattended the key never rests here.',
    );
  }
  return lines;
}
