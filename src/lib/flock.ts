import { spawn } from 'node:child_process';
import { open, type FileHandle } from 'node:fs/promises';

/**
 * An exclusive flock(2) on a file, held until released or until this process ends (kill -9
 * included: the kernel drops it with the last descriptor, so a crashed run never leaves a stale
 * lock). Node has no flock; flock(1) takes it on a descriptor it inherits — a lock belongs to the
 * open file description, which this process keeps after flock(1) exits.
 */
export interface HeldLock {
  release(): Promise<void>;
}

/** The lock, or undefined when another process holds it (never waits). */
export async function tryFlock(path: string): Promise<HeldLock | undefined> {
  const fh: FileHandle = await open(path, 'a', 0o600);
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn('flock', ['--nonblock', '--exclusive', '3'], { stdio: ['ignore', 'ignore', 'pipe', fh.fd] });
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (c) => (c === 0 || c === 1 ? resolve(c) : reject(new Error(`flock ${path}: ${err.trim() || `exit ${c}`}`))));
  }).catch(async (e: unknown) => {
    await fh.close();
    throw e;
  });
  if (code !== 0) {
    await fh.close();
    return undefined;
  }
  return { release: () => fh.close() };
}
