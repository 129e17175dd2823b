import { access } from 'node:fs/promises';
import { resolve } from 'node:path';
import { UsageError } from '../core/errors.js';

/**
 * Fails fast, before the heavier modules load, when there is no config to work with. Kept free of
 * zod and execa so `hbs status` without a config answers at once.
 */
export async function requireConfigFile(path: string): Promise<string> {
  const abs = resolve(path);
  try {
    await access(abs);
  } catch {
    throw new UsageError(`no config at ${abs}`, 'run `hbs init` first, or pass --config');
  }
  return abs;
}
