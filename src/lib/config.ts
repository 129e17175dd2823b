import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { HbsError, EXIT } from '../core/errors.js';
import { formatIssues } from './validate.js';
import { backupConfigSchema } from './backup.js';

export const CONFIG_VERSION = 1;

export const encryptionSchema = z.object({
  type: z.literal('luks2'),
  /** Device-mapper name: the filesystem lives on /dev/mapper/<mapperName>. */
  mapperName: z.string().regex(/^[A-Za-z0-9_.+-]+$/),
  /** Which kinds of key init put in the key slots (the secrets themselves are never recorded). */
  keys: z.array(z.enum(['passphrase', 'keyfile'])).min(1),
  /** The local header backup made at init (0600). */
  headerBackup: z.string().min(1),
  /** With --luks-unattended: the key kept on this machine (0400) so the stack comes up at boot. */
  unattendedKeyFile: z.string().min(1).nullable(),
  /**
   * With --luks-unattended: the crypttab holding the hbs block that opens the mapping at boot
   * (null: --no-crypttab). Absent without --luks-unattended, and in configs written before it existed.
   */
  crypttab: z.string().min(1).nullable().optional(),
});

export type EncryptionConfig = z.infer<typeof encryptionSchema>;

/** What `hbs init` records, and every later command reads. Written with mode 0600. */
export const configSchema = z.object({
  version: z.literal(CONFIG_VERSION),
  box: z.object({
    user: z.string().min(1),
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535),
    /** Directory on the box that is mounted; "" is the account's home directory. */
    remotePath: z.string(),
  }),
  ssh: z.object({
    key: z.string().min(1),
    knownHosts: z.string().min(1),
    hostKeyFingerprint: z.string().regex(/^SHA256:/),
    /** hbs made this key pair (ssh-keygen in `hbs init`): `hbs uninstall` may remove it. Absent: someone else's key, or not known. */
    generated: z.literal(true).optional(),
  }),
  boxMount: z.string().min(1),
  image: z.object({
    name: z.string().min(1),
    sizeBytes: z.number().int().positive(),
    uuid: z.uuid(),
    label: z.string(),
  }),
  filesystem: z.object({
    mountPoint: z.string().min(1),
    mountOptions: z.array(z.string()),
  }),
  /** The fstab hbs manages a block in, or null with --no-fstab. */
  fstab: z.string().nullable(),
  /** LUKS2 on the image (hbs init --encrypt); absent for a plain image, so older configs stay valid. */
  encryption: encryptionSchema.optional(),
  /**
   * How the stack comes up at boot: the systemd unit hbs-mount@<config>.service in this directory
   * (the fstab and crypttab lines are then `noauto`), or null (--no-systemd: fstab mounts it, without
   * the lock). Absent in configs written before it existed: as null.
   */
  systemd: z.object({ dir: z.string().min(1) }).nullable().optional(),
  /** What `hbs backup` backs up and keeps (docs/backup.md); absent until the first backup or `--save`. */
  backup: backupConfigSchema.optional(),
});

export type Config = z.infer<typeof configSchema>;

/** The image's path on this machine, under the box mount. */
export function imagePath(c: { boxMount: string; image: { name: string } }): string {
  return `${c.boxMount}/${c.image.name}`;
}

export function serializeConfig(c: Config): string {
  return JSON.stringify(c, null, 2) + '\n';
}

/** Reads a config; undefined when the file does not exist. Invalid content is an error naming each field. */
export async function readConfig(path: string): Promise<Config | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new HbsError(`config ${path} is not valid JSON`, EXIT.usage, 'fix or remove it, then re-run');
  }
  const r = configSchema.safeParse(data);
  if (!r.success) {
    throw new HbsError(`config ${path} is invalid:\n${formatIssues(r.error).map((l) => '  ' + l).join('\n')}`, EXIT.usage);
  }
  return r.data;
}
