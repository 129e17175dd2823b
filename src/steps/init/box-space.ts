import { UsageError } from '../../core/errors.js';
import { probeStep, type Check } from '../../core/step.js';
import { imagePath } from '../../lib/config.js';
import { formatSize } from '../../lib/size.js';
import type { InitCtx } from './context.js';

/** A sparse image takes no space yet, but backups fail with I/O errors once the box is full: the size must fit. */
export const boxSpaceStep = probeStep<InitCtx>(
  'box-space',
  'Space on the box',
  async (ctx) => {
    const space = await ctx.probe.space(ctx.opts.boxMount);
    ctx.state.box = space;
    const figures = `${formatSize(space.freeBytes)} free of ${formatSize(space.totalBytes)}`;
    const prior = ctx.state.existingConfig;
    const recorded = prior !== undefined && imagePath(prior) === ctx.stack.image.path;
    // --adopt without --size creates nothing: the image is there already.
    const adoptOnly = ctx.opts.adopt && !ctx.opts.sizeGiven;
    const size = ctx.opts.size ?? 0;
    if (size > space.freeBytes && !ctx.opts.force && !recorded && !adoptOnly) {
      throw new UsageError(
        `image size ${formatSize(size)} is larger than the space left on the box (${figures})`,
        'choose a smaller --size, or pass --force if you know the box will grow',
      );
    }
    return { done: true, detail: figures };
  },
  { after: ['box-mount'], expect: () => Promise.resolve<Check>({ done: true, detail: 'read once the box is mounted' }) },
);
