import { dirname } from 'node:path';
import type { Action } from '../../core/action.js';
import { EXIT, HbsError } from '../../core/errors.js';
import { fileExists } from '../../core/files.js';
import type { Check, Step } from '../../core/step.js';
import { luksAddKeyFileCmd, luksFormatCmd, luksHeaderBackupCmd, luksOpenCmd, readKeyFile, WrongKeyError, type LuksKey } from '../../lib/luks.js';
import { cryptOpenStep, keyFor } from '../crypt.js';
import type { EncryptOptions, InitCtx } from './context.js';

function encryptOf(ctx: InitCtx): EncryptOptions {
  const e = ctx.opts.encrypt;
  if (!e) throw new Error('LUKS step without --encrypt');
  return e;
}

/** The key that authorises everything after luksFormat: the first one given (passphrase, else key file). */
export function primaryKey(ctx: InitCtx): LuksKey {
  // A dry-run that asked for no key shows the commands with their stdin marker (see keyFor).
  return ctx.luksKeys[0] ?? keyFor(ctx);
}

/** Writes the first key to the unattended key file (0400, never over an existing file). */
function keepKeyActions(keep: string, key: LuksKey): Action[] {
  return [
    { kind: 'mkdir', path: dirname(keep), mode: 0o700 },
    // The key's bytes are never shown; the file is never written over.
    { kind: 'write', path: keep, content: key.bytes, mode: 0o400, how: 'create', what: 'the key for unattended mounts; anyone with root here can read it' },
  ];
}

/** The unattended key file is there with exactly this key (an interrupted run wrote it); any other content stops the run: it is never written over. */
async function keptAlready(path: string, key: LuksKey): Promise<boolean> {
  if (!(await fileExists(path))) return false;
  if (Buffer.from((await readKeyFile(path)).bytes).equals(Buffer.from(key.bytes))) return true;
  throw new HbsError(`${path} exists already and holds another key`, EXIT.usage, 'move it away (hbs never overwrites a key file), then re-run');
}

function headerBackupActions(image: string, backup: string): Action[] {
  return [
    { kind: 'mkdir', path: dirname(backup), mode: 0o700 },
    { kind: 'run', cmd: luksHeaderBackupCmd(image, backup) },
    { kind: 'run', cmd: { argv: ['chmod', '0600', backup] } },
  ];
}

/**
 * An adopted image's key files and header backup, as far as they exist already. A header backup
 * of another container (other LUKS UUID) or an unattended key that does not open the image stops
 * the run: neither is ever overwritten. Read-only.
 */
async function adoptedFiles(ctx: InitCtx, e: EncryptOptions, image: string): Promise<{ backup: boolean; keep: boolean }> {
  const luksUuid = ctx.state.luks?.adopted?.uuid;
  let backup = false;
  if (await fileExists(e.headerBackup)) {
    const sig = await ctx.probe.signature(e.headerBackup);
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
    if ((await ctx.probe.testKey(image, key)) !== 'ok') {
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
export const luksFormatStep: Step<InitCtx> = {
  id: 'luks-format',
  title: 'LUKS2 encryption on the image',
  after: ['box-mount', 'image'],
  expect(ctx) {
    if (ctx.state.image.created || !ctx.state.luks?.adopted) return check(ctx);
    return Promise.resolve<Check>({ done: false, detail: 'adopted as it is: the key is checked once the box is mounted, before anything else changes' });
  },
  check: (ctx) => check(ctx),
  async plan(ctx) {
    const e = encryptOf(ctx);
    const image = ctx.stack.image.path;
    const first = primaryKey(ctx);
    if (!ctx.state.image.created) {
      if (!ctx.state.luks?.adopted) throw new Error('refusing to luksFormat an image this run did not create');
      // Adopted: no luksFormat, no luksAddKey; only what this machine lost in the reinstall.
      const seen = ctx.state.luks.adopted.uuid !== undefined;
      const have = seen ? await adoptedFiles(ctx, e, image) : { backup: await fileExists(e.headerBackup), keep: !e.unattendedKeyFile || (await fileExists(e.unattendedKeyFile)) };
      return [...(have.backup ? [] : headerBackupActions(image, e.headerBackup)), ...(have.keep || !e.unattendedKeyFile ? [] : keepKeyActions(e.unattendedKeyFile, first))];
    }
    const luksUuid = ctx.state.image.intent?.luksUuid;
    const actions: Action[] = [];
    if (await fileExists(e.headerBackup)) {
      // An interrupted run's backup of the header it was making is its own; any other is never overwritten (cryptsetup refuses anyway).
      if (!luksUuid || (await ctx.probe.signature(e.headerBackup)).UUID !== luksUuid) {
        throw new HbsError(`the header backup ${e.headerBackup} exists already (from another image?)`, EXIT.usage, 'move it away or pick another --luks-header-backup path');
      }
      actions.push({ kind: 'remove', path: e.headerBackup, what: 'the backup an interrupted run made of the header made anew now' });
    }
    actions.push({ kind: 'run', cmd: luksFormatCmd(image, first, e.kdf, luksUuid) });
    if (e.passphrase && e.keyFile) actions.push({ kind: 'run', cmd: luksAddKeyFileCmd(image, first, e.keyFile.path, e.kdf) });
    ctx.state.luks = { formatted: true };
    actions.push(...headerBackupActions(image, e.headerBackup));
    if (e.unattendedKeyFile && !(await keptAlready(e.unattendedKeyFile, first))) actions.push(...keepKeyActions(e.unattendedKeyFile, first));
    return actions;
  },
};

/**
 * LUKS2 on the image. A fresh image (created in this run): luksFormat with the first key, the key
 * file (if both) into a second slot, then a header backup on this machine. An adopted one (--adopt):
 * every given key checked against it (read-only), then only a header backup if there is none here.
 * Nothing else is ever formatted.
 */
async function check(ctx: InitCtx): Promise<Check> {
  if (ctx.state.image.created) return { done: false };
  const adopted = ctx.state.luks?.adopted;
  if (!adopted) return { done: true, detail: 'the image is the recorded LUKS2 container; not formatted again' };
  const image = ctx.stack.image.path;
  const keys = ctx.luksKeys;
  // A wrong key stops here, before the header backup, the mapping, the config or fstab.
  for (const key of keys) if ((await ctx.probe.testKey(image, key)) !== 'ok') throw new WrongKeyError(image, key.label);
  const fits = keys.length ? `${keys.map((k) => k.label).join(' and ')} ${keys.length > 1 ? 'open' : 'opens'} it` : 'the key is checked before anything changes';
  const have = await adoptedFiles(ctx, encryptOf(ctx), image);
  const detail = `adopted as it is (LUKS UUID ${adopted.uuid ?? '?'}): ${fits}; never formatted`;
  return have.backup && have.keep ? { done: true, detail: `${detail}; header backup ${encryptOf(ctx).headerBackup} is there` } : { done: false, detail };
}

/**
 * The mapping, opened as for `hbs mount` (an adopted image must hold an ext4, else it is closed
 * again) — except right after this run's luksFormat: that container is empty until mkfs, so it is
 * opened without looking for a filesystem in it.
 */
export const luksOpenStep: Step<InitCtx> = {
  ...cryptOpenStep,
  plan(ctx) {
    const s = ctx.stack;
    if (!ctx.state.luks?.formatted || !s.crypt) return cryptOpenStep.plan(ctx);
    return Promise.resolve([{ kind: 'run', cmd: luksOpenCmd(s.image.path, s.crypt.mapperName, primaryKey(ctx)) }]);
  },
};
