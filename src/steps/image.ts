import { open, rm } from 'node:fs/promises';
import { EXIT, HbsError, UsageError, type ExitCode } from '../core/errors.js';
import type { Runner } from '../core/runner.js';
import type { Action, CheckResult, Step } from '../core/plan.js';
import { imagePath } from '../lib/config.js';
import { formatSize } from '../lib/size.js';
import { imagePathOf, type InitContext } from '../init/context.js';
import { LUKS_TUNING } from './mkfs.js';

export interface FileFacts {
  sizeBytes: number;
  allocatedBytes: number;
}

/** Size and allocated bytes of a file, or undefined when there is none. Read-only. */
export async function statFile(runner: Runner, path: string): Promise<FileFacts | undefined> {
  const r = await runner.run({ argv: ['stat', '--format=%s %b %B', path], write: false, allowFail: true });
  if (r.exitCode !== 0) return undefined;
  const [size = NaN, blocks = NaN, unit = NaN] = r.stdout.trim().split(/\s+/).map(Number);
  return { sizeBytes: size, allocatedBytes: blocks * unit };
}

/** What blkid recognises in a file or device (TYPE, UUID, LABEL…); {} when nothing. Read-only. */
export async function probeSignature(runner: Runner, path: string): Promise<Record<string, string>> {
  const r = await runner.run({ argv: ['blkid', '--probe', '--output', 'export', path], write: false, allowFail: true });
  const out: Record<string, string> = {};
  if (r.exitCode !== 0) return out;
  for (const line of r.stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

/** An image file is already where init would create one; the command layer may offer to adopt it. */
export class ExistingImageError extends HbsError {
  constructor(
    message: string,
    /** adoptable: plain ext4, `--adopt` takes it; encrypted: LUKS, `--adopt` with its key takes it; foreign: never. */
    readonly kind: 'adoptable' | 'encrypted' | 'foreign',
    hint: string,
    exitCode: ExitCode = EXIT.failed,
  ) {
    super(message, exitCode, hint);
  }
}

const KEY_FLAGS = 'its passphrase (--luks-passphrase-stdin, HBS_LUKS_PASSPHRASE, or typed at the prompt in a terminal) or its key file (--luks-key-file PATH)';

/**
 * `--adopt` on a LUKS image not recorded here (a reinstalled server): taken as it is. The key is
 * checked, the header backed up and the mapping opened by the LUKS steps; nothing formats it.
 */
function adoptLuks(ctx: InitContext, path: string, facts: FileFacts, sig: Record<string, string>): CheckResult {
  const what = `LUKS${sig.VERSION ?? ''} encrypted, UUID ${sig.UUID ?? '?'}`;
  if (!ctx.opts.encrypt || (!ctx.luksKeys?.length && !ctx.runner.dryRun)) {
    throw new ExistingImageError(`${path} is ${what} (${formatSize(facts.sizeBytes)}): adopting it needs its key`, 'encrypted', `give ${KEY_FLAGS}`, EXIT.usage);
  }
  markLuksAdopted(ctx, sig.UUID);
  ctx.state.image.sizeBytes = facts.sizeBytes;
  return { done: true, detail: `adopting ${path} as it is (${formatSize(facts.sizeBytes)}, ${what}); never formatted` };
}

function markLuksAdopted(ctx: InitContext, luksUuid: string | undefined): void {
  ctx.state.image.adopted = true;
  ctx.state.luks = { formatted: false, adopted: { uuid: luksUuid } };
  // As for an image hbs encrypted itself: no background zeroing, every zero through dm-crypt costs quota.
  ctx.state.mountOptions = ['noatime', ...LUKS_TUNING.mountOptions];
}

/** Creates `path` only if nothing is there (O_EXCL): an existing file is never opened for writing. */
export async function createExclusive(path: string): Promise<void> {
  const fh = await open(path, 'wx', 0o600);
  await fh.close();
}

/**
 * The sparse image file on the box. An existing file is used only when it is the image this config
 * recorded (same ext4 UUID); any other file is left exactly as it is.
 */
export const imageStep: Step<InitContext> = {
  id: 'image',
  title: 'Sparse image file on the box',
  async check(ctx) {
    const path = imagePathOf(ctx.opts);
    if (ctx.state.simulated.has('box-mount')) {
      // Dry-run with the box not mounted: the image this config recorded is taken as there (a real
      // run checks it once the box is mounted), so the dry-run does not show a create and mkfs of it.
      const recorded = ctx.state.existingConfig;
      if (recorded && imagePath(recorded) === path) {
        ctx.state.image.uuid = recorded.image.uuid;
        ctx.state.mountOptions = [...recorded.filesystem.mountOptions];
        return { done: true, detail: `${path} is recorded in ${ctx.opts.config}; it will be checked once the box is mounted` };
      }
      if (ctx.opts.adopt && !ctx.opts.sizeGiven) {
        // Nothing can be created without --size: the plan shows the adoption, not a create and format.
        if (ctx.opts.encrypt) markLuksAdopted(ctx, undefined);
        else ctx.state.image.adopted = true;
        return { done: true, detail: `--adopt: ${path} is used as it is (${ctx.opts.encrypt ? 'LUKS, ' : ''}checked once the box is mounted); never formatted` };
      }
      return { done: false, detail: 'the box is not mounted yet' };
    }
    const facts = await statFile(ctx.runner, path);
    if (!facts) {
      if (ctx.opts.adopt && !ctx.opts.sizeGiven) {
        throw new UsageError(`--adopt: there is no image at ${path} to adopt`, 'check --image and --remote-path, or give --size to create a new one');
      }
      return { done: false };
    }
    const sig = await probeSignature(ctx.runner, path);
    const prior = ctx.state.existingConfig;
    if (sig.TYPE === 'crypto_LUKS') {
      // An encrypted image is never formatted again: its ext4 is behind a key this step does not hold.
      if (prior?.encryption && imagePath(prior) === path && ctx.opts.encrypt) {
        ctx.state.image.uuid = prior.image.uuid;
        ctx.state.mountOptions = [...prior.filesystem.mountOptions];
        return { done: true, detail: `${path} is the LUKS2 image recorded in ${ctx.opts.config} (${formatSize(facts.sizeBytes)})` };
      }
      if (!(ctx.opts.forceFormat && ctx.opts.formatConfirmed)) {
        if (ctx.opts.adopt) return adoptLuks(ctx, path, facts, sig);
        throw new ExistingImageError(
          `${path} already exists on the box (${formatSize(facts.sizeBytes)}, LUKS${sig.VERSION ? sig.VERSION : ''} encrypted, UUID ${sig.UUID ?? '?'}) and is not the image recorded in ${ctx.opts.config}; hbs left it untouched`,
          'encrypted',
          `an encrypted image is never reformatted: to use it as it is (a reinstalled server), re-run with --adopt and ${KEY_FLAGS}; or choose another --image name`,
        );
      }
    }
    if (prior && imagePath(prior) === path && sig.TYPE === 'ext4' && sig.UUID === prior.image.uuid) {
      ctx.state.image.uuid = prior.image.uuid;
      ctx.state.mountOptions = [...prior.filesystem.mountOptions];
      return {
        done: true,
        detail: `${path} is the image recorded in ${ctx.opts.config} (${formatSize(facts.sizeBytes)}, UUID ${prior.image.uuid})`,
      };
    }
    const what = sig.TYPE ? `${sig.TYPE}${sig.UUID ? `, UUID ${sig.UUID}` : ''}` : 'no filesystem recognised';
    const found = `${path} already exists on the box (${formatSize(facts.sizeBytes)}, ${what}) and is not the image recorded in ${ctx.opts.config}`;
    if (ctx.opts.forceFormat && ctx.opts.formatConfirmed) {
      return { done: false, detail: `erasing ${path} as confirmed, and creating it anew` };
    }
    if (sig.TYPE === 'ext4' && sig.UUID && ctx.opts.encrypt) {
      // Encrypting it would mean formatting it: never without --force-format.
      throw new ExistingImageError(
        `${found}; it is a plain (unencrypted) ext4 image, so --encrypt cannot use it; hbs left it untouched`,
        'foreign',
        ctx.opts.adopt ? 'to adopt it as it is, re-run without --encrypt and the --luks-… flags' : 'choose another --image name, or adopt it unencrypted (--adopt without --encrypt)',
        ctx.opts.adopt ? EXIT.usage : EXIT.failed,
      );
    }
    if (sig.TYPE === 'ext4' && sig.UUID) {
      if (ctx.opts.adopt) {
        ctx.state.image.uuid = sig.UUID;
        ctx.state.image.sizeBytes = facts.sizeBytes;
        ctx.state.image.adopted = true;
        return { done: true, detail: `adopted ${path} as it is (${formatSize(facts.sizeBytes)}, ext4 UUID ${sig.UUID}); not formatted` };
      }
      throw new ExistingImageError(`${found}; hbs left it untouched`, 'adoptable', 're-run with --adopt to use it as it is (no mkfs, the data stays)');
    }
    throw new ExistingImageError(
      `${found}; hbs left it untouched`,
      'foreign',
      'choose another --image name, or move that file away yourself if you are sure it is not needed',
    );
  },
  async plan(ctx) {
    const path = imagePathOf(ctx.opts);
    const size = String(ctx.opts.size);
    ctx.state.image.created = true;
    const erase: Action[] = [];
    if (ctx.opts.forceFormat && ctx.opts.formatConfirmed && !ctx.state.simulated.has('box-mount') && (await statFile(ctx.runner, path))) {
      // Confirmed by typing the image name: the old file goes, a fresh sparse one takes its place.
      erase.push({ kind: 'task', describe: [`rm ${path}  (confirmed by typing its name)`], run: () => rm(path) });
    }
    return [
      ...erase,
      {
        kind: 'task',
        describe: [`create ${path} (only if nothing is there: O_CREAT|O_EXCL, mode 0600)`],
        run: () => createExclusive(path),
      },
      // `>` makes truncate only ever grow a file: even a wrong size can never cut the image.
      { kind: 'run', cmd: { argv: ['truncate', `--size=>${size}`, path] } },
    ];
  },
};
