import { EXIT, HbsError } from '../core/errors.js';
import type { Runner } from '../core/runner.js';
import { imagePath, type Config } from '../lib/config.js';
import { checkKey, luksCloseCmd, luksOpenCmd, mappingActive, mapperPath, type ActiveMapping, type LuksKey } from '../lib/luks.js';
import { probeSignature } from '../steps/image.js';
import type { LifecycleContext } from './context.js';

/** The device ext4 lives on: /dev/mapper/NAME when encrypted, else the image file (mounted through a loop). */
export function fsDevice(cfg: Config): string {
  return cfg.encryption ? mapperPath(cfg.encryption.mapperName) : imagePath(cfg);
}

/** The crypt layer of an encrypted config: open on this image, open on something else, or closed. Read-only. */
export async function inspectCrypt(runner: Runner, cfg: Config): Promise<{ state: 'open' | 'closed' | 'conflict'; mapping?: ActiveMapping; detail: string } | undefined> {
  const enc = cfg.encryption;
  if (!enc) return undefined;
  const m = await mappingActive(runner, enc.mapperName);
  const dev = mapperPath(enc.mapperName);
  if (!m) return { state: 'closed', detail: `${dev}: closed` };
  if (m.backing !== imagePath(cfg)) return { state: 'conflict', mapping: m, detail: `${dev} is open on ${m.backing ?? m.loop ?? '?'}, not ${imagePath(cfg)}` };
  return { state: 'open', mapping: m, detail: `${dev} open (${m.cipher ?? 'LUKS2'} on ${m.loop ?? 'a loop device'})` };
}

/**
 * The key for this mount: asked once and kept for the command (repair may need it twice).
 * Checked with `open --test-passphrase` before anything changes: a wrong key changes nothing.
 */
export async function verifiedKey(ctx: LifecycleContext): Promise<LuksKey> {
  if (ctx.luks?.verified) return ctx.luks.verified;
  const get = ctx.luks?.key;
  if (!get) throw new HbsError(`${imagePath(ctx.cfg)} is encrypted and no key was given`, EXIT.usage, 'give --luks-key-file PATH or --luks-key-stdin, or run in a terminal to type the passphrase');
  const image = imagePath(ctx.cfg);
  for (let attempt = 1; ; attempt++) {
    const key = await get(attempt);
    if (ctx.runner.dryRun) return key; // the probe itself is read-only, but a dry-run asks for nothing
    try {
      await checkKey(ctx.runner, image, key);
      ctx.luks = { ...ctx.luks, verified: key };
      return key;
    } catch (err) {
      // A prompt may ask again; a key from a file or stdin cannot change.
      if (!ctx.luks?.canRetry || attempt >= 3) throw err;
      ctx.reporter.warn(err instanceof Error ? err.message : String(err));
    }
  }
}

/** Opens the mapping (cryptsetup attaches the loop device) and checks the ext4 inside is the recorded one. */
export async function openCrypt(ctx: LifecycleContext, key: LuksKey): Promise<void> {
  const enc = ctx.cfg.encryption;
  if (!enc) return;
  await ctx.runner.run(luksOpenCmd(imagePath(ctx.cfg), enc.mapperName, key));
  if (ctx.runner.dryRun) return;
  const sig = await probeSignature(ctx.runner, mapperPath(enc.mapperName));
  if (sig.TYPE !== 'ext4' || sig.UUID !== ctx.cfg.image.uuid) {
    await ctx.runner.run({ ...luksCloseCmd(enc.mapperName), allowFail: true });
    throw new HbsError(
      `${mapperPath(enc.mapperName)} does not hold the filesystem in ${ctx.configPath} (found ${sig.TYPE ?? 'nothing'}${sig.UUID ? ` UUID ${sig.UUID}` : ''}, expected ext4 UUID ${ctx.cfg.image.uuid}); closed it again`,
    );
  }
}

/** Closes the mapping if it is open on this image (after the filesystem is unmounted, never before). */
export async function closeCrypt(ctx: LifecycleContext, allowFail = false): Promise<boolean> {
  const c = await inspectCrypt(ctx.runner, ctx.cfg);
  if (c?.state !== 'open' || !ctx.cfg.encryption) return false;
  await ctx.runner.run({ ...luksCloseCmd(ctx.cfg.encryption.mapperName), allowFail, timeoutMs: 120_000 });
  return true;
}
