import { dirname, join } from 'node:path';
import type { Runner } from '../core/runner.js';
import type { Config } from '../lib/config.js';
import type { HostKey } from '../lib/host-keys.js';
import type { BoxConn } from '../lib/ssh.js';
import type { Reporter } from '../ui/reporter.js';
import type { LuksKey } from '../lib/luks.js';
import type { InitOptions } from './options.js';

/** What the machine looks like to the steps; injected so tests can describe any machine. */
export interface Deps {
  uid(): number;
  uuid(): string;
  now(): Date;
  hostname(): string;
  /** This machine's identity for the lock on the box. */
  machineId(): Promise<string>;
  /** A fresh private (0700) temporary directory. */
  mkTempDir(prefix: string): Promise<string>;
}

/** Facts steps learn and pass on. */
export interface InitState {
  /** The box's host key the person confirmed (or matched --host-key-fingerprint). */
  hostKey?: HostKey;
  /** The config already on disk, if any. */
  existingConfig?: Config;
  /** Steps whose changes a dry-run did not make; later checks must not expect their effects. */
  simulated: Set<string>;
  image: {
    /** Created in this run: only such a file may be formatted. */
    created: boolean;
    uuid?: string;
    /** Size of an adopted image (its real size, whatever --size said). */
    sizeBytes?: number;
    adopted?: boolean;
  };
  /** Mount options of the ext4 filesystem (noinit_itable with older e2fsprogs). */
  mountOptions: string[];
  mkfsExtended: string[];
  box?: { totalBytes: number; freeBytes: number };
  /** With --encrypt: the LUKS2 container exists on the image (formatted here, or found). */
  luks?: {
    formatted: boolean;
    /** --adopt on a LUKS image not recorded here: used as it is (its LUKS UUID, once the box is mounted). */
    adopted?: { uuid?: string };
  };
}

export interface InitContext {
  opts: InitOptions;
  runner: Runner;
  reporter: Reporter;
  deps: Deps;
  /** The box password, when key login has to be set up. Never logged. */
  password?: string;
  /** With --encrypt: the keys for the key slots (passphrase first, then the key file). Never logged. */
  luksKeys?: LuksKey[];
  state: InitState;
}

export function knownHostsPath(configPath: string): string {
  return join(dirname(configPath), 'known_hosts');
}

export function boxConn(o: InitOptions): BoxConn {
  return {
    user: o.user,
    host: o.host,
    port: o.port,
    remotePath: o.remotePath,
    key: o.sshKey,
    knownHosts: knownHostsPath(o.config),
  };
}

export function imagePathOf(o: Pick<InitOptions, 'boxMount' | 'image'>): string {
  return `${o.boxMount}/${o.image}`;
}

/** What mkfs formats and the filesystem is mounted from: the mapping when encrypted, else the image file. */
export function fsDeviceOf(o: Pick<InitOptions, 'boxMount' | 'image' | 'encrypt'>): string {
  return o.encrypt ? `/dev/mapper/${o.encrypt.mapperName}` : imagePathOf(o);
}

export function newState(): InitState {
  return { simulated: new Set(), image: { created: false }, mountOptions: ['noatime'], mkfsExtended: [] };
}
