import type { Action } from '../../core/action.js';
import { EXIT, HbsError, UsageError, type ExitCode } from '../../core/errors.js';
import type { Check, Step } from '../../core/step.js';
import { imagePath } from '../../lib/config.js';
import { LUKS_TUNING } from '../../lib/ext4.js';
import type { FileFacts } from '../../lib/probes.js';
import { formatSize } from '../../lib/size.js';
import { intentPath, intentText, isIntended, readIntent, type Intent } from '../../lib/intent.js';
import { dirname } from 'node:path';
import type { InitCtx } from './context.js';

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
function adoptLuks(ctx: InitCtx, path: string, facts: FileFacts, sig: Record<string, string>): Check {
  const what = `LUKS${sig.VERSION ?? ''} encrypted, UUID ${sig.UUID ?? '?'}`;
  if (!ctx.opts.encrypt || ctx.key.source.kind === 'none') {
    throw new ExistingImageError(`${path} is ${what} (${formatSize(facts.sizeBytes)}): adopting it needs its key`, 'encrypted', `give ${KEY_FLAGS}`, EXIT.usage);
  }
  markLuksAdopted(ctx, sig.UUID);
  ctx.state.image.sizeBytes = facts.sizeBytes;
  return { done: true, detail: `adopting ${path} as it is (${formatSize(facts.sizeBytes)}, ${what}); never formatted` };
}

function markLuksAdopted(ctx: InitCtx, luksUuid: string | undefined): void {
  ctx.state.image.adopted = true;
  ctx.state.luks = { formatted: false, adopted: { uuid: luksUuid } };
  // As for an image hbs encrypted itself: no background zeroing, every zero through dm-crypt costs quota.
  ctx.stack.fs.mountOptions = ['noatime', ...LUKS_TUNING.mountOptions];
}

/** The image this config recorded is the one there: its identity and mount options are the recorded ones. */
function takeRecorded(ctx: InitCtx, prior: { image: { uuid: string }; filesystem: { mountOptions: string[] } }): void {
  ctx.stack.fs.uuid = prior.image.uuid;
  ctx.stack.fs.mountOptions = [...prior.filesystem.mountOptions];
}

/**
 * The sparse image file on the box. An existing file is used only when it is the image this config
 * recorded (same ext4 UUID); any other file is left exactly as it is.
 */
export const imageStep: Step<InitCtx> = {
  id: 'image',
  title: 'Sparse image file on the box',
  after: ['box-mount'],
  expect(ctx) {
    // The box is not mounted yet (a dry-run): the image this config recorded is taken as there (a
    // real run checks it once the box is mounted), so the plan shows no create and format of it.
    const path = ctx.stack.image.path;
    const recorded = ctx.state.existingConfig;
    if (recorded && imagePath(recorded) === path) {
      takeRecorded(ctx, recorded);
      return Promise.resolve<Check>({ done: true, detail: `${path} is recorded in ${ctx.opts.config}; it is checked once the box is mounted` });
    }
    if (ctx.opts.adopt && !ctx.opts.sizeGiven) {
      // Nothing can be created without --size: the plan shows the adoption, not a create and format.
      if (ctx.opts.encrypt) markLuksAdopted(ctx, undefined);
      else ctx.state.image.adopted = true;
      return Promise.resolve<Check>({ done: true, detail: `--adopt: ${path} is used as it is (${ctx.opts.encrypt ? 'LUKS, ' : ''}checked once the box is mounted); never formatted` });
    }
    return Promise.resolve<Check>({ done: false, detail: 'the box is not mounted yet' });
  },
  async check(ctx) {
    const path = ctx.stack.image.path;
    const facts = await ctx.probe.file(path);
    if (!facts) {
      if (ctx.opts.adopt && !ctx.opts.sizeGiven) {
        throw new UsageError(`--adopt: there is no image at ${path} to adopt`, 'check --image and --remote-path, or give --size to create a new one');
      }
      return { done: false };
    }
    const sig = await ctx.probe.signature(path);
    const prior = ctx.state.existingConfig;
    const recordedHere = prior !== undefined && imagePath(prior) === path;
    // Killed after the file was created and before the config recorded it: hbs's own, never used.
    const intent = recordedHere ? undefined : await readIntent(ctx.opts.config);
    if (intent && isIntended(intent, path, facts.sizeBytes, sig)) {
      ctx.state.image.intent = intent;
      ctx.state.image.resume = true;
      return { done: false, detail: `finished: ${path} was created by an earlier \`hbs init\` that stopped before it was formatted (the record ${intentPath(ctx.opts.config)} says so); made anew` };
    }
    if (sig.TYPE === 'crypto_LUKS') {
      // An encrypted image is never formatted again: its ext4 is behind a key this step does not hold.
      if (prior?.encryption && imagePath(prior) === path && ctx.opts.encrypt) {
        takeRecorded(ctx, prior);
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
      takeRecorded(ctx, prior);
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
        ctx.stack.fs.uuid = sig.UUID;
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
    const path = ctx.stack.image.path;
    const size = ctx.opts.size;
    if (size === undefined) throw new UsageError(`there is no image at ${path} to adopt, and without --size none is created`, 'check --image and --remote-path, or give --size');
    ctx.state.image.created = true;
    const erase: Action[] = [];
    if (ctx.state.image.resume) {
      // Made by hbs and never formatted (or half formatted): nothing in it can be lost.
      erase.push({ kind: 'remove', path, what: 'half made by an earlier run of hbs init' });
    } else if (ctx.opts.forceFormat && ctx.opts.formatConfirmed && (await ctx.probe.file(path))) {
      // Confirmed by typing the image name: the old file goes, a fresh sparse one takes its place.
      erase.push({ kind: 'remove', path, what: 'confirmed by typing its name' });
    }
    // Recorded before the file exists: a run killed from here on is finished by the next one.
    const intent: Intent = ctx.state.image.intent ?? { image: path, sizeBytes: size, uuid: ctx.deps.uuid(), ...(ctx.stack.crypt ? { luksUuid: ctx.deps.uuid() } : {}) };
    ctx.state.image.intent = intent;
    return [
      { kind: 'mkdir', path: dirname(ctx.opts.config), mode: 0o700 },
      { kind: 'write', path: intentPath(ctx.opts.config), content: intentText(intent), mode: 0o600, how: 'atomic', show: true, what: 'what this run is about to create' },
      ...erase,
      // O_CREAT|O_EXCL: whatever appeared there meanwhile is never opened for writing.
      { kind: 'write', path, content: '', mode: 0o600, how: 'create', what: 'the sparse image' },
      // `>` makes truncate only ever grow a file: even a wrong size can never cut the image.
      { kind: 'run', cmd: { argv: ['truncate', `--size=>${size}`, path] } },
    ];
  },
};
