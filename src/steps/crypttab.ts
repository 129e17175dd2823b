import { readFile, stat } from 'node:fs/promises';
import type { Step } from '../core/plan.js';
import { UsageError } from '../core/errors.js';
import { backupFile, writeFileAtomic } from '../lib/fs-util.js';
import { blockText } from '../lib/fstab.js';
import { CRYPTTAB_OPTIONS, crypttabProblems, formatCrypttabBlock, formatCrypttabEntry, mergeCrypttabBlock, type CrypttabEntry } from '../lib/crypttab.js';
import { imagePathOf, type InitContext } from '../init/context.js';
import type { InitOptions } from '../init/options.js';

/**
 * The line that opens the mapping at boot with the unattended key (see src/lib/crypttab.ts for what
 * systemd and Debian's scripts do with it); undefined when there is none to write.
 */
export function crypttabEntry(o: Pick<InitOptions, 'encrypt' | 'boxMount' | 'image'>): CrypttabEntry | undefined {
  const e = o.encrypt;
  if (!e?.unattendedKeyFile || !e.crypttab) return undefined;
  return { name: e.mapperName, source: imagePathOf(o), keyFile: e.unattendedKeyFile, options: CRYPTTAB_OPTIONS };
}

/** Throws a usage error when the crypttab line cannot hold these paths; call before anything changes. */
export function assertCrypttabWritable(o: Pick<InitOptions, 'encrypt' | 'boxMount' | 'image'>): void {
  const entry = crypttabEntry(o);
  const problems = entry ? crypttabProblems(entry) : [];
  if (problems.length) {
    throw new UsageError(`the crypttab line for --luks-unattended cannot be written: ${problems.join('; ')}`, 'pick paths without white space, or give --no-crypttab');
  }
}

async function readIfThere(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export const crypttabStep: Step<InitContext> = {
  id: 'crypttab',
  title: 'crypttab line (opens the image at boot)',
  async check(ctx) {
    const e = ctx.opts.encrypt;
    if (!e?.unattendedKeyFile) return { done: true, detail: 'skipped (no --luks-unattended)' };
    if (!e.crypttab) return { done: true, detail: 'skipped (--no-crypttab)' };
    assertCrypttabWritable(ctx.opts);
    const entry = crypttabEntry(ctx.opts)!;
    const current = blockText((await readIfThere(e.crypttab)) ?? '', ctx.opts.config);
    return current === formatCrypttabBlock(ctx.opts.config, [entry]) ? { done: true, detail: `${e.crypttab} already has the hbs block` } : { done: false };
  },
  plan(ctx) {
    const path = ctx.opts.encrypt?.crypttab;
    const entry = crypttabEntry(ctx.opts);
    if (!path || !entry) return Promise.resolve([]);
    const id = ctx.opts.config;
    return Promise.resolve([
      {
        kind: 'task',
        describe: [
          `back up ${path} (if it exists; a new one gets mode 0600), then write it atomically with this line between the BEGIN/END markers:`,
          // The key file's path, never its content.
          `  ${formatCrypttabEntry(entry)}`,
        ],
        run: async () => {
          const original = await readIfThere(path);
          let mode = 0o600;
          if (original !== undefined) {
            mode = (await stat(path)).mode & 0o7777; // keep the file's own mode
            ctx.reporter.line(`backup: ${await backupFile(path, ctx.deps.now())}`);
          }
          await writeFileAtomic(path, mergeCrypttabBlock(original ?? '', id, [entry]), mode);
        },
      },
    ]);
  },
};
