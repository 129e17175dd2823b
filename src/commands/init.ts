import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { AbortError, PreflightError, UsageError } from '../core/errors.js';
import { DryRunRunner } from '../core/dry-run-runner.js';
import { RealRunner } from '../core/real-runner.js';
import type { Runner } from '../core/runner.js';
import { knownHostsName, pinKey, type HostKey } from '../lib/host-keys.js';
import { keyLoginWorks } from '../lib/ssh.js';
import { fileExists } from '../lib/fs-util.js';
import { formatSize } from '../lib/size.js';
import { MIN_IMAGE_BYTES } from '../lib/validate.js';
import { checkGiven, completeAnswers, type GivenAnswers } from '../init/answers.js';
import { boxConn, imagePathOf, knownHostsPath, newState, type Deps, type InitContext } from '../init/context.js';
import type { InitOptions } from '../init/options.js';
import { describeMissing, packagesFor, preflight } from '../init/preflight.js';
import type { Prompter } from '../init/prompter.js';
import { runSteps } from '../init/run-init.js';
import { readPinned, scanHostKeys } from '../steps/host-key.js';
import { ExistingImageError } from '../steps/image.js';
import { readMachineId } from '../lifecycle/context.js';
import type { Reporter } from '../ui/reporter.js';

/** Raw flags as commander hands them over. */
export interface InitCliFlags {
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
    io.reporter.warn(`missing on this machine:\n${describeMissing(missing)}`);
    const cmd = ['apt-get', 'install', '-y', ...pkgs];
    if (await prompter.confirm({ message: `Install them now with: ${cmd.join(' ')}?`, default: true })) {
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

/** Shows the host key and asks for an explicit yes; returns the confirmed fingerprint. */
async function confirmHostKey(runner: Runner, o: InitOptions, prompter: Prompter, reporter: Reporter): Promise<HostKey> {
  const keys = await scanHostKeys(runner, o.host, o.port);
  const key = keys[0] as HostKey;
  reporter.info(`The box ${o.host} (port ${o.port}) offers this ${key.type} host key:\n\n    ${key.fingerprint}\n`);
  reporter.info('Compare it with the fingerprint your provider shows for the box before you accept it.');
  const ok = await prompter.confirm({ message: 'Is this the fingerprint your provider shows?', default: false });
  if (!ok) throw new AbortError('host key not confirmed; nothing was changed');
  return key;
}

/** Whether the person will need to give the password: is key login already set up? Read-only. */
async function keyLoginReady(runner: Runner, o: InitOptions, key: HostKey | undefined): Promise<boolean> {
  if (!(await fileExists(o.sshKey))) return false;
  const conn = boxConn(o);
  if (!key) return (await keyLoginWorks(runner, conn)).ok;
  // Not pinned yet: probe with a throwaway known_hosts holding the confirmed key.
  const dir = await mkdtemp(join(tmpdir(), 'hbs-probe-'));
  try {
    const kh = join(dir, 'known_hosts');
    await writeFile(kh, pinKey('', knownHostsName(o.host, o.port), key), { mode: 0o600 });
    return (await keyLoginWorks(runner, { ...conn, knownHosts: kh })).ok;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function initCommand(flags: InitCliFlags, io: InitIo, deps: Deps = defaultDeps()): Promise<void> {
  const answers = given(flags);
  checkGiven(answers);
  const dryRun = Boolean(flags.dryRun);
  const real = io.runner ?? new RealRunner(flags.verbose ? (l) => io.reporter.line(l) : undefined);
  const runner: Runner = dryRun ? new DryRunRunner(real, (l) => io.reporter.line(l)) : real;
  const prompter = io.prompter && !flags.yes ? await io.prompter() : undefined;

  await ensurePreflight(real, io, prompter, !dryRun);
  const a = await completeAnswers(answers, prompter);
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
  };
  if (opts.forceFormat && !prompter) {
    throw new UsageError('--force-format erases an existing image: it needs its name typed at a prompt, which --yes or a missing terminal cannot do');
  }

  let password = await readPassword(flags, io);
  if (password) real.addSecret(password);

  if (prompter && !opts.hostKeyFingerprint && (await readPinned(knownHostsPath(opts.config), opts.host, opts.port)).length === 0) {
    opts.hostKeyFingerprint = (await confirmHostKey(real, opts, prompter, io.reporter)).fingerprint;
  }
  if (prompter && password === undefined && !dryRun) {
    const pinned = await readPinned(knownHostsPath(opts.config), opts.host, opts.port);
    const confirmed = pinned.length ? undefined : (await scanHostKeys(real, opts.host, opts.port)).find((k) => k.fingerprint === opts.hostKeyFingerprint);
    if (!(await keyLoginReady(real, opts, confirmed))) {
      password = await prompter.password({ message: `Password of ${opts.user} (used once, to install the key)` });
      if (password) real.addSecret(password);
    }
  }

  const ctx: InitContext = { opts, runner, reporter: io.reporter, deps, password, state: newState() };
  if (dryRun) io.reporter.info('Dry-run: lines starting with ! are changes that would be made; nothing is changed.\n');
  try {
    await runSteps(ctx);
  } catch (err) {
    if (!(err instanceof ExistingImageError) || !prompter || dryRun) throw err;
    if (!(await decideOnExistingImage(err, opts, prompter))) throw err;
    // Finished steps are skipped on the second pass; only the image and what follows run.
    ctx.state = newState();
    await runSteps(ctx);
  }
  summary(ctx);
}

/** Asks what to do with an image that is already on the box; true to go on (adopt or erase). */
async function decideOnExistingImage(err: ExistingImageError, opts: InitOptions, prompter: Prompter): Promise<boolean> {
  const name = opts.image;
  if (opts.forceFormat) {
    const typed = await prompter.input({ message: `${err.message}.\nThis ERASES it. Type the image name (${name}) to format it anew, anything else to stop` });
    if (typed !== name) throw new AbortError(`"${typed}" is not "${name}"; nothing was erased`);
    opts.formatConfirmed = true;
    return true;
  }
  if (err.kind === 'adoptable' && !opts.adopt) {
    const ok = await prompter.confirm({ message: `${err.message}.\nAdopt it as it is (no mkfs, the data stays)?`, default: true });
    if (!ok) throw new AbortError('not adopted; the image was left as it is');
    opts.adopt = true;
    return true;
  }
  return false;
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
  r.info(`Config: ${o.config}${o.fstab ? `; fstab block in ${o.fstab}` : '; no fstab entries (--no-fstab)'}.`);
  r.info('\nBack up with owners, groups, modes, hard links, ACLs and xattrs intact:');
  r.info(`  rsync -aHAX --numeric-ids SRC/ ${o.mountPoint}/`);
}

