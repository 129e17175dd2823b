import { UsageError } from '../core/errors.js';
import type { Runner } from '../core/runner.js';
import type { Step } from '../core/plan.js';
import { formatSize } from '../lib/size.js';
import { imagePath } from '../lib/config.js';
import { imagePathOf, type InitContext } from '../init/context.js';

/** Total and free bytes of the filesystem at `path` (statvfs; on sshfs, the box's quota). Read-only. */
export async function spaceOf(runner: Runner, path: string, timeoutMs?: number): Promise<{ totalBytes: number; freeBytes: number }> {
  const r = await runner.run({ argv: ['stat', '--file-system', '--format=%S %b %a', path], write: false, timeoutMs });
  const [frag, blocks, avail] = r.stdout.trim().split(/\s+/).map(Number);
  if (frag === undefined || blocks === undefined || avail === undefined || [frag, blocks, avail].some((n) => !Number.isFinite(n))) {
    throw new Error(`cannot read the free space of ${path}: ${r.stdout.trim()}`);
  }
  return { totalBytes: frag * blocks, freeBytes: frag * avail };
}

export const boxSpaceStep: Step<InitContext> = {
  id: 'box-space',
  title: 'Space on the box',
  async check(ctx) {
    if (ctx.state.simulated.has('box-mount')) return { done: true, detail: 'will be read once the box is mounted' };
    const space = await spaceOf(ctx.runner, ctx.opts.boxMount);
    ctx.state.box = space;
    const figures = `${formatSize(space.freeBytes)} free of ${formatSize(space.totalBytes)}`;
    const size = ctx.opts.size;
    // A sparse image takes no space yet, but backups fail with I/O errors once the box is full.
    const prior = ctx.state.existingConfig;
    const recorded = prior !== undefined && imagePath(prior) === imagePathOf(ctx.opts);
    // --adopt without --size creates nothing: its size is only a placeholder, the image is there already.
    const adoptOnly = ctx.opts.adopt && !ctx.opts.sizeGiven;
    if (size > space.freeBytes && !ctx.opts.force && !recorded && !adoptOnly) {
      throw new UsageError(
        `image size ${formatSize(size)} is larger than the space left on the box (${figures})`,
        'choose a smaller --size, or pass --force if you know the box will grow',
      );
    }
    return { done: true, detail: figures };
  },
  plan() {
    return Promise.resolve([]);
  },
};
