import { dirname, join } from 'node:path';
import { imagePath, type Config } from './config.js';
import { lockPathOf } from './lock.js';
import { mapperPath } from './luks.js';
import type { BoxConn } from './ssh.js';

/**
 * Everything a command needs to know about one hbs stack — box (sshfs) → image → (LUKS2) → ext4 —
 * before it looks at the machine: where each layer lives and what it must be. Built from a config
 * (mount, umount, status, grow) or from init's answers; every command works on this one value.
 */
export interface Stack {
  /** The config that describes the stack; also the id of its blocks in fstab/crypttab and its lock. */
  configPath: string;
  conn: BoxConn;
  boxMount: string;
  image: { name: string; path: string; sizeBytes: number };
  /** LUKS2 between the image and ext4. */
  crypt?: {
    mapperName: string;
    /** /dev/mapper/NAME */
    device: string;
    headerBackup: string;
    unattendedKeyFile: string | null;
    crypttab: string | null;
  };
  fs: {
    mountPoint: string;
    /** What ext4 is mounted from: the mapping when encrypted, else the image file (through a loop device). */
    device: string;
    /** The ext4 UUID the image must hold; undefined only while init has not decided it yet. */
    uuid?: string;
    mountOptions: string[];
  };
  lockPath: string;
  /** The fstab that holds the stack's block, or null (--no-fstab). */
  fstab: string | null;
  /** Where logs of repairs (e2fsck output) go: next to the config. */
  logDir: string;
  /** The directory holding the systemd unit that brings the stack up at boot; null: fstab does (no lock). */
  systemdDir: string | null;
}

export function knownHostsPath(configPath: string): string {
  return join(dirname(configPath), 'known_hosts');
}

export function stackFromConfig(cfg: Config, configPath: string): Stack {
  const image = imagePath(cfg);
  const enc = cfg.encryption;
  return {
    configPath,
    conn: { ...cfg.box, key: cfg.ssh.key, knownHosts: cfg.ssh.knownHosts },
    boxMount: cfg.boxMount,
    image: { name: cfg.image.name, path: image, sizeBytes: cfg.image.sizeBytes },
    crypt: enc && {
      mapperName: enc.mapperName,
      device: mapperPath(enc.mapperName),
      headerBackup: enc.headerBackup,
      unattendedKeyFile: enc.unattendedKeyFile,
      crypttab: enc.crypttab ?? null,
    },
    fs: {
      mountPoint: cfg.filesystem.mountPoint,
      device: enc ? mapperPath(enc.mapperName) : image,
      uuid: cfg.image.uuid,
      mountOptions: [...cfg.filesystem.mountOptions],
    },
    lockPath: lockPathOf(image),
    fstab: cfg.fstab,
    logDir: join(dirname(configPath), 'logs'),
    systemdDir: cfg.systemd?.dir ?? null,
  };
}

/** Mounts the image through a loop device, or (encrypted) the open mapping /dev/mapper/NAME as it is. */
export function mountArgv(device: string, mountPoint: string, mountOptions: readonly string[]): string[] {
  const viaLoop = !device.startsWith('/dev/mapper/');
  return ['mount', '-t', 'ext4', '-o', [...(viaLoop ? ['loop'] : []), ...mountOptions].join(','), device, mountPoint];
}

/** The readahead (KiB) hbs gives the box mount: 2–4 MiB measured best for restores, 8+ no better (bench/restore-results.md). */
export const BOX_READAHEAD_KB = 4096;
