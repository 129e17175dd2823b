import type { LastBackup } from './backup.js';

/** `hbs status --json`: stable keys, documented in docs/status-json.md. */
export interface StatusReport {
  config: string;
  healthy: boolean;
  box: {
    state: string;
    detail: string;
    reachable: boolean;
    mountPoint: string;
    source: string;
    totalBytes: number | null;
    usedBytes: number | null;
    freeBytes: number | null;
    /** The readahead (KiB) of the box mount's device, what reads through the stack ask the box for at once; null when not mounted or unknown. */
    readAheadKb: number | null;
  };
  image: { path: string; exists: boolean; sizeBytes: number | null; allocatedBytes: number | null; loopDevices: string[] };
  filesystem: {
    state: string;
    detail: string;
    mountPoint: string;
    device: string | null;
    uuid: string;
    sizeBytes: number | null;
    usedBytes: number | null;
    freeBytes: number | null;
    /** The loop device under it does direct I/O (slow reads: hbs keeps it buffered); null when not mounted or unknown. */
    loopDirectIo: boolean | null;
    /** Mounted read-only (ext4 remounts itself so after write errors). */
    readOnly: boolean | null;
    /**
     * What the superblock records of failed writes (the kernel counts them and keeps the first and
     * last); null when the superblock cannot be read (box down, or encrypted and closed).
     */
    errors: {
      /** Errors the superblock records (ext4's own count). */
      count: number;
      /** What the kernel logged about failed writes since it was mounted (I/O errors, an aborted journal): the first and the last line, and how many. */
      kernel: { lines: number; first: string | null; last: string | null };
      first: { time: string | null; function: string | null } | null;
      last: { time: string | null; function: string | null } | null;
      /** The likely cause, from what status can see: the box is (nearly) full, the link dropped, or other I/O errors. */
      cause: 'box-full' | 'link-dropped' | 'io-errors' | null;
    } | null;
  };
  /**
   * Thin provisioning: the box must be able to hold what the filesystem believes it still has. An
   * image takes box space only where it was written; snapshots on the box take the same space.
   * null when it cannot be worked out (box or filesystem not up).
   */
  space: {
    boxFreeBytes: number;
    /** Free in ext4 (df): all of it may still be written. */
    filesystemFreeBytes: number;
    /** The part of the image not yet allocated on the box (apparent size − allocated; null where the box's du cannot be asked). */
    imageUnallocatedBytes: number | null;
    /** What the box may still have to hold: the smaller of the two above. */
    mayStillNeedBytes: number;
    /** How much of that the box lacks (0 when it can hold it all). */
    shortBytes: number;
    ok: boolean;
  } | null;
  /** How the stack comes up at boot: the systemd unit (enabled, or missing), or fstab (no systemd: without the lock). */
  boot: { state: 'enabled' | 'missing' | 'fstab'; unit: string | null; path: string | null };
  fstab: { state: 'ok' | 'missing' | 'invalid' | 'disabled'; path: string | null; detail: string };
  lock: { state: 'free' | 'ours' | 'other' | 'unreadable' | 'unknown'; hostname: string | null; machineId: string | null; pid: number | null; time: string | null };
  /** null for a plain image. keySlots/cipher are null when the header cannot be read (box down). */
  encryption: {
    state: 'open' | 'closed' | 'conflict';
    detail: string;
    device: string;
    cipher: string | null;
    keySlots: string[] | null;
    headerBackup: { path: string; present: boolean };
    unattendedKeyFile: string | null;
    /** With --luks-unattended: the crypttab that should hold the hbs line opening the mapping at boot; else null. */
    crypttab: { path: string; present: boolean } | null;
  } | null;
  /** The last `hbs backup` run (time, result, snapshot; docs/backup.md); null before the first. It does not count for `healthy`. */
  lastBackup?: LastBackup | null;
}

