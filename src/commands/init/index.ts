import { resolve } from 'node:path';
import { PreflightError, UsageError } from '../../core/errors.js';
import { Executor } from '../../core/executor.js';
import { fileExists } from '../../core/files.js';
import type { Prompter } from '../../core/prompter.js';
import { CapturingReporter, type Reporter } from '../../core/reporter.js';
import { RealRunner } from '../../core/real-runner.js';
import { quoteArg, type Runner } from '../../core/runner.js';
import { readConfig } from '../../lib/config.js';
import type { KeySource } from '../../lib/keys.js';
import type { LuksKey } from '../../lib/luks.js';
import { defaultPreflightDeps, describeMissing, packagesFor, preflight } from '../../lib/preflight.js';
import { formatSize } from '../../lib/size.js';
import { newState, stackForInit, type InitCtx, type InitOptions } from '../../steps/init/context.js';
import { assertCrypttabWritable } from '../../steps/init/crypttab.js';
import { ExistingImageError } from '../../steps/init/image.js';
import { confirmTakeover, DRY_RUN_DONE, DRY_RUN_INTRO, machine, selfCommand, type CommandIo } from '../shared.js';
import { DEFAULT_SYSTEMD_DIR, unitName } from '../../lib/systemd.js';
import type { Probes } from '../../lib/probes.js';
import { checkGiven, completeAnswers, type GivenAnswers } from './answers.js';
import { askExistingPassphrase, encryptionSummary, encryptOptionsFor, resolveEncryption, type EncryptFlags } from './encrypt.js';
import { DEFAULTS } from './options.js';
import { initStepsFor } from './steps.js';
import { inspectStack } from '../../lib/inspect.js';
import { assertNoCollision, siblingConfigs } from '../../lib/siblings.js';
import { brokenDownSteps, isBroken } from '../../steps/stack.js';
import { askPassword, confirmChanges, decideOnExistingImage, interview, offerInstall, summaryLines, type ExistingImageIo } from './wizard.js';

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
  /** false: --no-systemd. */
  systemd?: boolean;
  systemdDir?: string;
  yes?: boolean;
  dryRun?: boolean;
  verbose?: boolean;
}

