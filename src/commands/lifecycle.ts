import { mkdtemp } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { EXIT, HbsError, UsageError } from '../core/errors.js';
import { DryRunRunner } from '../core/dry-run-runner.js';
import { RealRunner } from '../core/real-runner.js';
import type { Runner } from '../core/runner.js';
import { imagePath, readConfig, type Config } from '../lib/config.js';
import { passphraseKey, readKeyFile } from '../lib/luks.js';
import type { Prompter } from '../init/prompter.js';
import { readMachineId, type LifecycleContext, type LifecycleDeps } from '../lifecycle/context.js';
import { LockHeldError, mountStack } from '../lifecycle/mount-stack.js';
import { collectStatus, type StatusReport } from '../lifecycle/status.js';
import { umountStack } from '../lifecycle/umount-stack.js';
import type { Reporter } from '../ui/reporter.js';

export interface LifecycleFlags {
  config: string;
  dryRun?: boolean;
  verbose?: boolean;
  force?: boolean;
  stealLock?: boolean;
  yes?: boolean;
  /** Encrypted images: a key file, or the key's exact bytes on stdin (else the config's unattended key, else a prompt). */
  luksKeyFile?: string;
  luksKeyStdin?: boolean;
}

export interface LifecycleIo {
  reporter: Reporter;
  prompter?: () => Promise<Prompter>;
  runner?: Runner;
  deps?: LifecycleDeps;
  /** Raw stdin (for --luks-key-stdin). */
  readStdinBytes?: () => Promise<Buffer>;
}

/** Where an encrypted image's key comes from, in this order: --luks-key-file, --luks-key-stdin, the unattended key, a prompt. */
export function keySource(cfg: Config, flags: LifecycleFlags, io: LifecycleIo): LifecycleContext['luks'] {
  if (!cfg.encryption) return undefined;
  if (flags.luksKeyFile && flags.luksKeyStdin) throw new UsageError('--luks-key-file and --luks-key-stdin exclude each other');
  if (flags.luksKeyFile) {
    const path = resolve(flags.luksKeyFile);
    return { key: () => readKeyFile(path) };
  }
  if (flags.luksKeyStdin) {
    const read = io.readStdinBytes;
    if (!read) throw new UsageError('--luks-key-stdin: no stdin here');
    return {
      key: async () => {
        const bytes = await read();
        if (bytes.length === 0) throw new UsageError('--luks-key-stdin: nothing came in on stdin');
        return { kind: 'keyfile', bytes, label: 'key from stdin' };
      },
    };
  }
  const unattended = cfg.encryption.unattendedKeyFile;
  if (unattended) return { key: () => readKeyFile(unattended) };
  if (!io.prompter) return {};
  const prompter = io.prompter;
  return {
    canRetry: true,
    key: async (attempt) => {
      const p = await prompter();
      const pw = await p.password({ message: `LUKS passphrase for ${imagePath(cfg)}${attempt > 1 ? ` (attempt ${attempt} of 3)` : ''}:` });
      return passphraseKey(pw);
    },
  };
}

export function defaultLifecycleDeps(): LifecycleDeps {
  return { now: () => new Date(), hostname: () => hostname(), machineId: readMachineId, pid: process.pid };
}

async function context(flags: LifecycleFlags, io: LifecycleIo): Promise<LifecycleContext> {
  const configPath = resolve(flags.config);
  const cfg = await readConfig(configPath);
  if (!cfg) throw new UsageError(`no config at ${configPath}`, 'run `hbs init` first, or pass --config');
  const real = io.runner ?? new RealRunner(flags.verbose ? (l) => io.reporter.line(l) : undefined);
  const runner = flags.dryRun ? new DryRunRunner(real, (l) => io.reporter.line(l)) : real;
  return {
    cfg,
    configPath,
    runner,
    reporter: io.reporter,
    deps: io.deps ?? defaultLifecycleDeps(),
    opts: { force: Boolean(flags.force), stealLock: false, verbose: Boolean(flags.verbose) },
    luks: keySource(cfg, flags, io),
  };
}

/** File-system errors (EACCES on the box, …) become an operation failure with the step named. */
async function named<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof HbsError || !(err instanceof Error)) throw err;
    throw new HbsError(`${what}: ${err.message}`, EXIT.failed, '`hbs status` shows each layer; re-running is safe');
  }
}

export async function mountCommand(flags: LifecycleFlags, io: LifecycleIo): Promise<void> {
  const ctx = await context(flags, io);
  try {
    await named('mount', () => mountStack(ctx));
  } catch (err) {
    if (!(err instanceof LockHeldError) || !flags.stealLock) throw err;
    // Taking over another machine's lock needs the person's explicit yes (or --yes with --steal-lock).
    if (!flags.yes) {
      const prompter = io.prompter ? await io.prompter() : undefined;
      if (!prompter) throw new UsageError('--steal-lock needs a confirmation: answer the question in a terminal, or add --yes');
      const ok = await prompter.confirm({
        message: `${err.holder} holds the lock. Mount here anyway? Only if that machine no longer has it mounted.`,
        default: false,
      });
      if (!ok) throw new HbsError('lock not taken over; nothing was changed', EXIT.aborted);
    }
    ctx.opts.stealLock = true;
    await named('mount', () => mountStack(ctx));
  }
}

export async function umountCommand(flags: LifecycleFlags, io: LifecycleIo): Promise<void> {
  const ctx = await context(flags, io);
  await named('umount', () => umountStack(ctx));
}

/** Prints the status; returns the report so the caller decides the exit code. */
export async function statusCommand(flags: LifecycleFlags, io: LifecycleIo): Promise<StatusReport> {
  return collectStatus(await context(flags, io), () => mkdtemp(join(tmpdir(), 'hbs-status-')));
}
