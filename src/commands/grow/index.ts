import { AbortError, EXIT, HbsError } from '../../core/errors.js';
import type { Executor } from '../../core/executor.js';
import type { Prompter } from '../../core/prompter.js';
import type { Reporter } from '../../core/reporter.js';
import { probeStep, type Step } from '../../core/step.js';
import { fsBytes, type FsGeometry } from '../../lib/ext4.js';
import { inspectBox } from '../../lib/inspect.js';
import { keySourceFor } from '../../lib/keys.js';
import { formatSize } from '../../lib/size.js';
import type { StepCtx } from '../../steps/context.js';
import { keyStep } from '../../steps/crypt.js';
import { finishSteps, fsSteps, growFileStep, OnlineResizeRefused, RESUME_HINT, type GrowCtx, type GrowDecision, type GrowFacts } from '../../steps/grow.js';
import { imageVerifyStep } from '../../steps/image.js';
import { lockCheckStep } from '../../steps/lock.js';
import { undoInterruptedResizeStep } from '../../steps/undo.js';
import { DRY_RUN_DONE, DRY_RUN_INTRO, executor, loadStack, machine, prompterFor, requireReady, stepCtx, type CommandIo, type CommonFlags } from '../shared.js';
import { decideGrow } from './decide.js';
import { gatherFacts } from './facts.js';
import { parseGrowSize, type SizeRequest } from './size-request.js';

export interface GrowFlags extends CommonFlags {
  size?: string;
  force?: boolean;
  offline?: boolean;
  /** Encrypted images: a key file, or the key's exact bytes on stdin (else the unattended key, else a prompt). */
  luksKeyFile?: string;
  luksKeyStdin?: boolean;
}

export interface GrowOutcome {
  path: 'online' | 'offline' | 'config-only' | 'dry-run';
  fromBytes: number;
  targetBytes: number;
  /** Undefined when it was behind a closed mapping. */
  fsBefore?: number;
  fsAfter?: FsGeometry;
  /** How long the filesystem was away (offline path with a mounted filesystem). */
  offlineMs?: number;
}

/**
 * Taking the filesystem away needs the person's yes: --offline, or a question in a terminal.
 * Without either it fails with what to pass, never waits.
 */
async function consentToOffline(flags: GrowFlags, prompter: Prompter | undefined, mp: string, reason: string, state: string): Promise<void> {
  if (flags.offline) return;
  const what = `unmount ${mp}, check and grow the filesystem offline (e2fsck -f, resize2fs) and mount it again`;
  if (!prompter) {
    throw new HbsError(`${reason}; growing it offline takes ${mp} away for a while, which needs your consent; ${state}`, EXIT.failed, `re-run with --offline to ${what}`);
  }
  const ok = await prompter.confirm({
    message: `${reason}.\nUnmount ${mp}, grow it offline and mount it again? Stop backups writing to it first.`,
    default: false,
  });
  if (!ok) throw new AbortError(`the filesystem was not taken offline; ${state}`);
}

const NO_CAP =
  'online resize of a mounted ext4 needs CAP_SYS_RESOURCE, which programs started here do not get (the kernel answers "Permission denied to resize filesystem")';

/** The box must be up to grow what is on it; `hbs mount` brings it up. */
const boxUpStep = probeStep<StepCtx>('box-up', 'The box is mounted', async (ctx) => {
  const box = await inspectBox(ctx.probe, ctx.stack);
  if (box.state === 'up') return { done: true, detail: box.detail };
  throw new HbsError(`the box is ${box.state}: ${box.detail}; the image cannot be reached, nothing was changed`, EXIT.failed, '`hbs mount` brings the stack up (`hbs status` shows each layer); then re-run');
});

/** Before anything else: the box answers, the image is the recorded one, nobody else holds it. */
const BEFORE: readonly Step<StepCtx>[] = [boxUpStep, imageVerifyStep, lockCheckStep, undoInterruptedResizeStep];

