import { blockLines, formatBlock } from '../../core/block.js';
import { EXIT, HbsError } from '../../core/errors.js';
import { readTextIfExists } from '../../core/files.js';
import type { Step } from '../../core/step.js';
import { formatEntry, type FstabEntry } from '../../lib/fstab.js';
import type { Probes } from '../../lib/probes.js';
import { boxMountSource, sshfsMountOptions } from '../../lib/ssh.js';
import type { Stack } from '../../lib/stack.js';
import type { InitCtx } from './context.js';

/**
 * The two lines hbs manages: the box (sshfs), then the image (loop) that needs it. With the systemd
 * unit (the default) both are `noauto`: the unit brings the stack up at boot with the lock, and the
 * lines stay as the record of what is mounted where (and for a mount by hand in an emergency, which
 * takes no lock). Without it (--no-systemd) boot mounts them itself.
 */
export function fstabEntries(s: Stack): FstabEntry[] {
  const c = s.conn;
  const after = `x-systemd.requires-mounts-for=${s.boxMount}`;
  const boot = s.systemdDir ? ['noauto'] : [];
  return [
    // `sshfs#…` with type fuse goes through mount.fuse3, which understands nofail and _netdev;
    // type fuse.sshfs would run sshfs directly, and sshfs 3.7 rejects `-o nofail` (measured).
    { source: boxMountSource(c), target: s.boxMount, fstype: 'fuse', options: [...boot, '_netdev', 'nofail', 'noatime', ...sshfsMountOptions(c)] },
    s.crypt
      ? {
          // The mapping needs a key: without --luks-unattended `hbs mount` opens it, so boot leaves it alone.
          source: s.crypt.device,
          target: s.fs.mountPoint,
          fstype: 'ext4',
          options: [...(s.crypt.unattendedKeyFile && !s.systemdDir ? [] : ['noauto']), '_netdev', 'nofail', ...s.fs.mountOptions, after],
        }
      : { source: s.image.path, target: s.fs.mountPoint, fstype: 'ext4', options: [...boot, 'loop', '_netdev', 'nofail', ...s.fs.mountOptions, after] },
  ];
}

/** findmnt --verify: the block on its own must be clean, and the whole file must not get new errors. */
async function verifyFstab(probe: Probes, path: string, id: string, lines: string[], before: string, after: string): Promise<void> {
  const block = await probe.verifyTab(formatBlock(id, lines));
  if (block.parse + block.errors > 0) throw new HbsError(`findmnt --verify rejects the fstab lines hbs would add; ${path} was not changed`, EXIT.failed, undefined, block.report);
  const [was, now] = [await probe.verifyTab(before), await probe.verifyTab(after)];
  if (now.parse > was.parse || now.errors > was.errors) throw new HbsError(`findmnt --verify finds new errors in ${path} with the hbs block; it was not changed`, EXIT.failed, undefined, now.report);
}

export const fstabStep: Step<InitCtx> = {
  id: 'fstab',
  title: 'fstab entries',
  async check(ctx) {
    const path = ctx.opts.fstab;
    if (path === null) return { done: true, detail: 'skipped (--no-fstab)' };
    const want = fstabEntries(ctx.stack).map(formatEntry);
    const current = blockLines((await readTextIfExists(path)) ?? '', ctx.opts.config);
    return current?.join('\n') === want.join('\n') ? { done: true, detail: `${path} already has the hbs block` } : { done: false };
  },
  plan(ctx) {
    const path = ctx.opts.fstab;
    if (path === null) return Promise.resolve([]);
    const id = ctx.opts.config;
    const lines = fstabEntries(ctx.stack).map(formatEntry);
    return Promise.resolve([
      {
        kind: 'block',
        path,
        id,
        lines,
        mode: 0o644,
        what: 'the box, then the image on it',
        validate: {
          describe: `findmnt --verify the hbs block, and ${path} with it (no new errors allowed; else it is left as it is)`,
          run: (before, after) => verifyFstab(ctx.probe, path, id, lines, before, after),
        },
      },
    ]);
  },
};
