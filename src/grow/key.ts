import { EXIT, HbsError } from '../core/errors.js';
import type { Cmd } from '../core/runner.js';
import { luksTestKeyCmd, WrongKeyError, type LuksKey } from '../lib/luks.js';
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
      const r = await ctx.runner.run(withSecrets(luksTestKeyCmd(image, key), key));
      if (r.exitCode === 2) throw new WrongKeyError(image, key.label);
      if (r.exitCode !== 0) throw new HbsError(`cryptsetup could not test the key on ${image} (exit ${r.exitCode}); nothing was changed`, EXIT.failed, undefined, r.stderr.trim());
      return key;
    } catch (err) {
      // A prompt may ask again; a key from a file or stdin cannot change.
      if (!(err instanceof WrongKeyError) || !source.canRetry || attempt >= 3) throw err;
      ctx.reporter.warn(err instanceof Error ? err.message : String(err));
    }
  }
}

/** A key that is text (a passphrase, or one given on stdin) is also a secret to redact from anything logged. */
export function secretsOf(key: LuksKey): string[] {
  const text = Buffer.from(key.bytes).toString('utf8');
  return text.length > 0 && Buffer.from(text, 'utf8').equals(Buffer.from(key.bytes)) ? [text] : [];
}

export function withSecrets(cmd: Cmd, key: LuksKey): Cmd {
  return { ...cmd, secrets: [...(cmd.secrets ?? []), ...secretsOf(key)] };
}
