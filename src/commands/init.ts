import { mkdtemp, stat } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { EXIT, HbsError, PreflightError, UsageError } from '../core/errors.js';
import { DryRunRunner } from '../core/dry-run-runner.js';
import { RealRunner } from '../core/real-runner.js';
import type { Runner } from '../core/runner.js';
import { fileExists } from '../lib/fs-util.js';
import { formatSize } from '../lib/size.js';
import { MIN_IMAGE_BYTES } from '../lib/validate.js';
import { checkGiven, completeAnswers, type GivenAnswers } from '../init/answers.js';
import { imagePathOf, newState, type Deps, type InitContext } from '../init/context.js';
import type { InitOptions } from '../init/options.js';
import { describeMissing, packagesFor, preflight } from '../init/preflight.js';
import type { Prompter } from '../init/prompter.js';
import { previewSteps, type CapturingReporter } from '../init/preview.js';
import { runSteps } from '../init/run-init.js';
import { askPassword, confirmChanges, decideOnExistingImage, interview, offerInstall, summaryLines, type ExistingImageIo } from '../init/wizard.js';
import { ExistingImageError } from '../steps/image.js';
import { assertCrypttabWritable } from '../steps/crypttab.js';
import { readMachineId } from '../lifecycle/context.js';
import { LockHeldError } from '../lifecycle/errors.js';
import type { Reporter } from '../ui/reporter.js';
import { askExistingPassphrase, encryptionSummary, encryptOptionsFor, resolveEncryption, type EncryptFlags } from '../init/encrypt.js';
import type { LuksKey } from '../lib/luks.js';

/** Raw flags as commander hands them over. */
export interface InitCliFlags extends EncryptFlags {
  user?: string;
  host?: string;
  port?: string;
  remotePath?: string;
  image?: string;
  size?: string;
  boxMount?: string;
  mountPoint?: string;
  sshKey?: string;
  hostKeyFingerprint?: string;
  passwordStdin?: boolean;
  fstab?: string | false;
  config?: string;
  force?: boolean;
  adopt?: boolean;
  stealLock?: boolean;
  forceFormat?: boolean;
  yes?: boolean;
  dryRun?: boolean;
  verbose?: boolean;
}

export interface InitIo {
  reporter: Reporter;
  /** Set when questions may be asked (a terminal, no --yes). */
  prompter?: () => Promise<Prompter>;
  readStdin: () => Promise<string>;
  env: NodeJS.ProcessEnv;
  uid: () => number;
  /** Runs real commands; wrapped in a dry-run runner for --dry-run. */
  runner?: RealRunner;
}

export function defaultDeps(): Deps {
  return {
    uid: () => process.getuid?.() ?? -1,
    uuid: () => randomUUID(),
    now: () => new Date(),
    hostname: () => hostname(),
    machineId: readMachineId,
    mkTempDir: (prefix) => mkdtemp(join(tmpdir(), prefix)),
  };
}

function given(flags: InitCliFlags): GivenAnswers {
  const abs = (p: string | undefined): string | undefined => (p === undefined || p === '' ? p : resolve(p));
  return {
    user: flags.user,
    host: flags.host,
    port: flags.port,
    remotePath: flags.remotePath,
    image: flags.image,
    // With --adopt the size is the adopted image's own; the placeholder is never used to create one.
    size: flags.size ?? (flags.adopt ? String(MIN_IMAGE_BYTES) : undefined),
    boxMount: flags.boxMount,
    mountPoint: flags.mountPoint,
    // Files may be given relative to the current directory; mount points must be absolute.
    sshKey: abs(flags.sshKey),
    hostKeyFingerprint: flags.hostKeyFingerprint,
    fstab: flags.fstab === false ? null : abs(flags.fstab),
    config: abs(flags.config),
  };
}

/** Reads the box password from wherever the person put it; never from argv. */
async function readPassword(flags: InitCliFlags, io: InitIo): Promise<string | undefined> {
  if (flags.passwordStdin) {
    const text = (await io.readStdin()).replace(/\r?\n$/, '');
    if (text === '') throw new UsageError('--password-stdin: nothing came in on stdin');
    return text;
  }
  const fromEnv = io.env.HBS_BOX_PASSWORD;
  // Children must not inherit it.
  delete io.env.HBS_BOX_PASSWORD;
  return fromEnv === '' ? undefined : fromEnv;
}

