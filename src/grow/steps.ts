import { EXIT, HbsError } from '../core/errors.js';
import type { Action, Step } from '../core/plan.js';
import { CommandError, formatCmd, type Cmd } from '../core/runner.js';
import { serializeConfig } from '../lib/config.js';
import { loopBackingFile, mountAt } from '../lib/mounts.js';
import { formatSize } from '../lib/size.js';
import { holdersOf } from '../lifecycle/holders.js';
import { loopsFor } from '../lifecycle/stack.js';
import { mountArgv } from '../steps/fs-mount.js';
import { directIoTask } from '../lib/loop.js';
import { statFile } from '../steps/image.js';
import type { GrowContext, GrowDecision } from './context.js';
import { covers, fsBytes, readGeometry, type FsGeometry } from './geometry.js';

/**
 * The layers of the stack, bottom to top: image file → loop device → ext4. Growing goes bottom up,
 * each layer taking the new size of the one below. A LUKS layer slots in between loop and ext4: a
 * `cryptsetup resize NAME` step after the loop refresh online, and an open/close of the mapping
 * around e2fsck/resize2fs offline (which then work on /dev/mapper/NAME instead of the image file).
 */

/** The kernel said no to growing the mounted filesystem (EPERM: no CAP_SYS_RESOURCE). Nothing changed in ext4. */
export class OnlineResizeRefused extends HbsError {
  constructor(readonly said: string) {
    super(`the kernel refused to grow the mounted filesystem online: ${said}`, EXIT.failed);
    this.name = 'OnlineResizeRefused';
  }
}

const ONLINE_REFUSED = /Permission denied to resize filesystem|Operation not permitted/i;
const HOURS = 24 * 60 * 60_000;

function target(ctx: GrowContext): number {
  return ctx.decision.targetBytes;
}

/** A command shown in a plan and run by a task that looks at its result itself. */
function runTask(cmd: Cmd, run: () => Promise<void>): Action {
  return { kind: 'task', describe: [formatCmd(cmd)], run };
}

export const growFileStep: Step<GrowContext> = {
  id: 'grow-file',
  title: 'Extend the image file',
  check(ctx) {
    const size = ctx.facts.file.sizeBytes;
    return Promise.resolve(size >= target(ctx) ? { done: true, detail: `${ctx.facts.image} is already ${formatSize(size)}` } : { done: false });
  },
  plan(ctx) {
    const { image } = ctx.facts;
    const before = ctx.facts.file.sizeBytes;
    return Promise.resolve([
      {
        kind: 'task',
        describe: [`re-check right before: ${image} is still ${before} bytes (else stop)`],
        run: async () => {
          const now = await statFile(ctx.runner, image);
          if (now?.sizeBytes !== before) {
            throw new HbsError(
              `${image} changed while hbs was planning (it was ${before} bytes, now ${now ? `${now.sizeBytes} bytes` : 'gone'}); nothing was changed`,
              EXIT.failed,
              'make sure nothing else works on the image, then re-run',
            );
          }
        },
      },
      // `>` makes truncate only ever grow the file: no size, however wrong, can cut the image.
      { kind: 'run', cmd: { argv: ['truncate', `--size=>${target(ctx)}`, image], timeoutMs: 120_000 } },
    ]);
  },
};

/** The loop device keeps the size it had when attached until told to look again. */
export const refreshLoopStep: Step<GrowContext> = {
  id: 'loop-refresh',
  title: 'Refresh the loop device size',
  async check(ctx) {
    const dev = ctx.facts.device as string;
    const r = await ctx.runner.run({ argv: ['blockdev', '--getsize64', dev], write: false, allowFail: true });
    const size = Number(r.stdout.trim());
    return r.exitCode === 0 && size >= target(ctx) ? { done: true, detail: `${dev} is already ${formatSize(size)}` } : { done: false };
  },
  plan(ctx) {
    return Promise.resolve([{ kind: 'run', cmd: { argv: ['losetup', '--set-capacity', ctx.facts.device as string] } }]);
  },
};

const fsDone = (ctx: GrowContext): { done: true; detail: string } | undefined =>
  covers(ctx.facts.fs, target(ctx), false) ? { done: true, detail: `ext4 already spans ${formatSize(fsBytes(ctx.facts.fs))}` } : undefined;

