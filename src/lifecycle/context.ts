import { readFile } from 'node:fs/promises';
import type { Runner } from '../core/runner.js';
import type { Config } from '../lib/config.js';
import type { BoxConn } from '../lib/ssh.js';
import type { Reporter } from '../ui/reporter.js';
import type { LuksKey } from '../lib/luks.js';

export interface LifecycleDeps {
  now(): Date;
  hostname(): string;
  /** This machine's identity for the lock on the box (/etc/machine-id). */
  machineId(): Promise<string>;
  pid: number;
}

export interface LifecycleOptions {
  force: boolean;
  stealLock: boolean;
  verbose: boolean;
}

/** What mount, umount and status work with: the recorded config and the injected collaborators. */
export interface LifecycleContext {
  cfg: Config;
  configPath: string;
  runner: Runner;
  reporter: Reporter;
  deps: LifecycleDeps;
  opts: LifecycleOptions;
  /** Encrypted images: where the key comes from (attempt counts from 1), and the key once verified. */
  luks?: { key?: (attempt: number) => Promise<LuksKey>; canRetry?: boolean; verified?: LuksKey };
}

export function connOf(cfg: Config): BoxConn {
  return { ...cfg.box, key: cfg.ssh.key, knownHosts: cfg.ssh.knownHosts };
}

export async function readMachineId(): Promise<string> {
  for (const path of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    try {
      const id = (await readFile(path, 'utf8')).trim();
      if (id) return id;
    } catch {
      // try the next one
    }
  }
  return 'unknown';
}
