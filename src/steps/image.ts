import { EXIT, HbsError } from '../core/errors.js';
import type { Step } from '../core/step.js';
import { inspectCrypt, loopsOf } from '../lib/inspect.js';
import type { StepCtx } from './context.js';

/**
 * Before the image is attached, opened or resized: it is the one the config recorded (its ext4
 * UUID, or a LUKS2 container when encrypted), and nothing else holds it through a loop device.
 */
export const imageVerifyStep: Step<StepCtx> = {
  id: 'image-verify',
  title: 'The image is the recorded one',
  after: ['box-mount'],
  expect: (ctx) =>
    Promise.resolve({ done: true, detail: `${ctx.stack.image.path} is checked once the box is mounted (${ctx.stack.crypt ? 'LUKS2' : `ext4 UUID ${ctx.stack.fs.uuid ?? '?'}`})` }),
  async check(ctx) {
    const s = ctx.stack;
    const image = s.image.path;
    const file = await ctx.probe.file(image);
    if (!file) throw new HbsError(`the image ${image} is not on the box`, EXIT.failed, 'check --remote-path and the box; `hbs status` shows each layer');
    const sig = await ctx.probe.signature(image);
    const found = `${sig.TYPE ?? 'no filesystem'}${sig.UUID ? ` UUID ${sig.UUID}` : ''}`;
    if (s.crypt) {
      // The ext4 UUID is behind the key: checked once the mapping is open.
      if (sig.TYPE !== 'crypto_LUKS') throw new HbsError(`${image} is not a LUKS container (found ${found}), but ${s.configPath} says it is encrypted; hbs left it untouched`);
    } else if (sig.TYPE !== 'ext4' || sig.UUID !== s.fs.uuid) {
      throw new HbsError(`${image} is not the filesystem in ${s.configPath} (found ${found}, expected ext4 UUID ${s.fs.uuid ?? '?'}); hbs left it untouched`);
    }
    // Attached elsewhere (by hand, another config): a second loop device on one ext4 destroys it.
    const mounted = (await ctx.probe.mountAt(s.fs.mountPoint))?.source;
    const crypt = await inspectCrypt(ctx.probe, s);
    const ours = new Set([mounted, crypt?.state === 'open' ? crypt.mapping?.loop : undefined]);
    const others = (await loopsOf(ctx.probe, image)).filter((d) => !ours.has(d));
    if (others.length) {
      throw new HbsError(
        `${image} is also attached as ${others.join(', ')} (by another config or by hand); hbs will not attach it a second time`,
        EXIT.failed,
        'find where with `losetup -j IMAGE` and `findmnt`, unmount or detach it there (`losetup -d DEVICE`), then re-run',
      );
    }
    return { done: true, detail: s.crypt ? `${image}: LUKS2 container (${sig.UUID ?? '?'})` : `${image}: ext4 UUID ${sig.UUID}` };
  },
  plan: () => Promise.resolve([]),
};
