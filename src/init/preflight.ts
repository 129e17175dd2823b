import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

/** Programs hbs runs, with the Debian package that brings each. */
export const REQUIRED_TOOLS: readonly { tool: string; pkg: string }[] = [
  { tool: 'sshfs', pkg: 'sshfs' },
  { tool: 'fusermount3', pkg: 'fuse3' },
  { tool: 'ssh', pkg: 'openssh-client' },
  { tool: 'sftp', pkg: 'openssh-client' },
  { tool: 'ssh-keygen', pkg: 'openssh-client' },
  { tool: 'ssh-keyscan', pkg: 'openssh-client' },
  { tool: 'mkfs.ext4', pkg: 'e2fsprogs' },
  { tool: 'mke2fs', pkg: 'e2fsprogs' },
  { tool: 'e2fsck', pkg: 'e2fsprogs' },
  { tool: 'resize2fs', pkg: 'e2fsprogs' },
  { tool: 'losetup', pkg: 'mount' },
  { tool: 'mount', pkg: 'mount' },
  { tool: 'umount', pkg: 'mount' },
  { tool: 'findmnt', pkg: 'util-linux' },
  { tool: 'blkid', pkg: 'util-linux' },
  { tool: 'truncate', pkg: 'coreutils' },
  { tool: 'stat', pkg: 'coreutils' },
];

export interface Missing {
  what: string;
  pkg?: string;
  fix?: string;
}

export interface PreflightDeps {
  uid(): number;
  pathEnv: string;
  /** Whether a path exists (devices included). */
  exists(path: string): Promise<boolean>;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Finds a program on PATH, and in the sbin directories root's PATH has even when ours lacks them. */
export async function which(tool: string, pathEnv: string): Promise<string | undefined> {
  const dirs = [...pathEnv.split(delimiter).filter(Boolean), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    const p = join(dir, tool);
    if (await isExecutable(p)) return p;
  }
  return undefined;
}

/** Everything hbs needs on this machine; an empty list means ready. Read-only. */
export async function preflight(d: PreflightDeps, opts: { needRoot: boolean }): Promise<Missing[]> {
  const missing: Missing[] = [];
  if (opts.needRoot && d.uid() !== 0) missing.push({ what: 'root privileges (mounts and loop devices need them)', fix: 'run hbs as root, e.g. with sudo' });
  for (const { tool, pkg } of REQUIRED_TOOLS) {
    if (!(await which(tool, d.pathEnv))) missing.push({ what: `the program ${tool}`, pkg });
  }
  if (!(await d.exists('/dev/fuse'))) missing.push({ what: 'the FUSE device /dev/fuse', fix: 'modprobe fuse' });
  if (!(await d.exists('/dev/loop-control')) && !(await d.exists('/sys/module/loop'))) {
    missing.push({ what: 'loop device support', fix: 'modprobe loop' });
  }
  return missing;
}

export function packagesFor(missing: readonly Missing[]): string[] {
  return [...new Set(missing.flatMap((m) => (m.pkg ? [m.pkg] : [])))];
}

export function describeMissing(missing: readonly Missing[]): string {
  return missing.map((m) => `  - ${m.what}${m.pkg ? ` (Debian package: ${m.pkg})` : ''}${m.fix ? ` — ${m.fix}` : ''}`).join('\n');
}
