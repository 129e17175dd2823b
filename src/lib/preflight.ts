import { access, constants, stat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

/**
 * What each command needs on this machine, in one table: root, the programs it runs (with the
 * Debian package that brings each) and kernel devices. A dry-run needs the same: it reads the same
 * state (mounts, loop devices, the box mount) with the same programs, and that state is root's.
 */
export type PreflightCommand = 'init' | 'mount' | 'umount' | 'grow' | 'uninstall' | 'backup';

type Tool = { tool: string; pkg: string };

const SSH: Tool[] = [
  { tool: 'sshfs', pkg: 'sshfs' },
  { tool: 'fusermount3', pkg: 'fuse3' },
  { tool: 'ssh', pkg: 'openssh-client' },
  { tool: 'sftp', pkg: 'openssh-client' },
];
const MOUNTS: Tool[] = [
  { tool: 'losetup', pkg: 'mount' },
  { tool: 'mount', pkg: 'mount' },
  { tool: 'umount', pkg: 'mount' },
  { tool: 'findmnt', pkg: 'util-linux' },
  { tool: 'blkid', pkg: 'util-linux' },
  { tool: 'stat', pkg: 'coreutils' },
  { tool: 'dd', pkg: 'coreutils' },
];
const EXT4: Tool[] = [
  { tool: 'e2fsck', pkg: 'e2fsprogs' },
  { tool: 'dumpe2fs', pkg: 'e2fsprogs' },
  { tool: 'e2undo', pkg: 'e2fsprogs' },
];

export const TOOLS: Record<PreflightCommand, readonly Tool[]> = {
  init: [
    ...SSH,
    { tool: 'ssh-keygen', pkg: 'openssh-client' },
    { tool: 'ssh-keyscan', pkg: 'openssh-client' },
    ...MOUNTS,
    ...EXT4,
    { tool: 'mkfs.ext4', pkg: 'e2fsprogs' },
    { tool: 'mke2fs', pkg: 'e2fsprogs' },
    { tool: 'resize2fs', pkg: 'e2fsprogs' },
    { tool: 'truncate', pkg: 'coreutils' },
  ],
  mount: [...SSH, ...MOUNTS, ...EXT4],
  umount: [{ tool: 'fusermount3', pkg: 'fuse3' }, ...MOUNTS, { tool: 'sync', pkg: 'coreutils' }],
  // The way down, as umount (--remove-box-key and --delete-image also mount the box, with init's sshfs).
  uninstall: [{ tool: 'fusermount3', pkg: 'fuse3' }, ...MOUNTS, { tool: 'sync', pkg: 'coreutils' }],
  /** Everything mount needs (a backup brings a stack that is down up first), and rsync. */
  backup: [...SSH, ...MOUNTS, ...EXT4, { tool: 'rsync', pkg: 'rsync' }, { tool: 'flock', pkg: 'util-linux' }, { tool: 'setpriv', pkg: 'util-linux' }, { tool: 'sync', pkg: 'coreutils' }, { tool: 'mv', pkg: 'coreutils' }],
  grow: [
    ...MOUNTS,
    ...EXT4,
    { tool: 'resize2fs', pkg: 'e2fsprogs' },
    { tool: 'blockdev', pkg: 'util-linux' },
    { tool: 'truncate', pkg: 'coreutils' },
  ],
};

const CRYPTSETUP: Tool = { tool: 'cryptsetup', pkg: 'cryptsetup-bin' };

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

export function defaultPreflightDeps(env: NodeJS.ProcessEnv = process.env): PreflightDeps {
  return { uid: () => process.getuid?.() ?? -1, pathEnv: env.PATH ?? '', exists: (p) => stat(p).then(() => true, () => false) };
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

/** Everything `command` needs here; an empty list means ready. Read-only. */
export async function preflight(command: PreflightCommand, o: { encrypted: boolean }, d: PreflightDeps): Promise<Missing[]> {
  const missing: Missing[] = [];
  if (d.uid() !== 0) missing.push({ what: 'root privileges (the box mount, loop devices and mounts are root\'s)', fix: 'run hbs as root, e.g. with sudo' });
  const tools = o.encrypted ? [...TOOLS[command], CRYPTSETUP] : TOOLS[command];
  const seen = new Set<string>();
  for (const { tool, pkg } of tools) {
    if (seen.has(tool)) continue;
    seen.add(tool);
    if (!(await which(tool, d.pathEnv))) missing.push({ what: `the program ${tool}`, pkg });
  }
  if (command === 'init' || command === 'mount' || command === 'backup') {
    if (!(await d.exists('/dev/fuse'))) missing.push({ what: 'the FUSE device /dev/fuse', fix: 'modprobe fuse' });
    if (!(await d.exists('/dev/loop-control')) && !(await d.exists('/sys/module/loop'))) missing.push({ what: 'loop device support', fix: 'modprobe loop' });
  }
  return missing;
}

export function packagesFor(missing: readonly Missing[]): string[] {
  return [...new Set(missing.flatMap((m) => (m.pkg ? [m.pkg] : [])))];
}

export function describeMissing(missing: readonly Missing[]): string {
  return missing.map((m) => `  - ${m.what}${m.pkg ? ` (Debian package: ${m.pkg})` : ''}${m.fix ? ` — ${m.fix}` : ''}`).join('\n');
}
