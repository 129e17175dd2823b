import type { Runner } from '../core/runner.js';
import type { Config } from '../lib/config.js';
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
  /** Programs grow needs that are not installed. */
  missingTools(): Promise<Missing[]>;
}

/** The state of the stack before anything changes, read with read-only probes. */
export interface GrowFacts {
  image: string;
  file: {
    sizeBytes: number;
    /** Bytes the image really occupies on the box (the box's own `du`); undefined when it cannot be asked. */
    allocatedBytes?: number;
  };
  /** The filesystem's size from its own superblock. */
  fs: FsGeometry;
  /** The loop device the filesystem is mounted from at its mount point; undefined when it is not mounted. */
  device?: string;
  box: { totalBytes: number; freeBytes: number };
  canResizeOnline: boolean | undefined;
}

/** What `hbs grow` will do, decided from the facts and the requested size. */
export interface GrowDecision {
  /** The request as the person gave it, with the size it means ("--size +1G (3 GiB: …)"). */
  asked: string;
  fromBytes: number;
  fsBytes: number;
  targetBytes: number;
  /** Set when an earlier grow stopped halfway: what is left, for the person. */
  resume?: string;
  /** The image and the filesystem are already grown; only the config lags behind. */
  configOnly: boolean;
  mounted: boolean;
  /** The kernel will refuse an online resize for certain (no CAP_SYS_RESOURCE). */
  onlineRefusalExpected: boolean;
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
  /** What the steps learn on the way. */
  state: { after?: FsGeometry; afterDevice?: string };
}
