import { chmod, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { EXIT, HbsError } from '../core/errors.js';
import type { Action, Step } from '../core/plan.js';
import { imagePathOf, type InitContext } from '../init/context.js';
import type { EncryptOptions } from '../init/options.js';
import { luksAddKeyFileCmd, luksFormatCmd, luksHeaderBackupCmd, luksOpenCmd, mappingActive, type LuksKey } from '../lib/luks.js';
import { ensureDir, fileExists } from '../lib/fs-util.js';

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

/**
 * LUKS2 on the fresh image file: luksFormat with the first key, the key file (if both) into a
 * second slot, then a header backup on this machine. Only an image this run created is formatted.
 */
export const luksFormatStep: Step<InitContext> = {
  id: 'luks-format',
  title: 'LUKS2 encryption on the image',
  check(ctx) {
    if (ctx.state.image.created) return Promise.resolve({ done: false });
    return Promise.resolve({ done: true, detail: 'the image is the recorded LUKS2 container; not formatted again' });
  },
  async plan(ctx) {
    if (!ctx.state.image.created) throw new Error('refusing to luksFormat an image this run did not create');
    const e = encryptOf(ctx);
    const image = imagePathOf(ctx.opts);
    const first = primaryKey(ctx);
    const actions: Action[] = [{ kind: 'run', cmd: luksFormatCmd(image, first) }];
    if (e.passphrase && e.keyFile) actions.push({ kind: 'run', cmd: luksAddKeyFileCmd(image, first, e.keyFile.path) });
    ctx.state.luks = { formatted: true };
    if (await fileExists(e.headerBackup)) {
      // cryptsetup never overwrites a backup; an old one belongs to another header. Stop before any change.
      throw new HbsError(`the header backup ${e.headerBackup} exists already (from another image?)`, EXIT.usage, 'move it away or pick another --luks-header-backup path');
    }
    actions.push(
      { kind: 'mkdir', path: dirname(e.headerBackup), mode: 0o700 },
      { kind: 'run', cmd: luksHeaderBackupCmd(image, e.headerBackup) },
      { kind: 'task', describe: [`chmod 0600 ${e.headerBackup}`], run: () => chmod(e.headerBackup, 0o600) },
    );
    const keep = e.unattendedKeyFile;
    if (keep) {
      actions.push({
        kind: 'task',
        describe: [`write ${keep} (mode 0400: the key for unattended mounts; anyone with root here can read it)`],
        run: async () => {
          await ensureDir(dirname(keep), 0o700);
          const fh = await open(keep, 'wx', 0o400);
          try {
            await fh.writeFile(first.bytes);
          } finally {
            await fh.close();
          }
        },
      });
    }
    return actions;
  },
};

/** Opens the container: cryptsetup attaches the loop device itself; the filesystem is on /dev/mapper/NAME. */
export const luksOpenStep: Step<InitContext> = {
  id: 'luks-open',
  title: 'Open the encrypted image',
  async check(ctx) {
    const name = encryptOf(ctx).mapperName;
    if (ctx.state.simulated.has('luks-format')) return { done: false };
    const active = await mappingActive(ctx.runner, name);
    if (active) {
      const image = imagePathOf(ctx.opts);
      if (active.backing !== image) {
        throw new HbsError(`/dev/mapper/${name} is open already, on ${active.backing ?? 'another device'}, not on ${image}`, EXIT.usage, 'close it, or choose another --image');
      }
      return { done: true, detail: `/dev/mapper/${name} is open (${active.loop ?? 'loop device'})` };
    }
    return { done: false };
  },
  plan(ctx) {
    return Promise.resolve([{ kind: 'run', cmd: luksOpenCmd(imagePathOf(ctx.opts), encryptOf(ctx).mapperName, primaryKey(ctx)) }]);
  },
};
