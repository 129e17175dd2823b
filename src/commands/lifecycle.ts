import { mkdtemp } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { EXIT, HbsError, UsageError } from '../core/errors.js';
import { DryRunRunner } from '../core/dry-run-runner.js';
import { RealRunner } from '../core/real-runner.js';
import type { Runner } from '../core/runner.js';
import { readConfig } from '../lib/config.js';
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
}

export interface LifecycleIo {
  reporter: Reporter;
  prompter?: () => Promise<Prompter>;
  runner?: Runner;
  deps?: LifecycleDeps;
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