export async function growCommand(flags: GrowFlags, io: CommandIo): Promise<GrowOutcome> {
  const req = parseGrowSize(flags.size);
  const { cfg, stack } = await loadStack(flags.config);
  await requireReady('grow', Boolean(stack.crypt), io);
  const dryRun = Boolean(flags.dryRun);
  const r = io.reporter;
  const m = machine(io, Boolean(flags.verbose));
  const prompter = await prompterFor(io, flags);
  const mp = stack.fs.mountPoint;
  // Encrypted: the key as `hbs mount` gets it; a conflict between the flags is refused before any probe.
  const key = stack.crypt ? keySourceFor(stack.image.path, flags, { unattendedKeyFile: stack.crypt.unattendedKeyFile, prompter, readStdinBytes: io.readStdinBytes, defer: dryRun }) : undefined;
  const base = stepCtx(stack, io, m, key);
  const ex = executor(io, m.runner, flags, RESUME_HINT, m.deps, (err) => err instanceof OnlineResizeRefused);

  if (dryRun) r.info(DRY_RUN_INTRO);
  await ex.run(base, BEFORE);
  const facts = await gatherFacts(base);
  const decision = decideGrow(facts, cfg, req, { force: Boolean(flags.force) });
  let ctx: GrowCtx = { ...base, cfg, facts, decision, state: {} };
  const outcome: GrowOutcome = { path: dryRun ? 'dry-run' : 'online', fromBytes: decision.fromBytes, targetBytes: decision.targetBytes, fsBefore: decision.fsBytes };

  const inside = decision.fsBytes !== undefined ? formatSize(decision.fsBytes) : `behind the key until ${stack.crypt?.device ?? 'the mapping'} is open`;
  const header = facts.payloadOffset ? `, after a ${formatSize(facts.payloadOffset)} LUKS2 header` : '';
  r.info(
    `Growing ${stack.image.path}: ${formatSize(decision.fromBytes)} → ${formatSize(decision.targetBytes)} ` +
      `(ext4 inside: ${inside}${header}, ${decision.mounted ? `mounted at ${mp}` : 'not mounted'}).`,
  );
  if (decision.resume) r.info(`Resuming: ${decision.resume}.`);
  // Encrypted and mounted, --offline means offline from the start (see fsSteps).
  const offlineFirst = Boolean(facts.crypt && decision.mounted && !decision.configOnly && flags.offline);
  if (facts.crypt && decision.mounted && !decision.configOnly) {
    const cost = inodeTableBytes(facts, decision.targetBytes);
    const what = `the kernel's online resize writes the new block groups' inode tables${cost ? ` (about ${formatSize(cost)} here)` : ''}, and through LUKS every one of those bytes costs space on the box`;
    r.info(
      offlineFirst
        ? `Encrypted: growing offline (--offline): ${mp} is unmounted for the resize, which leaves the new inode tables uninitialised; online, ${what}.`
        : `Encrypted and mounted: ${what}. With --offline hbs unmounts ${mp} for the resize instead, which costs about 1 MiB.`,
    );
  }

  // Consent first (when certain to be needed), then the key: both before the first change.
  if (decision.onlineRefusalExpected && !dryRun && !decision.configOnly) await consentToOffline(flags, prompter, mp, NO_CAP, 'nothing was changed');
  const why = facts.crypt?.open ? 'growing it (`cryptsetup resize` on LUKS2 unlocks a key slot again)' : 'growing it (the mapping must be opened)';
  if (decision.keyNeeded) await ex.run(ctx, [keyStep<GrowCtx>(() => Promise.resolve(why))]);

  const timed = async (work: () => Promise<unknown>): Promise<void> => {
    const started = m.deps.now().getTime();
    await work();
    if (!dryRun) {
      outcome.path = 'offline';
      outcome.offlineMs = m.deps.now().getTime() - started;
    }
  };
  if (decision.configOnly) {
    outcome.path = dryRun ? 'dry-run' : 'config-only';
  } else if (!decision.mounted) {
    await ex.run(ctx, [growFileStep, ...fsSteps(decision, 'offline', facts.crypt)]);
    if (!dryRun) outcome.path = 'offline';
  } else if (offlineFirst) {
    await timed(() => ex.run(ctx, [growFileStep, ...fsSteps(decision, 'offline-first', facts.crypt)]));
  } else {
    try {
      await ex.run(ctx, [growFileStep, ...fsSteps(decision, 'online', facts.crypt)]);
      if (dryRun) explainFallback(r, decision, flags, mp);
      if (dryRun && decision.onlineRefusalExpected) await ex.run(ctx, fsSteps(decision, 'offline', facts.crypt));
    } catch (err) {
      if (!(err instanceof OnlineResizeRefused)) throw err;
      r.warn(`${err.message}`);
      const state = `the image file is already ${formatSize(decision.targetBytes)} (ext4 inside is still ${formatSize(decision.fsBytes ?? 0)}); re-running the same hbs grow finishes it`;
      if (!decision.onlineRefusalExpected) await consentToOffline(flags, prompter, mp, err.message, state);
      r.info(`Taking the offline path: ${mp} is unmounted for the resize and mounted again.`);
      // Look again: the file and the loop device have changed since the first look.
      const now = await gatherFacts(base);
      ctx = { ...ctx, facts: now, decision: decideGrow(now, cfg, req, { force: Boolean(flags.force) }) };
      const again = ctx;
      await timed(() => ex.run(again, fsSteps(again.decision, 'offline', now.crypt)));
    }
  }

  await ex.run(ctx, finishSteps(ctx.decision, ctx.facts.crypt));
  outcome.fsAfter = ctx.state.after;
  summary(ctx, outcome, req, ex);
  return outcome;
}

