import { EXIT, HbsError } from '../core/errors.js';
import type { Runner } from '../core/runner.js';
import type { Step } from '../core/plan.js';
import { fsDeviceOf, type InitContext } from '../init/context.js';

export const FS_LABEL = 'hbs-backup';

/** e2fsprogs version as [major, minor, patch], from `mke2fs -V`. Read-only. */
export async function e2fsprogsVersion(runner: Runner): Promise<[number, number, number]> {
  const r = await runner.run({ argv: ['mke2fs', '-V'], write: false, allowFail: true });
  const m = /mke2fs (\d+)\.(\d+)(?:\.(\d+))?/.exec(r.stderr + r.stdout);
  if (!m) throw new HbsError('cannot tell the e2fsprogs version (`mke2fs -V`)', EXIT.preflight, 'install e2fsprogs');
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

/**
 * How to format with the fewest bytes written to the box. A fresh sparse file reads as zeros, so
 * e2fsprogs ≥ 1.47 may skip zeroing inode tables and journal; older ones defer it (lazy init) and
 * the mount must then not start the background zeroing (noinit_itable).
 */
export function mkfsTuning(version: readonly number[]): { extended: string[]; mountOptions: string[] } {
  const [major = 0, minor = 0] = version;
  if (major > 1 || (major === 1 && minor >= 47)) {
    return { extended: ['assume_storage_prezeroed=1', 'nodiscard'], mountOptions: [] };
  }
  return { extended: ['lazy_itable_init=1', 'lazy_journal_init=1', 'nodiscard'], mountOptions: ['noinit_itable'] };
}

/**
 * Inside LUKS a fresh mapping reads as noise, not zeros: assume_storage_prezeroed would be a lie.
 * Lazy init instead (nothing zeroed at mkfs) and noinit_itable at mount (no background zeroing):
 * every zero written through dm-crypt is ciphertext and costs quota on the box.
 */
export const LUKS_TUNING = { extended: ['lazy_itable_init=1', 'lazy_journal_init=1', 'nodiscard'], mountOptions: ['noinit_itable'] } as const;

export const mkfsStep: Step<InitContext> = {
  id: 'mkfs',
  title: 'ext4 filesystem in the image',
  check(ctx) {
    const uuid = ctx.state.image.uuid;
    const adoptedLuks = ctx.state.luks?.adopted;
    if (uuid) return Promise.resolve({ done: true, detail: adoptedLuks ? `adopted: ext4 UUID ${uuid} in ${fsDeviceOf(ctx.opts)}; not formatted` : `already ext4, UUID ${uuid}` });
    // Adopted, its filesystem not seen yet: a dry-run that mounted and opened nothing. (A real run
    // knows the UUID by now; without it, plan() refuses: only an image created here is formatted.)
    if (ctx.state.image.adopted && ctx.runner.dryRun) {
      return Promise.resolve({ done: true, detail: `adopted: its ext4 UUID is read once ${adoptedLuks ? 'it is open' : 'the box is mounted'}; never formatted` });
    }
    return Promise.resolve({ done: false });
  },
  async plan(ctx) {
    // Only a file this run created may be formatted; anything else was refused by the image step.
    if (!ctx.state.image.created) throw new Error('refusing to format an image this run did not create');
    const tuning = ctx.opts.encrypt ? { extended: [...LUKS_TUNING.extended], mountOptions: [...LUKS_TUNING.mountOptions] } : mkfsTuning(await e2fsprogsVersion(ctx.runner));
    ctx.state.mkfsExtended = tuning.extended;
    ctx.state.mountOptions = ['noatime', ...tuning.mountOptions];
    const uuid = ctx.deps.uuid();
    ctx.state.image.uuid = uuid;
    // -e remount-ro: on I/O errors (a dropped link) ext4 stops writing instead of carrying on,
    // which limits the damage and shows the stack as broken; `hbs mount` then repairs it.
    return [
      {
        kind: 'run',
        cmd: {
          argv: ['mkfs.ext4', '-q', '-L', FS_LABEL, '-U', uuid, '-m', '0', '-e', 'remount-ro', '-E', tuning.extended.join(','), fsDeviceOf(ctx.opts)],
          timeoutMs: 30 * 60_000,
        },
      },
    ];
  },
};
