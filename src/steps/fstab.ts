import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EXIT, HbsError } from '../core/errors.js';
import type { Runner } from '../core/runner.js';
import type { Step } from '../core/plan.js';
import { backupFile, writeFileAtomic } from '../lib/fs-util.js';
import { blockText, formatBlock, mergeBlock, type FstabEntry } from '../lib/fstab.js';
import { boxMountSource, sshfsMountOptions } from '../lib/ssh.js';
import { boxConn, imagePathOf, type InitContext } from '../init/context.js';

/** The two lines hbs manages: the box (sshfs), then the image (loop) that needs it. */
export function fstabEntries(ctx: InitContext): FstabEntry[] {
  const o = ctx.opts;
  const c = boxConn(o);
  return [
    // `sshfs#…` with type fuse goes through mount.fuse3, which understands nofail and _netdev;
    // type fuse.sshfs would run sshfs directly, and sshfs 3.7 rejects `-o nofail` (measured).
    {
      source: boxMountSource(c),
      target: o.boxMount,
      fstype: 'fuse',
      options: ['_netdev', 'nofail', 'noatime', ...sshfsMountOptions(c)],
    },
    o.encrypt
      ? {
          // The mapping needs a key: without --luks-unattended `hbs mount` opens it, so boot leaves it alone.
          source: `/dev/mapper/${o.encrypt.mapperName}`,
          target: o.mountPoint,
          fstype: 'ext4',
          options: [...(o.encrypt.unattendedKeyFile ? [] : ['noauto']), '_netdev', 'nofail', ...ctx.state.mountOptions, `x-systemd.requires-mounts-for=${o.boxMount}`],
        }
      : {
          source: imagePathOf(o),
          target: o.mountPoint,
          fstype: 'ext4',
          options: ['loop', '_netdev', 'nofail', ...ctx.state.mountOptions, `x-systemd.requires-mounts-for=${o.boxMount}`],
        },
  ];
}

interface VerifyCounts {
  parse: number;
  errors: number;
  report: string;
}

/** `findmnt --verify` on a file: its counts of parse errors and errors, and what it said. Read-only. */
export async function verifyTab(runner: Runner, file: string): Promise<VerifyCounts> {
  const r = await runner.run({ argv: ['findmnt', '--verify', '--tab-file', file], write: false, allowFail: true });
  const text = r.stderr + r.stdout;
  if (r.exitCode === 0 && /Success, no errors/.test(text)) return { parse: 0, errors: 0, report: r.stdout.trim() };
  const m = /(\d+) parse errors?, (\d+) errors?/.exec(text);
  if (!m) throw new Error(`unexpected findmnt --verify output: ${(r.stderr + r.stdout).trim()}`);
  return { parse: Number(m[1]), errors: Number(m[2]), report: r.stdout.trim() };
}

async function readOrEmpty(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

export const fstabStep: Step<InitContext> = {
  id: 'fstab',
  title: 'fstab entries',
  async check(ctx) {
    const path = ctx.opts.fstab;
    if (path === null) return { done: true, detail: 'skipped (--no-fstab)' };
    const block = formatBlock(ctx.opts.config, fstabEntries(ctx));
    const current = blockText(await readOrEmpty(path), ctx.opts.config);
    return current === block ? { done: true, detail: `${path} already has the hbs block` } : { done: false };
  },
  plan(ctx) {
    const path = ctx.opts.fstab;
    if (path === null) return Promise.resolve([]);
    const id = ctx.opts.config;
    const entries = fstabEntries(ctx);
    return Promise.resolve([
      {
        kind: 'task',
        describe: [
          `findmnt --verify the new hbs block, and ${path} with it (no new errors allowed)`,
          `back up ${path}, then write it atomically with the block between the BEGIN/END markers`,
        ],
        run: async () => {
          const original = await readOrEmpty(path);
          const candidate = mergeBlock(original, id, entries);
          const dir = await ctx.deps.mkTempDir('hbs-fstab-');
          try {
            const files = { block: join(dir, 'block'), before: join(dir, 'before'), after: join(dir, 'after') };
            await writeFile(files.block, formatBlock(id, entries));
            await writeFile(files.before, original);
            await writeFile(files.after, candidate);
            const block = await verifyTab(ctx.runner, files.block);
            if (block.parse + block.errors > 0) {
              throw new HbsError(`findmnt --verify rejects the fstab lines hbs would add; ${path} was not changed`, EXIT.failed, undefined, block.report);
            }
            const before = await verifyTab(ctx.runner, files.before);
            const after = await verifyTab(ctx.runner, files.after);
            if (after.parse > before.parse || after.errors > before.errors) {
              throw new HbsError(`findmnt --verify finds new errors in ${path} with the hbs block; it was not changed`, EXIT.failed, undefined, after.report);
            }
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
          let mode = 0o644;
          if (original !== '') {
            mode = (await stat(path)).mode & 0o7777; // keep the file's own mode
            ctx.reporter.line(`backup: ${await backupFile(path, ctx.deps.now())}`);
          }
          await writeFileAtomic(path, candidate, mode);
        },
      },
    ]);
  },
};