/** What the kernel's online resize writes for the new groups' inode tables (it zeroes them); undefined when unknown. */
export function inodeTableBytes(f: GrowFacts, targetBytes: number): number | undefined {
  const g = f.fs;
  if (!g?.inodesPerGroup || !g.inodeSize) return undefined;
  const groupBytes = g.blocksPerGroup * g.blockSize;
  const groups = (n: number): number => Math.ceil(n / groupBytes);
  const added = groups(targetBytes - f.payloadOffset) - groups(fsBytes(g));
  return added > 0 ? added * g.inodesPerGroup * g.inodeSize : 0;
}

function explainFallback(r: Reporter, d: GrowDecision, flags: GrowFlags, mp: string): void {
  if (!d.onlineRefusalExpected) {
    r.info(`If the kernel refuses the online resize, hbs offers the offline path: unmount ${mp}, e2fsck -f, resize2fs, mount again.`);
    return;
  }
  const consent = flags.offline ? '--offline gives it' : 'a real run needs it: --offline, or a yes at the question in a terminal';
  r.info(`The kernel will refuse that here (${NO_CAP}); then, with your consent (${consent}):`);
}

function summary(ctx: GrowCtx, o: GrowOutcome, req: SizeRequest, ex: Executor): void {
  const r = ctx.reporter;
  if (ex.dryRun) {
    r.info(DRY_RUN_DONE);
    return;
  }
  const mp = ctx.stack.fs.mountPoint;
  const after = o.fsAfter;
  const how =
    o.path === 'online'
      ? `online; ${mp} stayed mounted`
      : o.path === 'config-only'
        ? 'nothing left to resize'
        : o.offlineMs !== undefined
          ? `offline; ${mp} was unmounted for ${(o.offlineMs / 1000).toFixed(1)} s`
          : 'offline (it was not mounted)';
  r.info('');
  r.info(`Grown ${ctx.stack.image.path} (${req.relative ? `+${formatSize(req.bytes)}` : formatSize(req.bytes)} asked):`);
  r.info(`  image file  ${formatSize(o.fromBytes)} → ${formatSize(o.targetBytes)}`);
  const before = o.fsBefore ?? (ctx.state.fs ? fsBytes(ctx.state.fs) : undefined);
  if (after) r.info(`  ext4        ${before !== undefined ? formatSize(before) : '?'} → ${formatSize(fsBytes(after))} (${after.blockCount} blocks of ${after.blockSize} bytes)`);
  r.info(`  how         ${how}`);
  r.info(`Config ${ctx.stack.configPath} records ${formatSize(o.targetBytes)}.`);
}
