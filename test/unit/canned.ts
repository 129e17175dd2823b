/**
 * Canned answers of the read-only probes hbs runs, shared by the step and lifecycle unit tests.
 * Argv arrays are written out literally (not built from src helpers), so any change to a command
 * line fails a test.
 */
import type { Expectation } from '../../src/core/recording-runner.js';

export const USER = 'u123456';
export const HOST = 'u123456.your-storagebox.de';

export interface Mounted {
  source: string;
  fstype: string;
  options?: string;
}

/** `findmnt --json --mountpoint PATH`: exit 1 and no output when nothing is mounted there. */
export function findmnt(path: string, ...mounted: Mounted[]): Expectation {
  const argv = ['findmnt', '--json', '--mountpoint', path, '--output', 'TARGET,SOURCE,FSTYPE,OPTIONS'];
  if (mounted.length === 0) return { argv, write: false, exitCode: 1 };
  const filesystems = mounted.map((m) => ({ target: path, source: m.source, fstype: m.fstype, options: m.options ?? 'rw,relatime' }));
  return { argv, write: false, stdout: JSON.stringify({ filesystems }, null, 3) + '\n' };
}

/** The sftp `pwd` probe hbs uses to see whether key login works (and so whether the box is reachable). */
export function sftpProbe(paths: { sshKey: string; knownHosts: string }, exitCode: number, stderr = ''): Expectation {
  return {
    argv: [
      'sftp', '-q', '-b', '-', '-P', '23', '-o', 'ConnectTimeout=20',
      '-o', `IdentityFile=${paths.sshKey}`,
      '-o', 'IdentitiesOnly=yes',
      '-o', `UserKnownHostsFile=${paths.knownHosts}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', 'ServerAliveInterval=15',
      '-o', 'ServerAliveCountMax=3',
      '-o', 'BatchMode=yes',
      `${USER}@${HOST}`,
    ],
    write: false,
    stdin: 'pwd\n',
    exitCode,
    stderr,
  };
}

/** The sshfs option string for the box mount, written out. */
export function sshfsOptions(paths: { sshKey: string; knownHosts: string }, remotePath = 'backup'): string {
  return [
    'reconnect',
    'port=23',
    `IdentityFile=${paths.sshKey}`,
    'IdentitiesOnly=yes',
    `UserKnownHostsFile=${paths.knownHosts}`,
    'GlobalKnownHostsFile=/dev/null',
    'StrictHostKeyChecking=yes',
    'ServerAliveInterval=15',
    'ServerAliveCountMax=3',
    'BatchMode=yes',
    // the source the kernel shows, so that `mount -a` sees the fstab line as mounted
    `fsname=sshfs#${USER}@${HOST}:${remotePath}`,
  ].join(',');
}

/** `losetup --list … --output DIO LOOP`: the loop device's direct-I/O flag. */
export function loopDio(loop: string, on: boolean): Expectation {
  return { argv: ['losetup', '--list', '--noheadings', '--output', 'DIO', loop], write: false, stdout: `${on ? 1 : 0}\n` };
}

/** Switching a loop device to direct I/O: read DIO, switch, read it back; only the read when it already is. */
export function directIoOn(loop: string, already = false): Expectation[] {
  if (already) return [loopDio(loop, true)];
  return [loopDio(loop, false), { argv: ['losetup', '--direct-io=on', loop], write: true }, loopDio(loop, true)];
}