async function ensurePreflight(runner: Runner, io: InitIo, prompter: Prompter | undefined, needRoot: boolean): Promise<void> {
  const deps = { uid: io.uid, pathEnv: io.env.PATH ?? '', exists: (p: string) => stat(p).then(() => true, () => false) };
  let missing = await preflight(deps, { needRoot });
  const pkgs = packagesFor(missing);
  if (missing.length && prompter && pkgs.length && io.uid() === 0) {
    const cmd = ['apt-get', 'install', '-y', ...pkgs];
    if (await offerInstall(prompter, io.reporter, describeMissing(missing), cmd)) {
      await runner.run({ argv: cmd, timeoutMs: 20 * 60_000 });
      missing = await preflight(deps, { needRoot });
    }
  }
  if (missing.length) {
    throw new PreflightError(
      `this machine is not ready for hbs:\n${describeMissing(missing)}`,
      missing,
      pkgs.length ? `apt-get install ${pkgs.join(' ')}` : undefined,
    );
  }
}

export async function initCommand(flags: InitCliFlags, io: InitIo, deps: Deps = defaultDeps()): Promise<void> {
  const answers = given(flags);
  checkGiven(answers);
  const dryRun = Boolean(flags.dryRun);
  const real = io.runner ?? new RealRunner(flags.verbose ? (l) => io.reporter.line(l) : undefined);
  const prompter = io.prompter && !flags.yes ? await io.prompter() : undefined;

  await ensurePreflight(real, io, prompter, !dryRun);
  const wizardIo = prompter && { prompter, reporter: io.reporter, runner: real, mkTempDir: (p: string) => deps.mkTempDir(p) };
  const iv = wizardIo ? await interview(answers, wizardIo, { force: Boolean(flags.force) }) : undefined;
  const a = iv?.answers ?? (await completeAnswers(answers, undefined));
  const opts: InitOptions = {
    ...a,
    force: Boolean(flags.force),
    dryRun,
    verbose: Boolean(flags.verbose),
    yes: Boolean(flags.yes),
    adopt: Boolean(flags.adopt),
    forceFormat: Boolean(flags.forceFormat),
    formatConfirmed: false,
    sizeGiven: flags.size !== undefined,
    // Set once the person confirmed the takeover (confirmTakeover), never straight from the flag.
    stealLock: false,
  };
  const enc = await resolveEncryption(flags, { reporter: io.reporter, prompter, readStdin: io.readStdin, env: io.env }, {
    image: opts.image,
    config: opts.config,
    dryRun,
    passwordStdin: Boolean(flags.passwordStdin),
    adopt: opts.adopt,
    sizeGiven: opts.sizeGiven,
  });
  if (enc) opts.encrypt = enc.opts;
  // Before anything changes: paths crypttab cannot hold stop the run here, not after mkfs.
  assertCrypttabWritable(opts);
  // Filled later too, when an encrypted image turns up on the box and the person types its passphrase.
  const luksKeys: LuksKey[] = [...(enc?.keys ?? [])];
  for (const k of luksKeys) if (k.kind === 'passphrase') real.addSecret(Buffer.from(k.bytes).toString('utf8'));
  const existing: ExistingImageIo | undefined = prompter && {
    needsKey: () => !opts.encrypt || luksKeys.length === 0,
    askKey: async () => {
      const key = await askExistingPassphrase(prompter, io.reporter, real, imagePathOf(opts));
      real.addSecret(Buffer.from(key.bytes).toString('utf8'));
      luksKeys.push(key);
      opts.encrypt = { ...(opts.encrypt ?? encryptOptionsFor(opts)), passphrase: true };
    },
  };
  if (opts.forceFormat && !prompter) {
    throw new UsageError('--force-format erases an existing image: it needs its name typed at a prompt, which --yes or a missing terminal cannot do');
  }

  let password = await readPassword(flags, io);
  // Asked before the summary, so that after its "yes" nothing else is asked.
  if (prompter && iv && password === undefined && !iv.keyLogin && !dryRun) password = await askPassword(prompter, opts.user);
  if (password) real.addSecret(password);
  if (!prompter && password === undefined && !dryRun && !(await fileExists(opts.sshKey))) {
    // A new key can only reach the box with the password: say so before anything changes.
    throw new UsageError(
      `no box password given, and ${opts.sshKey} does not exist yet: the new key has to be installed on the box once with the password`,
      'pass it with --password-stdin (or in HBS_BOX_PASSWORD)',
    );
  }

  if (dryRun) {
    // Nothing is changed, so nothing is taken over: the plan shows what a confirmed takeover does.
    opts.stealLock = Boolean(flags.stealLock);
    io.reporter.info('Dry-run: lines starting with ! are changes that would be made; nothing is changed.\n');
    const ctx: InitContext = { opts, runner: new DryRunRunner(real, (l) => io.reporter.line(l)), reporter: io.reporter, deps, password, luksKeys, state: newState() };
    await runSteps(ctx);
    summary(ctx);
    return;
  }

  let runDeps = deps;
  if (prompter && iv) {
    // One screen before anything changes: every answer, and the plan --dry-run would print.
    io.reporter.info('\nWorking out the plan (read-only checks; nothing is changed)…');
    const { plan, uuids } = await previewWithDecisions(opts, deps, real, prompter, luksKeys, existing, flags);
    if (plan.changes) {
      for (const line of summaryLines(opts, iv)) io.reporter.info(line);
      plan.replay(io.reporter);
      io.reporter.info('');
      await confirmChanges(prompter);
    } else {
      io.reporter.info('Everything is set up already: nothing to change.');
    }
    io.reporter.info('');
    // The filesystem gets the UUID the summary showed.
    const made = deps;
    runDeps = { ...made, uuid: () => uuids.shift() ?? made.uuid() };
  }

  const ctx: InitContext = { opts, runner: real, reporter: io.reporter, deps: runDeps, password, luksKeys, state: newState() };
  // Finished steps are skipped on a second pass: only the step that stopped and what follows run.
  await withDecisions(() => runSteps(ctx), async (err) => {
    const again =
      (await confirmTakeover(err, flags, prompter, opts)) ||
      // Reached when the box was not mounted while planning, so the image on it could not be seen then.
      (err instanceof ExistingImageError && prompter !== undefined && (await decideOnExistingImage(err, opts, prompter, existing)));
    if (again) ctx.state = newState();
    return again;
  });
  summary(ctx);
  // Only after success: on a failure a generated key file may already guard a key slot, so it stays.
  await enc?.finish();
}

