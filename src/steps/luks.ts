import { guardLock } from '../init/lock-guard.js';
import { chmod, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { EXIT, HbsError } from '../core/errors.js';
import type { Action, Step } from '../core/plan.js';
import { imagePathOf, type InitContext } from '../init/context.js';
import type { EncryptOptions } from '../init/options.js';
import {
  checkKey,
  luksAddKeyFileCmd,
  luksCloseCmd,
  luksFormatCmd,
  luksHeaderBackupCmd,
  luksOpenCmd,
  mappingActive,
  mapperPath,
  readKeyFile,
  WrongKeyError,
  type LuksKey,
} from '../lib/luks.js';
import { ensureDir, fileExists } from '../lib/fs-util.js';
import { probeSignature } from './image.js';

function encryptOf(ctx: InitContext): EncryptOptions {
  const e = ctx.opts.encrypt;
  if (!e) throw new Error('LUKS step without --encrypt');
  return e;
}

/** The key that authorises everything after luksFormat: the first one given (passphrase, else key file). */
export function primaryKey(ctx: InitContext): LuksKey {
  const k = ctx.luksKeys?.[0];
  // A dry-run prints commands and never runs them: it needs no secret.
  if (!k && ctx.runner.dryRun) return { kind: 'passphrase', bytes: new Uint8Array(), label: 'key' };
  if (!k) throw new Error('--encrypt without a key');
  return k;
}

/** Writes the first key to the unattended key file (0400, never over an existing file). */
function keepKeyAction(keep: string, key: LuksKey): Action {
  return {
    kind: 'task',
    describe: [`write ${keep} (mode 0400: the key for unattended mounts; anyone with root here can read it)`],
    run: async () => {
      await ensureDir(dirname(keep), 0o700);
      const fh = await open(keep, 'wx', 0o400);
      try {
        await fh.writeFile(key.bytes);
      } finally {
        await fh.close();
      }
    },
  };
}

function headerBackupActions(image: string, backup: string): Action[] {
  return [
    { kind: 'mkdir', path: dirname(backup), mode: 0o700 },
    { kind: 'run', cmd: luksHeaderBackupCmd(image, backup) },
    { kind: 'task', describe: [`chmod 0600 ${backup}`], run: () => chmod(backup, 0o600) },
  ];
}

/**
 * An adopted image's key files and header backup, as far as they exist already. A header backup
 * of another container (other LUKS UUID) or an unattended key that does not open the image stops
 * the run: neither is ever overwritten. Read-only.
 */
async function adoptedFiles(ctx: InitContext, e: EncryptOptions, image: string): Promise<{ backup: boolean; keep: boolean }> {
  const luksUuid = ctx.state.luks?.adopted?.uuid;
  let backup = false;
  if (await fileExists(e.headerBackup)) {
    const sig = await probeSignature(ctx.runner, e.headerBackup);
    if (sig.TYPE !== 'crypto_LUKS' || sig.UUID !== luksUuid) {
      throw new HbsError(
        `the header backup ${e.headerBackup} exists already and is not this image's header (${sig.TYPE === 'crypto_LUKS' ? `LUKS UUID ${sig.UUID ?? '?'}` : 'no LUKS header'}, the image has ${luksUuid ?? '?'})`,
        EXIT.usage,
        'move it away or pick another --luks-header-backup path',
      );
    }
    backup = true;
  }
  let keep = e.unattendedKeyFile === null;
  if (e.unattendedKeyFile && (await fileExists(e.unattendedKeyFile))) {
    const key = await readKeyFile(e.unattendedKeyFile);
    try {
      await checkKey(ctx.runner, image, key);
    } catch (err) {
      if (!(err instanceof WrongKeyError)) throw err;
      throw new HbsError(`${e.unattendedKeyFile} exists already and does not open ${image}`, EXIT.usage, 'move it away (hbs never overwrites a key file), then re-run');
    }
    keep = true;
  }
  return { backup, keep };
}

/**
 * LUKS2 on the image. A fresh image (created in this run): luksFormat with the first key, the key
 * file (if both) into a second slot, then a header backup on this machine. An adopted one (--adopt):
 * every given key checked against it (read-only), then only a header backup if there is none here.
 * Nothing else is ever formatted.
 */
export const luksFormatStep: Step<InitContext> = {
  id: 'luks-format',
  title: 'LUKS2 encryption on the image',
  async check(ctx) {
    if (ctx.state.image.created) return { done: false };
    const adopted = ctx.state.luks?.adopted;
    if (!adopted) return { done: true, detail: 'the image is the recorded LUKS2 container; not formatted again' };
    const image = imagePathOf(ctx.opts);
    if (ctx.state.simulated.has('box-mount')) return { done: false, detail: 'adopted as it is: the key is checked once the box is mounted, before anything else changes' };
    const keys = ctx.luksKeys ?? [];
    // A wrong key stops here, before the header backup, the mapping, the config or fstab.
    for (const key of keys) await checkKey(ctx.runner, image, key);
    const fits = keys.length ? `${keys.map((k) => k.label).join(' and ')} ${keys.length > 1 ? 'open' : 'opens'} it` : 'the key is checked before anything changes';
    const have = await adoptedFiles(ctx, encryptOf(ctx), image);
    const detail = `adopted as it is (LUKS UUID ${adopted.uuid ?? '?'}): ${fits}; never formatted`;
    return have.backup && have.keep ? { done: true, detail: `${detail}; header backup ${encryptOf(ctx).headerBackup} is there` } : { done: false, detail };
  },
  async plan(ctx) {
    const e = encryptOf(ctx);
    const image = imagePathOf(ctx.opts);
    const first = primaryKey(ctx);
    if (!ctx.state.image.created) {
      if (!ctx.state.luks?.adopted) throw new Error('refusing to luksFormat an image this run did not create');
      // Adopted: no luksFormat, no luksAddKey; only what this machine lost in the reinstall.
      const have = ctx.state.simulated.has('box-mount') ? { backup: await fileExists(e.headerBackup), keep: !e.unattendedKeyFile || (await fileExists(e.unattendedKeyFile)) } : await adoptedFiles(ctx, e, image);
      return [...(have.backup ? [] : headerBackupActions(image, e.headerBackup)), ...(have.keep || !e.unattendedKeyFile ? [] : [keepKeyAction(e.unattendedKeyFile, first)])];
    }
    const actions: Action[] = [{ kind: 'run', cmd: luksFormatCmd(image, first) }];
    if (e.passphrase && e.keyFile) actions.push({ kind: 'run', cmd: luksAddKeyFileCmd(image, first, e.keyFile.path) });
    ctx.state.luks = { formatted: true };
    if (await fileExists(e.headerBackup)) {
      // cryptsetup never overwrites a backup; an old one belongs to another header. Stop before any change.
      throw new HbsError(`the header backup ${e.headerBackup} exists already (from another image?)`, EXIT.usage, 'move it away or pick another --luks-header-backup path');
    }
    actions.push(...headerBackupActions(image, e.headerBackup));
    if (e.unattendedKeyFile) actions.push(keepKeyAction(e.unattendedKeyFile, first));
    return actions;
  },
};

/** Opens the container: cryptsetup attaches the loop device itself; the filesystem is on /dev/mapper/NAME. */
export const luksOpenStep: Step<InitContext> = {
  id: 'luks-open',
  title: 'Open the encrypted image',
  async check(ctx) {
    const name = encryptOf(ctx).mapperName;
    // Only a container this run formatted is sure to be closed; an adopted one may be open already.
    if ((ctx.state.simulated.has('luks-format') && !ctx.state.luks?.adopted) || ctx.state.simulated.has('box-mount')) return { done: false };
    const active = await mappingActive(ctx.runner, name);
    if (active) {
      const image = imagePathOf(ctx.opts);
      if (active.backing !== image) {
        throw new HbsError(`/dev/mapper/${name} is open already, on ${active.backing ?? 'another device'}, not on ${image}`, EXIT.usage, 'close it, or choose another --image');
      }
      // Adopted and open before this run: its filesystem is read here, as it would be right after opening.
      if (ctx.state.luks?.adopted) await readAdoptedFs(ctx, name, false);
      return { done: true, detail: `/dev/mapper/${name} is open (${active.loop ?? 'loop device'})` };
    }
    if (ctx.state.luks?.adopted) {
      // Another machine (the old server, still running?) may use the image: do not even open it then.
      await guardLock(ctx);
    }
    return { done: false };
  },
  plan(ctx) {
    const name = encryptOf(ctx).mapperName;
    const actions: Action[] = [{ kind: 'run', cmd: luksOpenCmd(imagePathOf(ctx.opts), name, primaryKey(ctx)) }];
    if (ctx.state.luks?.adopted) actions.push(checkAdoptedFs(ctx, name));
    return Promise.resolve(actions);
  },
};

/** An adopted image's ext4 (and its UUID) must be inside; otherwise stop, closing what this run opened. */
async function readAdoptedFs(ctx: InitContext, name: string, openedHere: boolean): Promise<void> {
  const dev = mapperPath(name);
  const sig = await probeSignature(ctx.runner, dev);
  if (sig.TYPE === 'ext4' && sig.UUID) {
    ctx.state.image.uuid = sig.UUID;
    return;
  }
  if (openedHere) await ctx.runner.run({ ...luksCloseCmd(name), allowFail: true });
  throw new HbsError(
    `${dev} (the opened ${imagePathOf(ctx.opts)}) holds ${sig.TYPE ?? 'no filesystem hbs recognises'}, not ext4; hbs formats nothing it did not create${openedHere ? `, and closed ${dev} again` : ''}`,
    EXIT.failed,
    openedHere ? 'check that this is the right image (--image, --remote-path); its contents are untouched' : `check that this is the right image; \`cryptsetup close ${name}\` closes it`,
  );
}

/** Right after opening an adopted image: read its filesystem (never format it). */
function checkAdoptedFs(ctx: InitContext, name: string): Action {
  const dev = mapperPath(name);
  return {
    kind: 'task',
    describe: [`check that ${dev} holds an ext4 filesystem and read its UUID (blkid; if not: close it again and stop, nothing is formatted)`],
    run: () => readAdoptedFs(ctx, name, true),
  };
}
