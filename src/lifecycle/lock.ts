import { open, readFile, rename, rm } from 'node:fs/promises';
import { z } from 'zod';
import { imagePath } from '../lib/config.js';

/** Where the image is: all the lock needs to know. */
export interface ImageLocation {
  boxMount: string;
  image: { name: string };
}
import type { LifecycleDeps } from './context.js';

/**
 * ext4 mounted by two machines at once is destroyed. The lock lives on the box next to the image,
 * so every machine that can reach the image sees it.
 */
export const lockSchema = z.object({
  hostname: z.string(),
  machineId: z.string(),
  pid: z.number().int(),
  time: z.string(),
  config: z.string().optional(),
});

export type Lock = z.infer<typeof lockSchema>;

export function lockPath(cfg: ImageLocation): string {
  return `${imagePath(cfg)}.hbs-lock`;
}

export type LockState = { state: 'free' } | { state: 'ours'; lock: Lock } | { state: 'other'; lock: Lock } | { state: 'unreadable'; detail: string };

export async function readLock(cfg: ImageLocation, machineId: string): Promise<LockState> {
  let text: string;
  try {
    text = await readFile(lockPath(cfg), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'free' };
    return { state: 'unreadable', detail: (err as Error).message };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { state: 'unreadable', detail: `${lockPath(cfg)} is not JSON` };
  }
  const r = lockSchema.safeParse(parsed);
  if (!r.success) return { state: 'unreadable', detail: `${lockPath(cfg)} is not an hbs lock` };
  return r.data.machineId === machineId ? { state: 'ours', lock: r.data } : { state: 'other', lock: r.data };
}

export async function newLock(deps: LifecycleDeps, configPath: string): Promise<Lock> {
  return { hostname: deps.hostname(), machineId: await deps.machineId(), pid: deps.pid, time: deps.now().toISOString(), config: configPath };
}

/** Writes the lock; `replace` only when it is ours or the person chose to steal it. */
export async function writeLock(cfg: ImageLocation, lock: Lock, replace: boolean): Promise<void> {
  const text = JSON.stringify(lock, null, 2) + '\n';
  const path = lockPath(cfg);
  // O_EXCL when there was none: of two machines racing, exactly one gets it. A lock that is replaced
  // is written beside it and renamed over it, so it is never half written.
  const target = replace ? `${path}.${lock.pid}.tmp` : path;
  const fh = await open(target, 'wx', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  if (!replace) return;
  try {
    await rename(target, path);
  } catch {
    // SFTP servers without POSIX rename refuse to rename over an existing file.
    await rm(path, { force: true });
    await rename(target, path);
  }
}

export async function releaseLock(cfg: ImageLocation): Promise<void> {
  await rm(lockPath(cfg), { force: true });
}

/**
 * Whether the lock stands in the way of mounting with `configPath`: another machine's lock, or this
 * machine's lock taken through another config (the same image reached through a second box mount).
 */
export function blockingLock(state: LockState, configPath: string): Lock | undefined {
  if (state.state === 'other') return state.lock;
  if (state.state === 'ours' && state.lock.config !== undefined && state.lock.config !== configPath) return state.lock;
  return undefined;
}

export function describeLock(lock: Lock): string {
  return `${lock.hostname} (machine-id ${lock.machineId.slice(0, 12)}…, pid ${lock.pid}${lock.config ? `, config ${lock.config}` : ''}) since ${lock.time}`;
}
