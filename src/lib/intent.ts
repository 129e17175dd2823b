import { z } from 'zod';
import { readTextIfExists } from '../core/files.js';

/**
 * What `hbs init` is about to create, written next to the config before the image file exists and
 * removed once the config records the image. A run killed in between leaves it, and the next run
 * recognises the half-made image as its own — the same path, a size it gave it, and no signature but
 * the ones it was about to write — and finishes it. Any other file stays untouched, as always.
 */
export const intentSchema = z.object({
  image: z.string(),
  sizeBytes: z.number().int().positive(),
  /** The ext4 UUID mkfs will give it. */
  uuid: z.uuid(),
  /** The LUKS2 UUID luksFormat will give it (encrypted). */
  luksUuid: z.uuid().optional(),
});

export type Intent = z.infer<typeof intentSchema>;

export const intentPath = (configPath: string): string => `${configPath}.creating`;

export async function readIntent(configPath: string): Promise<Intent | undefined> {
  const text = await readTextIfExists(intentPath(configPath)).catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const r = intentSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

export function intentText(i: Intent): string {
  return JSON.stringify(i, null, 2) + '\n';
}

/**
 * Whether the file found is the one the intent was about: created (size 0) or extended to the size
 * it was given, holding nothing or only what hbs was about to write into it.
 */
export function isIntended(i: Intent, path: string, sizeBytes: number, sig: Record<string, string>): boolean {
  if (i.image !== path || (sizeBytes !== 0 && sizeBytes !== i.sizeBytes)) return false;
  if (!sig.TYPE) return true;
  if (sig.TYPE === 'ext4') return sig.UUID === i.uuid;
  if (sig.TYPE === 'crypto_LUKS') return i.luksUuid !== undefined && sig.UUID === i.luksUuid;
  return false;
}
