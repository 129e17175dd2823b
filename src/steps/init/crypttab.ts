import { UsageError } from '../../core/errors.js';
import { blockLines } from '../../core/block.js';
import { readTextIfExists } from '../../core/files.js';
import type { Step } from '../../core/step.js';
import { CRYPTTAB_OPTIONS, crypttabProblems, formatCrypttabEntry, type CrypttabEntry } from '../../lib/crypttab.js';
import type { InitOptions } from './context.js';
import type { InitCtx } from './context.js';

/**
 * The line that opens the mapping at boot with the unattended key (see src/lib/crypttab.ts for what
 * systemd and Debian's scripts do with it); undefined when there is none to write.
 */
export function crypttabEntry(o: Pick<InitOptions, 'encrypt' | 'boxMount' | 'image' | 'systemd'>): CrypttabEntry | undefined {
  const e = o.encrypt;
  if (!e?.unattendedKeyFile || !e.crypttab) return undefined;
  // With the systemd unit, it (hbs mount, with the kept key) opens the mapping; the line is `noauto`.
  return { name: e.mapperName, source: `${o.boxMount}/${o.image}`, keyFile: e.unattendedKeyFile, options: [...(o.systemd ? ['noauto'] : []), ...CRYPTTAB_OPTIONS] };
}

/** Throws a usage error when the crypttab line cannot hold these paths; call before anything changes. */
export function assertCrypttabWritable(o: Pick<InitOptions, 'encrypt' | 'boxMount' | 'image' | 'systemd'>): void {
  const entry = crypttabEntry(o);
  const problems = entry ? crypttabProblems(entry) : [];
  if (problems.length) {
    throw new UsageError(`the crypttab line for --luks-unattended cannot be written: ${problems.join('; ')}`, 'pick paths without white space, or give --no-crypttab');
  }
}

export const crypttabStep: Step<InitCtx> = {
  id: 'crypttab',
  title: 'crypttab line (opens the image at boot)',
  async check(ctx) {
    const e = ctx.opts.encrypt;
    if (!e?.unattendedKeyFile) return { done: true, detail: 'skipped (no --luks-unattended)' };
    if (!e.crypttab) return { done: true, detail: 'skipped (--no-crypttab)' };
    assertCrypttabWritable(ctx.opts);
    const entry = crypttabEntry(ctx.opts)!;
    const current = blockLines((await readTextIfExists(e.crypttab)) ?? '', ctx.opts.config);
    return current?.join('\n') === formatCrypttabEntry(entry) ? { done: true, detail: `${e.crypttab} already has the hbs block` } : { done: false };
  },
  plan(ctx) {
    const path = ctx.opts.encrypt?.crypttab;
    const entry = crypttabEntry(ctx.opts);
    if (!path || !entry) return Promise.resolve([]);
    // The key file's path, never its content. A new crypttab gets mode 0600.
    return Promise.resolve([{ kind: 'block', path, id: ctx.opts.config, lines: [formatCrypttabEntry(entry)], mode: 0o600, what: 'the line that opens the image at boot' }]);
  },
};
