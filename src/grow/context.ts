import type { Runner } from '../core/runner.js';
import type { Config } from '../lib/config.js';
import type { LuksKey } from '../lib/luks.js';
import type { Missing } from '../init/preflight.js';
import type { Reporter } from '../ui/reporter.js';
import type { FsGeometry } from './geometry.js';

/** What the machine looks like to `hbs grow`; injected so tests can describe any machine. */
export interface GrowDeps {
  now(): Date;
  sleep(ms: number): Promise<void>;
  /** This machine's identity, to read the lock on the box. */
  machineId(): Promise<string>;
  /** Whether programs started here can hold CAP_SYS_RESOURCE; undefined when it cannot be told. */
  canResizeOnline(): Promise<boolean | undefined>;
  /** Programs grow needs that are not installed (cryptsetup too for an encrypted image). */
  missingTools(encrypted?: boolean): Promise<Missing[]>;
}

/** The state of the stack before anything changes, read with read-only probes. */
export interface GrowFacts {
  image: string;
  file: {
    sizeBytes: number;
    /** Bytes the image really occupies on the box (the box's own `du`); undefined when it cannot be asked. */
    allocatedBytes?: number;
  };
  /**
   * The filesystem's size from its own superblock. Undefined when it is behind a key: an encrypted
   * image whose mapping is closed (read once the grow has opened it).
   */
  fs?: FsGeometry;
  /** The device the filesystem is mounted from at its mount point (loop device, or /dev/mapper/NAME); undefined when it is not mounted. */
  device?: string;
  /** Bytes before the filesystem starts in the image: the LUKS2 header (its data offset), 0 when not encrypted. */
  payloadOffset: number;
  /** Encrypted images: the dm-crypt mapping. */
  crypt?: CryptFacts;
  box: { totalBytes: number; freeBytes: number };
  canResizeOnline: boolean | undefined;
}

/** The LUKS2 layer of an encrypted image, read with `cryptsetup luksDump` and `cryptsetup status`. */
export interface CryptFacts {
  name: string;
  /** /dev/mapper/NAME */
  mapper: string;
  open: boolean;
  /** The loop device under the open mapping. */
  loop?: string;
  /** The open mapping's size in bytes. */
  mapperBytes?: number;
  /**
   * Whether `cryptsetup resize` will want the key: LUKS2 keeps the volume key in the kernel keyring
   * by default ("key location: keyring"), and then resize must unlock a key slot again. Only a
   * mapping whose key sits in the dm table ("key location: dm-crypt") resizes without it.
   */
  resizeNeedsKey: boolean;
}

/** What `hbs grow` will do, decided from the facts and the requested size. */
export interface GrowDecision {
  /** The request as the person gave it, with the size it means ("--size +1G (3 GiB: …)"). */
  asked: string;
  fromBytes: number;
  /** The filesystem's size now; undefined when it is behind a key (closed mapping). */
  fsBytes?: number;
  targetBytes: number;
  /** Set when an earlier grow stopped halfway: what is left, for the person. */
  resume?: string;
  /** The image and the filesystem are already grown; only the config lags behind. */
  configOnly: boolean;
  mounted: boolean;
  /** The kernel will refuse an online resize for certain (no CAP_SYS_RESOURCE). */
  onlineRefusalExpected: boolean;
  /** Encrypted: the grow needs the key (to open the mapping, or for `cryptsetup resize`). */
  keyNeeded: boolean;
}

export interface GrowContext {
  cfg: Config;
  configPath: string;
  runner: Runner;
  reporter: Reporter;
  deps: GrowDeps;
  facts: GrowFacts;
  decision: GrowDecision;
  verbose: boolean;
  /** Encrypted: the key, checked before the first change (absent in a dry-run and where none is needed). Never logged. */
  key?: LuksKey;
  /** What the steps learn on the way: the filesystem's size once an opened mapping shows it, whether hbs opened the mapping. */
  state: { after?: FsGeometry; afterDevice?: string; fs?: FsGeometry; opened?: boolean };
}
