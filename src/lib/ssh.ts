import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { knownHostsName, pinKey, sshTarget, type HostKey } from './host-keys.js';
import type { Cmd } from '../core/runner.js';

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

/** The sshfs command that mounts the box with hbs's key and pinned host key. */
export function sshfsArgv(c: BoxConn, target: string): string[] {
  return ['sshfs', '-o', sshfsMountOptions(c).join(','), sshfsSource(c), target];
}

/** The command that mounts the box: a session of its own, so closing the terminal cannot kill its ssh. */
export function sshfsMountCmd(c: BoxConn, target: string): Cmd {
  return { argv: sshfsArgv(c, target), timeoutMs: 60_000, detached: true };
}

/** The sshfs command that mounts the account's home with the password (read from stdin). */
export function passwordMountArgv(c: BoxConn, dir: string): string[] {
  const opts = [
    'password_stdin',
    `port=${c.port}`,
    'PubkeyAuthentication=no',
    'NumberOfPasswordPrompts=1',
    ...sshOptionPairs(c, { batch: false }).filter((o) => !o.startsWith('IdentityFile=') && o !== 'IdentitiesOnly=yes'),
  ];
  return ['sshfs', '-o', opts.join(','), `${sshTarget(c.user, c.host)}:`, dir];
}

/** The sftp command line hbs uses to talk to the box without mounting it (a batch on stdin). */
export function sftpBatchArgv(c: BoxConn): string[] {
  const argv = ['sftp', '-q', '-b', '-', '-P', String(c.port), '-o', 'ConnectTimeout=20'];
  for (const o of sshOptionPairs(c, { batch: true })) argv.push('-o', o);
  argv.push(sshTarget(c.user, c.host));
  return argv;
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