function given(flags: InitCliFlags): GivenAnswers {
  const abs = (p: string | undefined): string | undefined => (p === undefined || p === '' ? p : resolve(p));
  return {
    user: flags.user,
    host: flags.host,
    port: flags.port,
    remotePath: flags.remotePath,
    image: flags.image,
    size: flags.size,
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
async function readPassword(flags: InitCliFlags, io: CommandIo, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (flags.passwordStdin) {
    const text = (await (io.readStdin?.() ?? Promise.resolve(''))).replace(/\r?\n$/, '');
    if (text === '') throw new UsageError('--password-stdin: nothing came in on stdin');
    return text;
  }
  const fromEnv = env.HBS_BOX_PASSWORD;
  // Children must not inherit it.
  delete env.HBS_BOX_PASSWORD;
  return fromEnv === '' ? undefined : fromEnv;
}

/**
 * What init needs on this machine. In a terminal (not a dry-run: a dry-run changes nothing, so it
 * only says what it would install) the missing Debian packages are offered for install.
 */
async function ensurePreflight(runner: Runner, io: CommandIo, prompter: Prompter | undefined, o: { encrypted: boolean; dryRun: boolean }): Promise<void> {
  const deps = io.preflight ?? defaultPreflightDeps(io.env);
  let missing = await preflight('init', { encrypted: o.encrypted }, deps);
  const pkgs = packagesFor(missing);
  const cmd = ['apt-get', 'install', '-y', ...pkgs];
  if (missing.length && prompter && pkgs.length && deps.uid() === 0 && !o.dryRun) {
    if (await offerInstall(prompter, io.reporter, describeMissing(missing), cmd)) {
      await runner.run({ argv: cmd, timeoutMs: 20 * 60_000 });
      missing = await preflight('init', { encrypted: o.encrypted }, deps);
    }
  }
  if (missing.length) {
    throw new PreflightError(
      `this machine is not ready for hbs init:\n${describeMissing(missing)}`,
      missing,
      pkgs.length ? `${o.dryRun ? 'a real run offers to install them in a terminal; or run ' : ''}apt-get install ${pkgs.join(' ')}` : undefined,
    );
  }
}

const HINT = 're-run `hbs init` with the same answers: finished steps are skipped';

/**
 * Where the boot unit goes: --systemd-dir, or /etc/systemd/system where systemd runs this machine.
 * Without systemd (or with --no-systemd) fstab mounts the stack at boot, without the lock.
 */
async function bootUnitFor(flags: InitCliFlags, probe: Probes): Promise<InitOptions['systemd']> {
  if (flags.systemd === false) {
    if (flags.systemdDir !== undefined) throw new UsageError('--systemd-dir and --no-systemd exclude each other');
    return null;
  }
  const running = await probe.systemdRunning();
  if (flags.systemdDir !== undefined) {
    if (flags.systemdDir === '') throw new UsageError('--systemd-dir needs a path');
    const dir = resolve(flags.systemdDir);
    return { dir, live: running && dir === DEFAULT_SYSTEMD_DIR };
  }
  return running ? { dir: DEFAULT_SYSTEMD_DIR, live: true } : null;
}

export async function initCommand(flags: InitCliFlags, io: CommandIo): Promise<void> {
  const env = io.env ?? process.env;
  const answers = given(flags);
  checkGiven(answers);
  const dryRun = Boolean(flags.dryRun);
  const m = machine(io, Boolean(flags.verbose));
  const real = m.runner;
  const prompter = io.prompter && !flags.yes ? await io.prompter() : undefined;

  await ensurePreflight(real, io, prompter, { encrypted: Boolean(flags.encrypt), dryRun });
  const wizardIo = prompter && { prompter, reporter: io.reporter, probe: m.probes, mkTempDir: (p: string) => m.deps.mkTempDir(p) };
  const iv = wizardIo ? await interview(answers, wizardIo, { force: Boolean(flags.force), adopt: Boolean(flags.adopt) }) : undefined;
  const a = iv?.answers ?? completeAnswers(answers, { adopt: Boolean(flags.adopt) });
  const opts: InitOptions = {
    ...a,
    force: Boolean(flags.force),
    adopt: Boolean(flags.adopt),
    forceFormat: Boolean(flags.forceFormat),
    formatConfirmed: false,
    sizeGiven: flags.size !== undefined,
    systemd: await bootUnitFor(flags, m.probes),
  };
  const enc = await resolveEncryption(flags, { reporter: io.reporter, prompter, readStdin: io.readStdin ?? (() => Promise.resolve('')), env }, {
    image: opts.image,
    config: opts.config,
    defer: dryRun,
    passwordStdin: Boolean(flags.passwordStdin),
    adopt: opts.adopt,
    sizeGiven: opts.sizeGiven,
  });
  if (enc) opts.encrypt = enc.opts;
  // Before anything changes: paths crypttab cannot hold stop the run here, not after mkfs.
  assertCrypttabWritable(opts);
  // Another config in the same directory with the same image, mapping, key or mount: refused here.
  await assertNoCollision(stackForInit(opts));
  // Filled later too, when an encrypted image turns up on the box and the person types its passphrase.
  const luksKeys: LuksKey[] = [...(enc?.keys ?? [])];
  const secret = (k: LuksKey): void => {
    if (k.kind === 'passphrase' && real instanceof RealRunner) real.addSecret(Buffer.from(k.bytes).toString('utf8'));
  };
  luksKeys.forEach(secret);
  const existing: ExistingImageIo | undefined = prompter && {
    needsKey: () => !opts.encrypt || luksKeys.length === 0,
    askKey: async () => {
      const key = await askExistingPassphrase(prompter, io.reporter, m.probes, `${opts.boxMount}/${opts.image}`);
      secret(key);
      luksKeys.push(key);
      opts.encrypt = { ...(opts.encrypt ?? encryptOptionsFor(opts)), passphrase: true };
    },
  };
  if (opts.forceFormat && !prompter) {
    throw new UsageError('--force-format erases an existing image: it needs its name typed at a prompt, which --yes or a missing terminal cannot do');
  }

  let password = await readPassword(flags, io, env);
  // Asked before the summary, so that after its "yes" nothing else is asked.
  if (prompter && iv && password === undefined && !iv.keyLogin && !dryRun) password = await askPassword(prompter, opts.user);
  if (password && real instanceof RealRunner) real.addSecret(password);
  if (!prompter && password === undefined && !dryRun && !(await fileExists(opts.sshKey))) {
    // A new key can only reach the box with the password: say so before anything changes.
    throw new UsageError(
      `no box password given, and ${opts.sshKey} does not exist yet: the new key has to be installed on the box once with the password`,
      'pass it with --password-stdin (or in HBS_BOX_PASSWORD)',
    );
  }

  const existingConfig = await readConfig(opts.config);
  // "hbs made this key pair" is a fact about the key: another config that uses it may record it.
  const keyMadeByHbs = (await siblingConfigs(opts.config)).some((s) => s.cfg.ssh.key === opts.sshKey && s.cfg.ssh.generated === true);
  /** A fresh context for one pass over the steps (a second pass after a decision starts over). */
  const makeCtx = (reporter: Reporter, deps = m.deps): InitCtx => {
    // The key of an image that exists (adopting): what was given; a dry-run asks nobody.
    const source: KeySource = luksKeys.length ? { kind: 'read', read: () => Promise.resolve(luksKeys[0]!) } : dryRun || prompter ? { kind: 'later' } : { kind: 'none' };
    return {
      stack: stackForInit(opts),
      probe: m.probes,
      reporter,
      deps,
      key: { source, key: luksKeys[0] },
      stealLock: Boolean(dryRun && flags.stealLock) || takeover,
      found: {},
      opts,
      password: reporter instanceof CapturingReporter ? undefined : password,
      luksKeys,
      state: { ...newState(), existingConfig, sshKeyMade: keyMadeByHbs || undefined },
      hbsCommand: selfCommand(io),
    };
  };
  let takeover = false;
  // Killed mid-run, a run may leave a dead box mount (sshfs gone) under what it had mounted: taken
  // down first, as `hbs mount` repairs it; the steps then bring it up again.
  const run = async (ctx: InitCtx, ex: Executor): Promise<unknown> =>
    ex.run(ctx, [...(isBroken(await inspectStack(ctx.probe, ctx.stack)) ? brokenDownSteps(ctx.stack) : []), ...initStepsFor(opts)]);
  const executorFor = (reporter: Reporter, asDryRun: boolean): Executor =>
    new Executor({ runner: real, reporter, dryRun: asDryRun, verbose: Boolean(flags.verbose), now: () => m.deps.now(), hint: HINT });

  if (dryRun) {
    // Nothing is changed, so nothing is taken over: the plan shows what a confirmed takeover does.
    io.reporter.info(DRY_RUN_INTRO);
    const ctx = makeCtx(io.reporter);
    await run(ctx, executorFor(io.reporter, true));
    summary(ctx, true);
    return;
  }

  let deps = m.deps;
  if (prompter && iv) {
    // One screen before anything changes: every answer, and the plan --dry-run would print.
    io.reporter.info('\nWorking out the plan (read-only checks; nothing is changed)…');
    const { plan, uuids } = await withDecisions(
      async () => {
        const made: string[] = [];
        const plan = new CapturingReporter();
        const ctx = makeCtx(plan, { ...m.deps, uuid: () => (made.push(m.deps.uuid()), made.at(-1)!) });
        await run(ctx, executorFor(plan, true));
        return { plan, uuids: made };
      },
      async (err) =>
        (await confirmTakeover(err, flags, prompter, TAKEOVER) && (takeover = true)) || (err instanceof ExistingImageError && (await decideOnExistingImage(err, opts, prompter, existing))),
    );
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
    deps = { ...m.deps, uuid: () => uuids.shift() ?? m.deps.uuid() };
  }

  let ctx = makeCtx(io.reporter, deps);
  // Finished steps are skipped on a second pass: only the step that stopped and what follows run.
  await withDecisions(
    () => run(ctx, executorFor(io.reporter, false)),
    async (err) => {
      const again =
        (await confirmTakeover(err, flags, prompter, TAKEOVER) && (takeover = true)) ||
        // Reached when the box was not mounted while planning, so the image on it could not be seen then.
        (err instanceof ExistingImageError && prompter !== undefined && (await decideOnExistingImage(err, opts, prompter, existing)));
      if (again) ctx = makeCtx(io.reporter, deps);
      return again;
    },
  );
  summary(ctx, false);
  // Only after success: on a failure a generated key file may already guard a key slot, so it stays.
  await enc?.finish();
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

const TAKEOVER = 'Take it over? Only if that machine no longer has the image mounted (a reinstalled or dead server).';

function summary(ctx: InitCtx, dryRun: boolean): void {
  const o = ctx.opts;
  const r = ctx.reporter;
  if (dryRun) {
    r.info(DRY_RUN_DONE);
    return;
  }
  r.info('');
  r.info(`The box ${o.user}@${o.host} is mounted at ${o.boxMount}.`);
  r.info(`The image ${ctx.stack.image.path} (${formatSize(ctx.state.image.sizeBytes ?? ctx.state.existingConfig?.image.sizeBytes ?? o.size ?? 0)}, ext4${ctx.state.image.adopted ? ', adopted' : ''}) is mounted at ${o.mountPoint}.`);
  if (o.encrypt) for (const line of encryptionSummary(o.encrypt, Boolean(ctx.state.luks?.adopted))) r.info(line);
  const crypttab = o.encrypt?.crypttab ? `; crypttab block in ${o.encrypt.crypttab}` : '';
  r.info(`Config: ${o.config}${o.fstab ? `; fstab block in ${o.fstab}` : '; no fstab entries (--no-fstab)'}${crypttab}.`);
  r.info(
    o.systemd
      ? `At boot, ${unitName(o.config)} brings it up the way \`hbs mount\` does (with the lock); other units that need it: Requires= and After= that unit.`
      : `At boot, ${o.fstab ? 'the fstab lines bring it up (without the lock: `hbs mount` takes it)' : 'nothing brings it up: run `hbs mount`'}; no systemd unit (--no-systemd, or this machine does not run systemd).`,
  );
  const hbs = `hbs${resolve(o.config) === DEFAULTS.config ? '' : ` --config ${quoteArg(resolve(o.config))}`}`;
  r.info(`\nBack up into ${o.mountPoint}/snapshots with owners, groups, modes, hard links, ACLs and xattrs intact (docs/backup.md):`);
  r.info(`  ${hbs} backup --source /etc --source /home --keep-daily 7 --keep-weekly 4`);
  r.info(`  ${hbs} backup --install-timer   (then every day, by systemd)`);
}
