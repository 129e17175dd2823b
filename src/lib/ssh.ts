import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { knownHostsName, pinKey, sshTarget, type HostKey } from './host-keys.js';
import type { Runner } from '../core/runner.js';

/** Everything needed to reach the box with hbs's own key and pinned host key. */
export interface BoxConn {
  user: string;
  host: string;
  port: number;
  remotePath: string;
  key: string;
  knownHosts: string;
}

/**
 * A value as ssh's config parser reads it: white space separates words (UserKnownHostsFile takes
 * several files), so a path with a space must be in double quotes. Paths with `"` are refused by
 * validation.
 */
export function sshConfigValue(value: string): string {
  return /\s/.test(value) ? `"${value}"` : value;
}

/**
 * ssh options every connection uses: only our key, only our pinned host key, and keepalives so a
 * dead link becomes an error after ~45 s instead of a hang.
 */
export function sshOptionPairs(c: BoxConn, opts: { batch: boolean }): string[] {
  return [
    `IdentityFile=${sshConfigValue(c.key)}`,
    'IdentitiesOnly=yes',
    `UserKnownHostsFile=${sshConfigValue(c.knownHosts)}`,
    'GlobalKnownHostsFile=/dev/null',
    'StrictHostKeyChecking=yes',
    'ServerAliveInterval=15',
    'ServerAliveCountMax=3',
    ...(opts.batch ? ['BatchMode=yes'] : []),
  ];
}

/** sshfs mount options for the box (also the option field of its fstab line, plus fstab-only flags). */
export function sshfsMountOptions(c: BoxConn): string[] {
  return ['reconnect', `port=${c.port}`, ...sshOptionPairs(c, { batch: true }), `fsname=${boxMountSource(c)}`];
}

/** `user@host:path` as sshfs takes it; an empty path is the account's home directory. */
export function sshfsSource(c: Pick<BoxConn, 'user' | 'host' | 'remotePath'>): string {
  return `${sshTarget(c.user, c.host)}:${c.remotePath}`;
}

/**
 * The box mount's source as the fstab line spells it (`sshfs#user@host:path`, for mount.fuse3), and
 * as the kernel shows it once mounted (sshfs's `fsname=` option). Without fsname the kernel shows
 * `user@host:path`, which `mount -a` does not match to the fstab line: a second `mount -a` mounted
 * the box again on top of itself, and then the image a second time through a new loop device —
 * two ext4 mounts of one filesystem (measured).
 */
export function boxMountSource(c: Pick<BoxConn, 'user' | 'host' | 'remotePath'>): string {
  return `sshfs#${sshfsSource(c)}`;
}

/** Whether a mount's source is this box: as hbs mounts it now, or as older versions did (no fsname). */
export function isBoxSource(source: string, c: Pick<BoxConn, 'user' | 'host' | 'remotePath'>): boolean {
  return source === boxMountSource(c) || source === sshfsSource(c);
}

/**
 * Whether key login works, over SFTP (port 22 of a real box offers no shell). Read-only: it runs
 * `pwd` in an sftp batch.
 */
export async function keyLoginWorks(runner: Runner, c: BoxConn): Promise<{ ok: boolean; stderr: string }> {
  const argv = ['sftp', '-q', '-b', '-', '-P', String(c.port), '-o', 'ConnectTimeout=20'];
  for (const o of sshOptionPairs(c, { batch: true })) argv.push('-o', o);
  argv.push(sshTarget(c.user, c.host));
  const r = await runner.run({ argv, stdin: 'pwd\n', write: false, allowFail: true, timeoutMs: 60_000 });
  return { ok: r.exitCode === 0, stderr: r.stderr.trim() };
}

/**
 * Runs `work` with a throwaway known_hosts that trusts exactly `hostKey` (for probes before the key
 * is pinned: a dry-run, the wizard). The directory is removed afterwards.
 */
export async function withThrowawayKnownHosts<T>(
  mkTempDir: (prefix: string) => Promise<string>,
  host: string,
  port: number,
  hostKey: HostKey,
  work: (knownHosts: string) => Promise<T>,
): Promise<T> {
  const dir = await mkTempDir('hbs-probe-');
  try {
    const knownHosts = join(dir, 'known_hosts');
    await writeFile(knownHosts, pinKey('', knownHostsName(host, port), hostKey), { mode: 0o600 });
    return await work(knownHosts);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
