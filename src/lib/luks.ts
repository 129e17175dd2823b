import { randomBytes } from 'node:crypto';
import { open, rm, stat } from 'node:fs/promises';
import { EXIT, HbsError } from '../core/errors.js';
import type { Cmd } from '../core/runner.js';

/**
 * The LUKS2 layer between the image file and ext4. Every key travels to cryptsetup on stdin
 * (`--key-file -`), never in argv: a passphrase as its exact bytes (no trailing newline, so the
 * same passphrase typed at cryptsetup's own prompt opens it too), a key file as its raw bytes.
 */

/** A key as hbs holds it in memory. `label` says where it came from (never the secret itself). */
export interface LuksKey {
  kind: 'passphrase' | 'keyfile';
  bytes: Uint8Array;
  label: string;
}

/** Size of a generated key file (random bytes). */
export const KEY_FILE_BYTES = 64;

/**
 * The key derivation of new key slots, as cryptsetup takes it (`--pbkdf`, `--iter-time`). Unset:
 * cryptsetup's own defaults (argon2id, ~2 s of this machine's time per unlock). A lower iter-time
 * makes each unlock cheaper for an attacker too; hbs accepts no less than MIN_ITER_TIME_MS.
 */
export interface KdfOptions {
  pbkdf?: 'argon2id' | 'argon2i' | 'pbkdf2';
  iterTimeMs?: number;
}

export const MIN_ITER_TIME_MS = 100;

export function kdfArgs(k: KdfOptions = {}): string[] {
  return [...(k.pbkdf ? ['--pbkdf', k.pbkdf] : []), ...(k.iterTimeMs !== undefined ? ['--iter-time', String(k.iterTimeMs)] : [])];
}

export function passphraseKey(passphrase: string, label = 'passphrase'): LuksKey {
  return { kind: 'passphrase', bytes: Buffer.from(passphrase, 'utf8'), label };
}

export { defaultMapperName } from './config-name.js';

export const mapperPath = (name: string): string => `/dev/mapper/${name}`;

/** A key that is text (a passphrase, or one given on stdin) is also a secret to redact from anything logged. */
export function secretsOf(key: LuksKey): string[] {
  const text = Buffer.from(key.bytes).toString('utf8');
  return text.length > 0 && Buffer.from(text, 'utf8').equals(Buffer.from(key.bytes)) ? [text] : [];
}

/** A command that takes the key on stdin, with the key as its secret. */
function keyed(key: LuksKey, argv: string[], extra: Partial<Cmd> = {}): Cmd {
  return { argv, stdin: key.bytes, secrets: secretsOf(key), ...extra };
}

/** luksFormat the image file (LUKS2, 4 KiB sectors are cryptsetup's choice for a file). */
export function luksFormatCmd(image: string, key: LuksKey, kdf: KdfOptions = {}, uuid?: string): Cmd {
  return keyed(key, ['cryptsetup', 'luksFormat', '--batch-mode', '--type', 'luks2', ...kdfArgs(kdf), ...(uuid ? ['--uuid', uuid] : []), '--key-file', '-', image], { timeoutMs: 5 * 60_000 });
}

/** Adds a key file as a second slot; the existing key (stdin) authorises it. The new key file's path is not secret. */
export function luksAddKeyFileCmd(image: string, existing: LuksKey, newKeyFile: string, kdf: KdfOptions = {}): Cmd {
  return keyed(existing, ['cryptsetup', 'luksAddKey', '--batch-mode', ...kdfArgs(kdf), '--key-file', '-', image, newKeyFile], { timeoutMs: 5 * 60_000 });
}

/** Opens the image: cryptsetup attaches the loop device itself and creates /dev/mapper/NAME. */
export function luksOpenCmd(image: string, name: string, key: LuksKey): Cmd {
  return keyed(key, ['cryptsetup', 'open', '--type', 'luks2', '--key-file', '-', image, name], { timeoutMs: 5 * 60_000 });
}

/** Checks a key without opening anything. Read-only; exit 2 means the key fits no slot. */
export function luksTestKeyCmd(image: string, key: LuksKey): Cmd {
  return keyed(key, ['cryptsetup', 'open', '--test-passphrase', '--type', 'luks2', '--key-file', '-', image], { write: false, allowFail: true, timeoutMs: 5 * 60_000 });
}

