import { EXIT, HbsError } from '../core/errors.js';
import type { Check, Step } from '../core/step.js';
import { inspectCrypt } from '../lib/inspect.js';
import { acquireKey } from '../lib/keys.js';
import { luksCloseCmd, luksOpenCmd, type LuksKey } from '../lib/luks.js';
import type { StepCtx } from './context.js';

/**
 * The key for a keyed command. The key step checked it before the first change; a dry-run that asked
 * nobody shows the command with its stdin marker and holds no key.
 */
export function keyFor(ctx: StepCtx): LuksKey {
  if (ctx.key.key) return ctx.key.key;
  if (ctx.key.source.kind === 'later') return { kind: 'keyfile', bytes: new Uint8Array(0), label: 'key' };
  throw new HbsError('internal: a keyed command was planned before the key step', EXIT.failed);
}

/**
 * The key of an encrypted image, got (from a file, stdin, the kept unattended key or a prompt) and
 * checked with `open --test-passphrase` (read-only) before anything changes: a wrong key changes
 * nothing. `needed` says why the command needs it, or undefined when it does not.
 */
export function keyStep<C extends StepCtx>(needed: (ctx: C) => Promise<string | undefined>): Step<C> {
  return {
    id: 'key',
    title: 'The key opens the image',
    after: ['box-mount'],
    expect: () => Promise.resolve<Check>({ done: true, detail: 'asked for and checked once the box is mounted, before anything else changes' }),
    async check(ctx) {
      const image = ctx.stack.image.path;
      if (ctx.key.key) return { done: true, detail: `${ctx.key.key.label} opens ${image}` };
      const purpose = await needed(ctx);
      if (!purpose) return { done: true, detail: 'not needed' };
      const key = await acquireKey(ctx.key.source, image, purpose, (k) => ctx.probe.testKey(image, k), (t) => ctx.reporter.warn(t));
      if (!key) return { done: true, detail: 'asked for when the real run gets here, and checked before any change' };
      ctx.key.key = key;
      return { done: true, detail: `${key.label} opens ${image} (checked; nothing changed)` };
    },
    plan: () => Promise.resolve([]),
  };
}

/** Why mount needs the key: to open a closed mapping. */
export async function keyToOpen(ctx: StepCtx): Promise<string | undefined> {
  return (await inspectCrypt(ctx.probe, ctx.stack))?.state === 'closed' ? 'opening it' : undefined;
}

/**
 * Opens the LUKS2 mapping (cryptsetup attaches the loop device itself) and checks that it holds the
 * recorded ext4 — or, adopting, an ext4 at all, whose UUID is then the stack's. Anything else is
 * closed again at once: hbs formats nothing it did not create.
 */
export const cryptOpenStep: Step<StepCtx> = {
  id: 'crypt-open',
  title: 'Open the encrypted image',
  after: ['box-mount'],
  async check(ctx) {
    const crypt = await inspectCrypt(ctx.probe, ctx.stack);
    if (!crypt) return { done: true, detail: 'not encrypted' };
    if (crypt.state === 'conflict') throw new HbsError(crypt.detail, EXIT.usage, 'close that mapping (`cryptsetup close NAME`) or fix the config');
    if (crypt.state === 'open') {
      const s = ctx.stack;
      // Adopting an image that was open before this run: its filesystem is read as it would be right after opening.
      if (s.fs.uuid === undefined) {
        const sig = await ctx.probe.signature(s.fs.device);
        if (sig.TYPE !== 'ext4' || !sig.UUID) {
          throw new HbsError(
            `${s.fs.device} (the opened ${s.image.path}) holds ${sig.TYPE ?? 'no filesystem hbs recognises'}, not ext4; hbs formats nothing it did not create`,
            EXIT.failed,
            `check that this is the right image; \`cryptsetup close ${s.crypt?.mapperName ?? ''}\` closes it`,
          );
        }
        s.fs.uuid = sig.UUID;
      }
      return { done: true, detail: crypt.detail };
    }
    return { done: false, detail: `${ctx.stack.crypt?.device ?? ''} open` };
  },
  plan(ctx) {
    const s = ctx.stack;
    const c = s.crypt;
    if (!c) return Promise.resolve([]);
    return Promise.resolve([
      {
        kind: 'run',
        cmd: luksOpenCmd(s.image.path, c.mapperName, keyFor(ctx)),
        then: async (_r, runner) => {
          const sig = await ctx.probe.signature(c.device);
          const expected = s.fs.uuid;
          if (sig.TYPE === 'ext4' && sig.UUID && (expected === undefined || sig.UUID === expected)) {
            s.fs.uuid = sig.UUID;
            return;
          }
          await runner.run({ ...luksCloseCmd(c.mapperName), allowFail: true });
          throw new HbsError(
            `${c.device} (the opened ${s.image.path}) holds ${sig.TYPE ?? 'no filesystem hbs recognises'}${sig.UUID ? ` UUID ${sig.UUID}` : ''}, ` +
              `${expected ? `not the ext4 UUID ${expected} of ${s.configPath}` : 'not ext4'}; closed it again, nothing else was changed`,
            EXIT.failed,
            'check that this is the right image (--image, --remote-path, the config); its contents are untouched',
          );
        },
      },
    ]);
  },
};

/** Closes the mapping, after the filesystem on it is unmounted (closing under a mounted filesystem is refused, and wrong). */
export const cryptCloseStep: Step<StepCtx> = {
  id: 'crypt-close',
  title: 'Close the encrypted image',
  // Closing what this run opened (grow offline): a dry-run only planned the open, so it plans the close.
  after: ['crypt-open'],
  async check(ctx) {
    if (ctx.found.lazy) return { done: true, detail: 'kept: the lazily detached filesystem still uses it' };
    const crypt = await inspectCrypt(ctx.probe, ctx.stack);
    if (!crypt) return { done: true, detail: 'not encrypted' };
    if (crypt.state === 'open') return { done: false, detail: `${ctx.stack.crypt?.device ?? ''} closed` };
    return { done: true, detail: crypt.state === 'closed' ? `${ctx.stack.crypt?.device ?? ''} not open` : `left alone (${crypt.detail})` };
  },
  plan(ctx) {
    const name = ctx.stack.crypt?.mapperName;
    return Promise.resolve(name ? [{ kind: 'run', cmd: { ...luksCloseCmd(name), timeoutMs: 120_000 } }] : []);
  },
};
