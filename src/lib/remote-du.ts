import type { Runner } from '../core/runner.js';
import { sshOptionPairs, type BoxConn } from './ssh.js';

/**
 * Bytes a file really occupies on the box. SFTP reports no block counts (sshfs derives st_blocks
 * from the size), so this asks the box's own `du` over ssh — available on port 23 of a Storage Box
 * with SSH support enabled; undefined where there is no shell (port 22). Read-only.
 */
export async function remoteAllocatedBytes(runner: Runner, c: BoxConn, name: string): Promise<number | undefined> {
  const path = c.remotePath ? `${c.remotePath.replace(/\/+$/, '')}/${name}` : name;
  // The remote side parses this as a command line: only plain names are sent (validation allows
  // more, so anything else is simply not measured).
  if (!/^[A-Za-z0-9._/+-]+$/.test(path)) return undefined;
  const argv = ['ssh', '-p', String(c.port), '-o', 'ConnectTimeout=20'];
  for (const o of sshOptionPairs(c, { batch: true })) argv.push('-o', o);
  // Plain ssh takes an IPv6 address without brackets (sftp and sshfs want them).
  argv.push(`${c.user}@${c.host}`, 'du', '-k', path);
  const r = await runner.run({ argv, write: false, allowFail: true, timeoutMs: 60_000 });
  const kib = Number(r.stdout.trim().split(/\s+/)[0]);
  return r.exitCode === 0 && Number.isFinite(kib) ? kib * 1024 : undefined;
}