export const onlineResizeStep: Step<GrowContext> = {
  id: 'fs-online',
  title: 'Grow ext4 online (mounted)',
  check(ctx) {
    return Promise.resolve(fsDone(ctx) ?? { done: false });
  },
  plan(ctx) {
    const cmd: Cmd = { argv: ['resize2fs', ctx.facts.device as string], allowFail: true, timeoutMs: HOURS };
    return Promise.resolve([
      runTask(cmd, async () => {
        const r = await ctx.runner.run(cmd);
        if (r.exitCode === 0) return;
        const said = r.stderr.trim().split('\n').filter((l) => !/^resize2fs \d/.test(l)).join('; ');
        if (ONLINE_REFUSED.test(r.stderr)) throw new OnlineResizeRefused(said);
        throw new CommandError(formatCmd(cmd), r);
      }),
    ]);
  },
};

/** umount, then make sure the loop device under it is gone before the image is touched directly. */
export const unmountStep: Step<GrowContext> = {
  id: 'fs-unmount',
  title: 'Unmount the filesystem',
  check() {
    return Promise.resolve({ done: false });
  },
  plan(ctx) {
    const mp = ctx.cfg.filesystem.mountPoint;
    const dev = ctx.facts.device as string;
    const umount: Cmd = { argv: ['umount', mp], allowFail: true, timeoutMs: 10 * 60_000 };
    return Promise.resolve([
      runTask(umount, async () => {
        const r = await ctx.runner.run(umount);
        if (r.exitCode === 0) return;
        const holders = await holdersOf(mp);
        throw new HbsError(
          `cannot unmount ${mp}: ${r.stderr.trim()}${holders.length ? `\n${holders.map((h) => `  pid ${h.pid} (${h.via}): ${h.command}`).join('\n')}` : ''}`,
          EXIT.failed,
          `stop what uses ${mp} (e.g. a running backup), then re-run the same hbs grow: it picks up where it stopped`,
        );
      }),
      {
        kind: 'task',
        describe: [`wait until ${dev} is detached (mount -o loop detaches it on unmount), else losetup --detach ${dev}`],
        run: async () => {
          for (let i = 0; i <= 50; i++) {
            if (!(await loopsFor(ctx.runner, ctx.facts.image)).includes(dev)) return;
            if (i < 50) await ctx.deps.sleep(100);
          }
          await ctx.runner.run({ argv: ['losetup', '--detach', dev] });
        },
      },
    ]);
  },
};

/** e2fsck's `-C 1` lines: "PASS CURRENT MAX DEVICE". */
const PROGRESS = /^(\d) (\d+) (\d+)(?: |$)/;
const PASSES = ['', 'inodes, blocks and sizes', 'directory structure', 'directory connectivity', 'reference counts', 'group summary'];

export const fsckStep: Step<GrowContext> = {
  id: 'fs-check',
  title: 'Check the filesystem (e2fsck -f)',
  check(ctx) {
    return Promise.resolve(fsDone(ctx) ?? { done: false });
  },
  plan(ctx) {
    const image = ctx.facts.image;
    let pass = 0;
    let shown = -1;
    const cmd: Cmd = {
      argv: ['e2fsck', '-f', '-p', '-C', '1', image],
      allowFail: true,
      timeoutMs: HOURS,
      onStdoutLine: (line) => {
        const m = PROGRESS.exec(line);
        if (!m) return;
        const [p, cur, max] = [Number(m[1]), Number(m[2]), Number(m[3])];
        if (p !== pass) {
          pass = p;
          ctx.reporter.line(`e2fsck pass ${p} of 5: ${PASSES[p] ?? ''}`);
        }
        const pct = max > 0 ? Math.floor((100 * cur) / max) : 0;
        if (pct !== shown) {
          shown = pct;
          ctx.reporter.progress?.(`pass ${p} of 5, ${pct}%`);
        }
      },
    };
    return Promise.resolve([
      runTask(cmd, async () => {
        const r = await ctx.runner.run(cmd);
        // Exit bits: 1 errors fixed, 2 reboot advised (root fs only); 4 and up: not fixed, or e2fsck failed.
        if ((r.exitCode & ~3) === 0) {
          ctx.reporter.line(`e2fsck: ${r.exitCode === 0 ? 'clean' : 'errors found and fixed'}`);
          return;
        }
        throw new HbsError(
          `e2fsck found problems in ${image} that it will not fix unattended (exit ${r.exitCode}); the filesystem was not resized and is left unmounted`,
          EXIT.failed,
          `run \`e2fsck -f ${image}\` yourself, then re-run the same hbs grow to finish, and mount ${ctx.cfg.filesystem.mountPoint} again`,
          (r.stdout.replace(/^\d \d+ \d+ .*\n?/gm, '') + r.stderr).trim().split('\n').slice(-8).join('\n'),
        );
      }),
    ]);
  },
};