export function luksCloseCmd(name: string): Cmd {
  return { argv: ['cryptsetup', 'close', name] };
}

/** Resizes the open mapping to its (refreshed) loop device; LUKS2 wants the key for it. */
export function luksResizeCmd(name: string, key: LuksKey): Cmd {
  return keyed(key, ['cryptsetup', 'resize', '--key-file', '-', name], { timeoutMs: 5 * 60_000 });
}

/** cryptsetup refuses to overwrite an existing backup file (good: it never replaces an older header). */
export function luksHeaderBackupCmd(image: string, backupFile: string): Cmd {
  return { argv: ['cryptsetup', 'luksHeaderBackup', image, '--header-backup-file', backupFile] };
}

export interface LuksInfo {
  cipher: string;
  keySlots: string[];
  /** Where the encrypted data starts (bytes), i.e. the header size. */
  dataOffset: number;
  sectorSize: number;
}

export function parseLuksJson(text: string): LuksInfo {
  const j = JSON.parse(text) as {
    keyslots?: Record<string, unknown>;
    segments?: Record<string, { encryption?: string; offset?: string; sector_size?: number }>;
  };
  const seg = j.segments?.['0'];
  if (!seg?.encryption) throw new Error('luksDump: no data segment in the LUKS2 metadata');
  return {
    cipher: seg.encryption,
    keySlots: Object.keys(j.keyslots ?? {}).sort((a, b) => Number(a) - Number(b)),
    dataOffset: Number(seg.offset ?? 0),
    sectorSize: seg.sector_size ?? 512,
  };
}

export interface ActiveMapping {
  /** The loop device under the mapping, and the file behind it, when cryptsetup shows them. */
  loop?: string;
  backing?: string;
  cipher?: string;
  /**
   * "keyring" (LUKS2's default: the volume key sits in the kernel keyring, and `cryptsetup resize`
   * must unlock a key slot again) or "dm-crypt" (in the dm table: resize needs no key).
   */
  keyLocation?: string;
}

export function parseStatus(text: string): ActiveMapping {
  const field = (k: string): string | undefined => new RegExp(`^\\s*${k}:\\s*(.+?)\\s*$`, 'm').exec(text)?.[1];
  return { loop: field('device'), backing: field('loop'), cipher: field('cipher'), keyLocation: field('key location') };
}

/** A wrong key: nothing was changed, and the person may try again. */
export class WrongKeyError extends HbsError {
  constructor(image: string, label: string) {
    super(`the ${label} does not open ${image} (no key slot matches); nothing was changed`, EXIT.usage, 'try again with the right passphrase or key file');
  }
}

/** Reads a key file (a regular file, at most 8 MiB as cryptsetup allows). */
export async function readKeyFile(path: string): Promise<LuksKey> {
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) throw new HbsError(`key file ${path} does not exist or is not a file`, EXIT.usage);
  if (st.size === 0 || st.size > 8 * 1024 * 1024) throw new HbsError(`key file ${path} is empty or larger than 8 MiB`, EXIT.usage);
  const fh = await open(path, 'r');
  try {
    return { kind: 'keyfile', bytes: await fh.readFile(), label: `key file ${path}` };
  } finally {
    await fh.close();
  }
}

/** Writes KEY_FILE_BYTES random bytes to a new file (O_EXCL, mode 0600), e.g. under /dev/shm. */
export async function generateKeyFile(path: string, mode = 0o600): Promise<LuksKey> {
  const bytes = randomBytes(KEY_FILE_BYTES);
  const fh = await open(path, 'wx', mode);
  try {
    await fh.writeFile(bytes);
    await fh.chmod(mode);
  } finally {
    await fh.close();
  }
  return { kind: 'keyfile', bytes, label: `key file ${path}` };
}

/** Overwrites a key file with random bytes of its size, syncs, then deletes it. Missing is fine. */
export async function shredKeyFile(path: string): Promise<void> {
  let fh;
  try {
    fh = await open(path, 'r+');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    const { size } = await fh.stat();
    await fh.write(randomBytes(Math.max(size, KEY_FILE_BYTES)), 0, Math.max(size, KEY_FILE_BYTES), 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rm(path, { force: true });
}
