import type { Reporter } from '../core/reporter.js';
import type { KeySource } from '../lib/keys.js';
import type { LuksKey } from '../lib/luks.js';
import type { Probes } from '../lib/probes.js';
import type { Stack } from '../lib/stack.js';

/** What the machine is to the steps, beyond probes; injected so tests can describe any machine. */
export interface Deps {
  now(): Date;
  hostname(): string;
  /** This machine's identity for the lock on the box (/etc/machine-id). */
  machineId(): Promise<string>;
  pid: number;
  uuid(): string;
  /** A fresh private (0700) temporary directory. */
  mkTempDir(prefix: string): Promise<string>;
  sleep(ms: number): Promise<void>;
}

/**
 * What every step works with: the stack, read-only probes of the machine, the reporter, the
 * machine's identity, the key of an encrypted image, and the person's decisions. Commands extend
 * it with what only they need.
 */
export interface StepCtx {
  stack: Stack;
  probe: Probes;
  reporter: Reporter;
  deps: Deps;
  /** An encrypted image's key: where it comes from, and (once the key step has checked it) the key. Never logged. */
  key: { source: KeySource; key?: LuksKey };
  /** Another machine's lock may be taken over (the person confirmed it). */
  stealLock: boolean;
  /** What steps found and later steps need (set by the steps that learn it). */
  found: {
    /** A lock held by someone else that this run takes over (named when the lock is written). */
    takeover?: string;
    /** The filesystem was detached lazily (umount --force): what is under it stays. */
    lazy?: boolean;
  };
}
