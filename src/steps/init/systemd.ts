import type { Action } from '../../core/action.js';
import { readTextIfExists } from '../../core/files.js';
import type { Step } from '../../core/step.js';
import { templateText, TEMPLATE, unitName, wantsLink } from '../../lib/systemd.js';
import { join } from 'node:path';
import { readlink } from 'node:fs/promises';
import type { InitCtx } from './context.js';

/**
 * The boot brings the stack up the way `hbs mount` does (lock, UUID check, e2fsck when needed, direct
 * I/O, repair): the unit template, and this config's instance enabled (the .wants link `systemctl
 * enable` makes). Where systemd runs, it is reloaded and the instance started (a no-op for a stack
 * that is up), so that shutdown runs `hbs umount`.
 */
export const bootUnitStep: Step<InitCtx> = {
  id: 'boot-unit',
  title: 'systemd unit (brings the stack up at boot, with the lock)',
  async check(ctx) {
    const sd = ctx.opts.systemd;
    if (!sd) return { done: true, detail: 'skipped (--no-systemd: fstab mounts it at boot, without the lock)' };
    const want = templateText(ctx.hbsCommand);
    const have = await readTextIfExists(join(sd.dir, TEMPLATE));
    const link = await readlink(wantsLink(sd.dir, ctx.opts.config)).catch(() => undefined);
    if (have === want && link === join(sd.dir, TEMPLATE)) return { done: true, detail: `${unitName(ctx.opts.config)} is enabled` };
    return { done: false, detail: `${unitName(ctx.opts.config)} enabled` };
  },
  plan(ctx) {
    const sd = ctx.opts.systemd!;
    const unit = unitName(ctx.opts.config);
    const actions: Action[] = [
      { kind: 'mkdir', path: sd.dir, mode: 0o755 },
      { kind: 'write', path: join(sd.dir, TEMPLATE), content: templateText(ctx.hbsCommand), mode: 0o644, how: 'atomic', show: true, what: 'the unit template, one for every config' },
      { kind: 'symlink', path: wantsLink(sd.dir, ctx.opts.config), target: join(sd.dir, TEMPLATE), what: `enables ${unit}` },
    ];
    if (sd.live) {
      actions.push(
        { kind: 'run', cmd: { argv: ['systemctl', 'daemon-reload'], timeoutMs: 120_000 } },
        // Started now (the stack is up already: it only records that), so that shutdown unmounts it cleanly.
        { kind: 'run', cmd: { argv: ['systemctl', 'start', unit], timeoutMs: 600_000 } },
      );
    }
    return Promise.resolve(actions);
  },
};
