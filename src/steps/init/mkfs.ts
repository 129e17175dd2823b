import { EXIT, HbsError } from '../../core/errors.js';
import type { Check, Step } from '../../core/step.js';
import { FEATURES, FS_LABEL, LUKS_TUNING, mkfsTuning } from '../../lib/ext4.js';
import type { InitCtx } from './context.js';

/**
 * ext4 in the image (or in its open mapping), formatted with the fewest bytes written to the box.
 * Only an image this run created is ever formatted.
 */
export const mkfsStep: Step<InitCtx> = {
  id: 'mkfs',
  title: 'ext4 filesystem in the image',
  // An adopted image is looked at once the box is mounted: a dry-run that only planned the mount gets `expect`.
  after: ['box-mount', 'image', 'crypt-open'],
  check(ctx) {
    const uuid = ctx.stack.fs.uuid;
    if (uuid) return Promise.resolve({ done: true, detail: ctx.state.luks?.adopted ? `adopted: ext4 UUID ${uuid} in ${ctx.stack.fs.device}; not formatted` : `already ext4, UUID ${uuid}` });
    return Promise.resolve({ done: false });
  },
  expect(ctx) {
    const uuid = ctx.stack.fs.uuid;
    if (uuid) return Promise.resolve<Check>({ done: true, detail: `already ext4, UUID ${uuid}` });
    // Adopted, its filesystem not seen yet: it is read once the box is mounted (and the image opened); never formatted.
    if (ctx.state.image.adopted) return Promise.resolve<Check>({ done: true, detail: `adopted: its ext4 UUID is read once ${ctx.stack.crypt ? 'it is open' : 'the box is mounted'}; never formatted` });
    return Promise.resolve<Check>({ done: false });
  },
  async plan(ctx) {
    // Only a file this run created may be formatted; anything else was refused by the image step.
    if (!ctx.state.image.created) throw new HbsError('refusing to format an image this run did not create', EXIT.failed);
    let tuning: { extended: readonly string[]; mountOptions: readonly string[] } = LUKS_TUNING;
    if (!ctx.stack.crypt) {
      const version = await ctx.probe.e2fsprogsVersion();
      if (!version) throw new HbsError('cannot tell the e2fsprogs version (`mke2fs -V`)', EXIT.preflight, 'install e2fsprogs');
      tuning = mkfsTuning(version);
    }
    ctx.state.mkfsExtended = [...tuning.extended];
    ctx.stack.fs.mountOptions = ['noatime', ...tuning.mountOptions];
    const uuid = ctx.state.image.intent?.uuid ?? ctx.deps.uuid();
    ctx.stack.fs.uuid = uuid;
    // -e remount-ro: on I/O errors (a dropped link, a full box) ext4 stops writing instead of carrying
    // on, which limits the damage and shows the stack as broken; `hbs mount` then repairs it.
    return [
      {
        kind: 'run',
        cmd: {
          argv: ['mkfs.ext4', '-q', '-L', FS_LABEL, '-U', uuid, '-m', '0', '-e', 'remount-ro', '-O', FEATURES.join(','), '-E', tuning.extended.join(','), ctx.stack.fs.device],
          timeoutMs: 30 * 60_000,
        },
      },
    ];
  },
};