/** The dry-run plan, and the UUIDs it made up; an image found on the box is decided on here, before the summary. */
async function previewWithDecisions(
  opts: InitOptions,
  deps: Deps,
  real: Runner,
  prompter: Prompter,
  luksKeys: LuksKey[],
  existing: ExistingImageIo | undefined,
  flags: InitCliFlags,
): Promise<{ plan: CapturingReporter; uuids: string[] }> {
  const attempt = async (): Promise<{ plan: CapturingReporter; uuids: string[] }> => {
    const uuids: string[] = [];
    const uuid = (): string => {
      const u = deps.uuid();
      uuids.push(u);
      return u;
    };
    // The keys go along: an adopted image's key is checked (read-only) before the summary.
    return { plan: await previewSteps({ opts, deps: { ...deps, uuid }, luksKeys }, real), uuids };
  };
  return withDecisions(attempt, async (err) =>
    (await confirmTakeover(err, flags, prompter, opts)) || (err instanceof ExistingImageError && (await decideOnExistingImage(err, opts, prompter, existing))),
  );
}

/**
 * Runs `work`; when it stops on something the person may decide (an image already on the box,
 * another machine's lock), `decide` asks and, on a yes, `work` runs again (a few times at most).
 */
async function withDecisions<T>(work: () => Promise<T>, decide: (err: unknown) => Promise<boolean>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (attempt >= 3 || !(await decide(err))) throw err;
    }
  }
}

/** --steal-lock: another machine's lock is taken over only after the person's yes (or with --yes). */
async function confirmTakeover(err: unknown, flags: InitCliFlags, prompter: Prompter | undefined, opts: InitOptions): Promise<boolean> {
  if (!(err instanceof LockHeldError) || !flags.stealLock || opts.stealLock) return false;
  if (!flags.yes) {
    if (!prompter) throw new UsageError('--steal-lock needs a confirmation: answer the question in a terminal, or add --yes');
    const ok = await prompter.confirm({
      message: `${err.holder} holds the lock. Take it over? Only if that machine no longer has the image mounted (a reinstalled or dead server).`,
      default: false,
    });
    if (!ok) throw new HbsError('lock not taken over; the image was not mounted here', EXIT.aborted);
  }
  opts.stealLock = true;
  return true;
}

function summary(ctx: InitContext): void {
  const o = ctx.opts;
  const r = ctx.reporter;
  if (o.dryRun) {
    r.info('\nDry-run finished: nothing was changed on this machine or the box.');
    return;
  }
  r.info('');
  r.info(`The box ${o.user}@${o.host} is mounted at ${o.boxMount}.`);
  r.info(`The image ${imagePathOf(o)} (${formatSize(ctx.state.image.sizeBytes ?? ctx.state.existingConfig?.image.sizeBytes ?? o.size)}, ext4${ctx.state.image.adopted ? ', adopted' : ''}) is mounted at ${o.mountPoint}.`);
  if (o.encrypt) for (const line of encryptionSummary(o.encrypt, Boolean(ctx.state.luks?.adopted))) r.info(line);
  const crypttab = o.encrypt?.crypttab ? `; crypttab block in ${o.encrypt.crypttab}` : '';
  r.info(`Config: ${o.config}${o.fstab ? `; fstab block in ${o.fstab}` : '; no fstab entries (--no-fstab)'}${crypttab}.`);
  r.info('\nBack up with owners, groups, modes, hard links, ACLs and xattrs intact:');
  r.info(`  rsync -aHAX --numeric-ids SRC/ ${o.mountPoint}/`);
}
