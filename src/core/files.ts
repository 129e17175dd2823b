import { randomBytes } from 'node:crypto';
import { chmod, copyFile, link, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Writes a file atomically: a temporary file in the same directory, fsync, then rename over the
 * target. A reader sees either the old or the new content, never a half-written file.
 */
export async function writeFileAtomic(path: string, content: string | Uint8Array, mode: number): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.hbs-${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(content);
    await fh.chmod(mode); // umask must not loosen or tighten the mode we promised
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Creates a file that must not exist yet: of two writers racing, exactly one gets it, and nobody —
 * not even after a kill -9 halfway — ever sees it empty or half written. The content goes to a
 * temporary file first and is hard-linked into place (link(2) fails when the name exists; over
 * sshfs it is the hardlink@openssh.com extension). Where links are refused, O_EXCL and a write.
 */
export async function writeFileExclusive(path: string, content: string | Uint8Array, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.hbs-${randomBytes(4).toString('hex')}.tmp`);
  await writeNew(tmp, content, mode);
  try {
    await link(tmp, path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP' && code !== 'ENOTSUP') {
      await rm(tmp, { force: true });
      throw err;
    }
    await rm(tmp, { force: true });
    await writeNew(path, content, mode);
    return;
  }
  await rm(tmp, { force: true });
}

async function writeNew(path: string, content: string | Uint8Array, mode: number): Promise<void> {
  const fh = await open(path, 'wx', mode);
  try {
    await fh.writeFile(content);
    await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Replaces a file that may be on a remote filesystem (the box): written beside it and renamed over
 * it, so it is never half written; servers without POSIX rename get remove-then-rename.
 */
export async function replaceFile(path: string, content: string | Uint8Array, mode: number): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  await writeNew(tmp, content, mode);
  try {
    await rename(tmp, path);
  } catch {
    await rm(path, { force: true });
    await rename(tmp, path);
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export async function fileExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

export async function dirExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** What a would-be mount point is: missing, an empty directory, a directory with files, or not a directory. */
export async function dirState(path: string): Promise<'missing' | 'empty' | 'full' | 'not-a-directory'> {
  try {
    return (await readdir(path)).length === 0 ? 'empty' : 'full';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'missing';
    if (code === 'ENOTDIR') return 'not-a-directory';
    throw err;
  }
}

export async function ensureDir(path: string, mode: number): Promise<void> {
  if (await exists(path)) return;
  await mkdir(path, { recursive: true, mode });
  await chmod(path, mode);
}

/** A text file's content; undefined when it does not exist (other errors are thrown). */
export async function readTextIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** A file's permission bits, or undefined when it does not exist. */
export async function modeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).mode & 0o7777;
  } catch {
    return undefined;
  }
}

/** Copies `path` next to itself with a time-stamped name; returns the backup's path. */
export async function backupFile(path: string, now: Date): Promise<string> {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  let target = `${path}.hbs-backup-${stamp}`;
  for (let i = 1; await exists(target); i++) target = `${path}.hbs-backup-${stamp}-${i}`;
  await copyFile(path, target);
  return target;
}