export const offlineResizeStep: Step<GrowContext> = {
  id: 'fs-offline',
  title: 'Grow ext4 offline',
  check(ctx) {
    return Promise.resolve(fsDone(ctx) ?? { done: false });
  },
  plan(ctx) {
    // No size: resize2fs grows the filesystem to the end of the (already extended) image.
    return Promise.resolve([{ kind: 'run', cmd: { argv: ['resize2fs', ctx.facts.image], timeoutMs: HOURS } }]);
  },
};

export const remountStep: Step<GrowContext> = {
  id: 'fs-remount',
  title: 'Mount the filesystem again',
  check() {
    return Promise.resolve({ done: false });
  },
  plan(ctx) {
    const { cfg } = ctx;
    return Promise.resolve([
      { kind: 'run', cmd: { argv: mountArgv(ctx.facts.image, cfg.filesystem.mountPoint, cfg.filesystem.mountOptions), timeoutMs: 120_000 } },
      directIoTask(ctx.runner, ctx.reporter, cfg.filesystem.mountPoint),
    ]);
  },
};

/** After the change: the image has the new size and the filesystem in it spans all of it. */
export const verifyStep: Step<GrowContext> = {
  id: 'verify',
  title: 'Check that ext4 spans the image',
  async check(ctx) {
    if (ctx.runner.dryRun) return { done: true, detail: 'checked after a real run' };
    const { image } = ctx.facts;
    const mp = ctx.cfg.filesystem.mountPoint;
    const file = await statFile(ctx.runner, image);
    if (!file || file.sizeBytes < target(ctx)) {
      throw new HbsError(`${image} is ${file ? formatSize(file.sizeBytes) : 'gone'}, not the ${formatSize(target(ctx))} it was grown to`, EXIT.failed, 're-run the same hbs grow');
    }
    const m = await mountAt(ctx.runner, mp);
    const device = m && (await loopBackingFile(ctx.runner, m.source)) === image ? m.source : undefined;
    if (ctx.decision.mounted && !device) {
      throw new HbsError(`${image} is not mounted at ${mp} again`, EXIT.failed, `mount it with \`hbs mount\` (the grow itself is finished if a re-run says so)`);
    }
    const g: FsGeometry = await readGeometry(ctx.runner, device ?? image);
    if (!covers(g, file.sizeBytes, true)) {
      throw new HbsError(
        `after the resize, ext4 spans ${formatSize(fsBytes(g))} (${g.blockCount} blocks) but the image is ${formatSize(file.sizeBytes)}`,
        EXIT.failed,
        're-run the same hbs grow: it finishes from the filesystem\'s own size',
      );
    }
    ctx.state.after = g;
    ctx.state.afterDevice = device;
    return { done: true, detail: `${g.blockCount} blocks of ${g.blockSize} bytes = ${formatSize(fsBytes(g))} in a ${formatSize(file.sizeBytes)} image` };
  },
  plan() {
    return Promise.resolve([]);
  },
};

export const configStep: Step<GrowContext> = {
  id: 'grow-config',
  title: 'Record the new size in the config',
  check(ctx) {
    const recorded = ctx.cfg.image.sizeBytes;
    return Promise.resolve(recorded === target(ctx) ? { done: true, detail: `${ctx.configPath} records ${formatSize(recorded)}` } : { done: false });
  },
  plan(ctx) {
    const next = { ...ctx.cfg, image: { ...ctx.cfg.image, sizeBytes: target(ctx) } };
    return Promise.resolve([{ kind: 'write', path: ctx.configPath, content: serializeConfig(next), mode: 0o600 }]);
  },
};

/** The filesystem steps of a path. Unmounted, the offline path needs nobody's consent: nothing is taken away. */
export function fsSteps(d: Pick<GrowDecision, 'mounted'>, path: 'online' | 'offline'): Step<GrowContext>[] {
  if (!d.mounted) return [fsckStep, offlineResizeStep];
  if (path === 'online') return [refreshLoopStep, onlineResizeStep];
  return [unmountStep, fsckStep, offlineResizeStep, remountStep];
}

export const FINISH_STEPS: readonly Step<GrowContext>[] = [verifyStep, configStep];
