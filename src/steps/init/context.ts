import { join, dirname } from 'node:path';
import type { Config } from '../../lib/config.js';
import type { HostKey } from '../../lib/host-keys.js';
import { lockPathOf } from '../../lib/lock.js';
import type { KdfOptions, LuksKey } from '../../lib/luks.js';
import { mapperPath } from '../../lib/luks.js';
import { knownHostsPath, type Stack } from '../../lib/stack.js';
import type { StepCtx } from '../context.js';
import type { Intent } from '../../lib/intent.js';

/** `hbs init --encrypt`: which keys go into the LUKS2 key slots. The secrets are in InitCtx, not here. */
export interface EncryptOptions {
  mapperName: string;
  /** A passphrase goes into a key slot (typed, --luks-passphrase-stdin or HBS_LUKS_PASSPHRASE). */
  passphrase: boolean;
  /** A key file goes into a key slot: an existing one (given) or one generated under /dev/shm. */
  keyFile?: { path: string; generated: boolean; keep: boolean };
  /** Where luksHeaderBackup writes (a local file, 0600). */
  headerBackup: string;
  /** Keep a key at /etc/hbs/<mapperName>.key (0400) so the stack can come up at boot. */
  unattendedKeyFile: string | null;
  /**
   * With --luks-unattended only: the crypttab that gets the hbs line opening the mapping at boot
   * (default /etc/crypttab), or null with --no-crypttab. Absent without --luks-unattended.
   */
  crypttab?: string | null;
  /** The key derivation of new key slots (--luks-pbkdf, --luks-iter-time). */
  kdf: KdfOptions;
}

/** Every answer of `hbs init`, checked (the size in bytes), and the behaviour flags. */
export interface InitOptions {
  user: string;
  host: string;
  port: number;
  remotePath: string;
  image: string;
  /** Bytes; undefined only with --adopt (the image on the box has its own size). */
  size?: number;
  boxMount: string;
  mountPoint: string;
  sshKey: string;
  hostKeyFingerprint?: string;
  fstab: string | null;
  config: string;
  /** Allow an image larger than the box's free space. */
  force: boolean;
  /** Use an image already on the box as it is (a reinstalled server): no mkfs. */
  adopt: boolean;
  /** Erase and re-format an existing image; only together with formatConfirmed. */
  forceFormat: boolean;
  /** The person typed the image name at the prompt (never implied by --yes). */
  formatConfirmed: boolean;
  /** Whether --size was given (with --adopt it may be left out). */
  sizeGiven: boolean;
  encrypt?: EncryptOptions;
  /** The systemd unit that brings the stack up at boot (`live`: this machine runs systemd there, so it is reloaded and started); null: --no-systemd. */
  systemd: { dir: string; live: boolean } | null;
}

/** What init's steps learn and pass on. */
export interface InitState {
  /** The box's host key the person confirmed (or matched --host-key-fingerprint). */
  hostKey?: HostKey;
  /** hbs made the SSH key pair (in this run, or another config using it records so): the config records it as hbs's own. */
  sshKeyMade?: boolean;
  /** The config already on disk, if any. */
  existingConfig?: Config;
  image: {
    /** Created in this run: only such a file may be formatted. */
    created: boolean;
    /** Size of an adopted image (its real size, whatever --size said). */
    sizeBytes?: number;
    adopted?: boolean;
    /** What this run creates (or an earlier, interrupted one was creating): name, size, UUIDs. */
    intent?: Intent;
    /** The image is an earlier run's, half made: made anew. */
    resume?: boolean;
  };
  mkfsExtended: string[];
  box?: { totalBytes: number; freeBytes: number };
  /** With --encrypt: the LUKS2 container exists on the image (formatted here, or found). */
  luks?: {
    formatted: boolean;
    /** --adopt on a LUKS image not recorded here: used as it is (its LUKS UUID, once the box is mounted). */
    adopted?: { uuid?: string };
  };
}

export interface InitCtx extends StepCtx {
  opts: InitOptions;
  /** The box password, when key login has to be set up. Never logged. */
  password?: string;
  /** With --encrypt: the keys for the key slots of a new image (passphrase first, then the key file). Never logged. */
  luksKeys: LuksKey[];
  state: InitState;
  /** How systemd starts hbs: this node and this CLI (ExecStart of the boot unit). */
  hbsCommand: readonly string[];
}

export function newState(): InitState {
  return { image: { created: false }, mkfsExtended: [] };
}

/** The stack init builds, from its answers; the filesystem's UUID and mount options are decided by its steps. */
export function stackForInit(o: InitOptions): Stack {
  const image = `${o.boxMount}/${o.image}`;
  const e = o.encrypt;
  return {
    configPath: o.config,
    conn: { user: o.user, host: o.host, port: o.port, remotePath: o.remotePath, key: o.sshKey, knownHosts: knownHostsPath(o.config) },
    boxMount: o.boxMount,
    image: { name: o.image, path: image, sizeBytes: o.size ?? 0 },
    crypt: e && {
      mapperName: e.mapperName,
      device: mapperPath(e.mapperName),
      headerBackup: e.headerBackup,
      unattendedKeyFile: e.unattendedKeyFile,
      crypttab: e.crypttab ?? null,
    },
    fs: { mountPoint: o.mountPoint, device: e ? mapperPath(e.mapperName) : image, mountOptions: ['noatime'] },
    lockPath: lockPathOf(image),
    fstab: o.fstab,
    logDir: join(dirname(o.config), 'logs'),
    systemdDir: o.systemd?.dir ?? null,
  };
}
