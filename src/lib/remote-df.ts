import type { Runner } from '../core/runner.js';
import { sshTarget } from './host-keys.js';
import { sshOptionPairs, type BoxConn } from './ssh.js';

export interface BoxSpace {
  totalBytes: number;
  freeBytes: number;
}

/**
 * The figures of sftp's `df` (OpenSSH prints them in KiB under a "Size Used Avail (root)
 * %Capacity" header); undefined when there are none (a server without the statvfs extension).
 */
export function parseSftpDf(stdout: string): BoxSpace | undefined {
  const lines = stdout.split('\n');
  const header = lines.findIndex((l) => /^\s*Size\s+Used\s+Avail\b/.test(l));
  if (header < 0) return undefined;
  const [size, , avail] = (lines[header + 1] ?? '').trim().split(/\s+/).map(Number);
  if (size === undefined || avail === undefined || !Number.isFinite(size) || !Number.isFinite(avail)) return undefined;
  return { totalBytes: size * 1024, freeBytes: avail * 1024 };
}

/**
 * Whether key login to the box works and, if so, its free space: one sftp batch running `df`
 * (the leading `-` keeps a server without statvfs from failing the login test). Read-only;
 * mounts nothing.
 */
export async function probeBoxWithKey(runner: Runner, c: BoxConn): Promise<{ login: boolean; space?: BoxSpace }> {
  const argv = ['sftp', '-q', '-b', '-', '-P', String(c.port), '-o', 'ConnectTimeout=20'];
  for (const o of sshOptionPairs(c, { batch: true })) argv.push('-o', o);
  argv.push(sshTarget(c.user, c.host));
  const r = await runner.run({ argv, stdin: '-df\n', write: false, allowFail: true, timeoutMs: 60_000 });
  if (r.exitCode !== 0) return { login: false };
  return { login: true, space: parseSftpDf(r.stdout) };
}
