import { readdir } from 'node:fs/promises';
import type { Runner } from '../core/runner.js';

export interface MountInfo {
  target: string;
  source: string;
  fstype: string;
  options: string;
}

/** What is mounted exactly at `path` (not a parent), or undefined. Read-only. */
export async function mountAt(runner: Runner, path: string): Promise<MountInfo | undefined> {
  const r = await runner.run({
    argv: ['findmnt', '--json', '--mountpoint', path, '--output', 'TARGET,SOURCE,FSTYPE,OPTIONS'],
    write: false,
    allowFail: true,
  });
  if (r.exitCode !== 0 || !r.stdout.trim()) return undefined;
  const parsed = JSON.parse(r.stdout) as { filesystems?: Partial<MountInfo>[] };
  // With stacked mounts findmnt lists each; the last one is on top and the one that counts.
  const fs = parsed.filesystems?.at(-1);
  if (!fs) return undefined;
  return { target: fs.target ?? path, source: fs.source ?? '', fstype: fs.fstype ?? '', options: fs.options ?? '' };
}

/** One column of `losetup --list` for a loop device (BACK-FILE, DIO, …); undefined when it cannot be read. Read-only. */
export async function loopColumn(runner: Runner, device: string, column: string): Promise<string | undefined> {
  const r = await runner.run({ argv: ['losetup', '--list', '--noheadings', '--output', column, device], write: false, allowFail: true });
  const value = r.stdout.trim();
  return r.exitCode === 0 && value ? value : undefined;
}

/** The file behind a loop device, as losetup reports it. Read-only. */
export async function loopBackingFile(runner: Runner, device: string): Promise<string | undefined> {
  return (await loopColumn(runner, device, 'BACK-FILE'))?.replace(/ \(deleted\)$/, '');
}

/** True when the directory is missing or empty (a safe place to mount on). */
export async function isEmptyOrMissing(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length === 0;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return true;
    throw err;
  }
}

export async function dirExists(path: string): Promise<boolean> {
  try {
    await readdir(path);
    return true;
  } catch {
    return false;
  }
}
