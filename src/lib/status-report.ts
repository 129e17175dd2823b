/** `hbs status --json`: stable keys, documented in docs/status-json.md. */
export interface StatusReport {
  config: string;
  healthy: boolean;
  box: { state: string; detail: string; reachable: boolean; mountPoint: string; source: string; totalBytes: number | null; usedBytes: number | null; freeBytes: number | null };
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
    /** The loop device under it does direct I/O (see lib/loop.ts); null when not mounted or unknown. */
    loopDirectIo: boolean | null;
  };
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
}

