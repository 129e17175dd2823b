import { EXIT, HbsError } from '../core/errors.js';
import { checkKey, WrongKeyError, type LuksKey } from '../lib/luks.js';
import type { LifecycleContext } from '../lifecycle/context.js';
import type { GrowContext } from './context.js';

/** Where the key comes from: as for `hbs mount` (--luks-key-file, --luks-key-stdin, the unattended key, a prompt). */
export type KeySource = LifecycleContext['luks'];

export const KEY_HINT = 'give --luks-key-file PATH or --luks-key-stdin (printf %s "$PASSPHRASE" | hbs grow --luks-key-stdin …), or run in a terminal to type the passphrase';

/**
 * The key for an encrypted grow, asked for and checked (`open --test-passphrase`, read-only) before
 * the first change: a wrong key changes nothing. Without a source (no flag, no unattended key, no
 * terminal) it fails at once instead of waiting. A dry-run checks that a source exists, but reads
 * and holds no key.
 */
export async function growKey(ctx: Pick<GrowContext, 'runner' | 'reporter' | 'facts' | 'decision'>, source: KeySource): Promise<LuksKey | undefined> {
  const { image, crypt } = ctx.facts;
  const why = crypt?.open ? '`cryptsetup resize` on LUKS2 unlocks a key slot again' : 'the mapping must be opened';
  const get = source?.key;
  if (!get) throw new HbsError(`${image} is encrypted and growing it needs the key (${why}), but none was given; nothing was changed`, EXIT.usage, KEY_HINT);
  if (ctx.runner.dryRun) return undefined;
  for (let attempt = 1; ; attempt++) {
    const key = await get(attempt);
    try {
      await checkKey(ctx.runner, image, key);
      return key;
    } catch (err) {
      // A prompt may ask again; a key from a file or stdin cannot change.
      if (!(err instanceof WrongKeyError) || !source.canRetry || attempt >= 3) throw err;
      ctx.reporter.warn(err instanceof Error ? err.message : String(err));
    }
  }
}
