import { readFile } from 'node:fs/promises';
import { z } from 'zod';

/**
 * ext4 mounted by two machines at once is destroyed. The lock lives on the box next to the image
 * (`<image>.hbs-lock`), so every machine that can reach the image sees it.
 */
export const lockSchema = z.object({
  hostname: z.string(),
  machineId: z.string(),
  pid: z.number().int(),
  time: z.string(),
  config: z.string().optional(),
});

export type Lock = z.infer<typeof lockSchema>;

export const lockPathOf = (imagePath: string): string => `${imagePath}.hbs-lock`;

export type LockState = { state: 'free' } | { state: 'ours'; lock: Lock } | { state: 'other'; lock: Lock } | { state: 'unreadable'; detail: string };

/** Reads the lock file; "ours" when this machine (machine-id) wrote it. Read-only. */
export async function readLock(path: string, machineId: string): Promise<LockState> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'free' };
    return { state: 'unreadable', detail: (err as Error).message };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { state: 'unreadable', detail: `${path} is not JSON` };
  }
  const r = lockSchema.safeParse(parsed);
  if (!r.success) return { state: 'unreadable', detail: `${path} is not an hbs lock` };
  return r.data.machineId === machineId ? { state: 'ours', lock: r.data } : { state: 'other', lock: r.data };
}

export function lockText(lock: Lock): string {
  return JSON.stringify(lock, null, 2) + '\n';
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
