import { UsageError } from '../../core/errors.js';
import type { Step } from '../../core/step.js';
import { imagePath } from '../../lib/config.js';
import { boxTargetProblem } from '../box.js';
import { fsTargetProblem } from '../fs.js';
import type { InitCtx } from './context.js';

/**
 * Before anything changes: the config is ours to write, and both mount points are free (missing,
 * empty, or already holding exactly what hbs would mount there), so a wrong answer stops the run
 * with nothing changed.
 */
export const targetsStep: Step<InitCtx> = {
  id: 'targets',
  title: 'Mount points are free',
  async check(ctx) {
    const prior = ctx.state.existingConfig;
    const o = ctx.opts;
    if (prior) {
      const was = `${prior.box.user}@${prior.box.host}:${prior.box.port}/${prior.box.remotePath} ${imagePath(prior)}`;
      const now = `${o.user}@${o.host}:${o.port}/${o.remotePath} ${ctx.stack.image.path}`;
      if (was !== now) {
        // The config is not ours to overwrite: it describes another box or image.
        throw new UsageError(
          `${o.config} already describes another setup (${prior.box.user}@${prior.box.host}, image ${imagePath(prior)}); it was left as it is`,
          'give this setup its own --config, or run `hbs umount` for the old one and move its config away',
        );
      }
    }
    await boxTargetProblem(ctx);
    await fsTargetProblem(ctx);
    return { done: true, detail: `${o.boxMount}, ${o.mountPoint}` };
  },
  plan: () => Promise.resolve([]),
};
