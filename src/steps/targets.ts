import type { Step } from '../core/plan.js';
import { UsageError } from '../core/errors.js';
import { imagePath } from '../lib/config.js';
import { imagePathOf, type InitContext } from '../init/context.js';
import { boxMountStep } from './box-mount.js';
import { fsMountStep } from './fs-mount.js';

/**
 * Before anything changes: both mount points must be free (missing, empty, or already holding
 * exactly what hbs would mount there), so a wrong answer stops the run with nothing changed.
 */
export const targetsStep: Step<InitContext> = {
  id: 'targets',
  title: 'Mount points are free',
  async check(ctx) {
    const prior = ctx.state.existingConfig;
    const o = ctx.opts;
    if (prior) {
      const was = `${prior.box.user}@${prior.box.host}:${prior.box.port}/${prior.box.remotePath} ${imagePath(prior)}`;
      const now = `${o.user}@${o.host}:${o.port}/${o.remotePath} ${imagePathOf(o)}`;
      if (was !== now) {
        // The config is not ours to overwrite: it describes another box or image.
        throw new UsageError(
          `${o.config} already describes another setup (${prior.box.user}@${prior.box.host}, image ${imagePath(prior)}); it was left as it is`,
          'give this setup its own --config, or run `hbs umount` for the old one and move its config away',
        );
      }
    }
    // Both checks are read-only and throw on a conflict.
    await boxMountStep.check(ctx);
    await fsMountStep.check(ctx);
    return { done: true, detail: `${ctx.opts.boxMount}, ${ctx.opts.mountPoint}` };
  },
  plan() {
    return Promise.resolve([]);
  },
};
