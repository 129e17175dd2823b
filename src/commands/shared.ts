import { randomUUID } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, HbsError, PreflightError, UsageError } from '../core/errors.js';
import { Executor } from '../core/executor.js';
import type { Prompter } from '../core/prompter.js';
import { RealRunner } from '../core/real-runner.js';
import type { Reporter } from '../core/reporter.js';
import type { Runner } from '../core/runner.js';
import { readConfig, type Config } from '../lib/config.js';
import { describeMissing, packagesFor, preflight, defaultPreflightDeps, type PreflightCommand, type PreflightDeps } from '../lib/preflight.js';
import { commandProbes, type Probes } from '../lib/probes.js';
import { stackFromConfig, type Stack } from '../lib/stack.js';
import type { KeySource } from '../lib/keys.js';
import type { Deps, StepCtx } from '../steps/context.js';
import { LockHeldError } from '../steps/lock.js';

/** What a command gets from the entry point (cli.ts); tests hand in their own. */
export interface CommandIo {
  reporter: Reporter;
  /** Set when questions may be asked (a terminal). */
  prompter?: () => Promise<Prompter>;
  /** stdin as text (passwords) and as raw bytes (keys). */
  readStdin?: () => Promise<string>;
  readStdinBytes?: () => Promise<Buffer>;
  env?: NodeJS.ProcessEnv;
  /** Runs the commands; a RealRunner unless a test gives one. */
  runner?: Runner;
  /** The machine as steps see it; probes through the runner unless a test gives them. */
  probes?: Probes;
  deps?: Deps;
  preflight?: PreflightDeps;
  /** How to start this hbs again (node and the CLI): what the boot unit runs. */
  self?: readonly string[];
}

/** This node and this CLI, as a boot unit must start them. */
export function selfCommand(io: CommandIo): readonly string[] {
  return io.self ?? [process.execPath, realpathSync(process.argv[1] ?? 'hbs')];
}

export interface CommonFlags {
  config: string;
  dryRun?: boolean;
  verbose?: boolean;
  yes?: boolean;
}

export async function readMachineId(): Promise<string> {
  for (const path of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    try {
      const id = (await readFile(path, 'utf8')).trim();
      if (id) return id;
    } catch {
      // try the next one
    }
  }
  return 'unknown';
}

export function defaultDeps(): Deps {
  return {
    now: () => new Date(),
    hostname: () => hostname(),
    machineId: readMachineId,
    pid: process.pid,
    uuid: () => randomUUID(),
    // The pid in the name: what a killed run leaves behind is recognised and cleaned up (steps/leftovers.ts).
    mkTempDir: (prefix) => mkdtemp(join(tmpdir(), `${prefix}${process.pid}-`)),
    sleep: async (ms) => {
      await sleep(ms);
    },
  };
}

/** The config, and the stack it describes. */
export async function loadStack(configPath: string): Promise<{ cfg: Config; stack: Stack }> {
  const path = resolve(configPath);
  const cfg = await readConfig(path);
  if (!cfg) throw new UsageError(`no config at ${path}`, 'run `hbs init` first, or pass --config');
  return { cfg, stack: stackFromConfig(cfg, path) };
}

/** The machine's collaborators for one command run: runner, probes and deps (real unless a test gave them). */
export function machine(io: CommandIo, verbose: boolean): { runner: Runner; probes: Probes; deps: Deps } {
  const runner = io.runner ?? new RealRunner(verbose ? (l) => io.reporter.line(l) : undefined);
  const deps = io.deps ?? defaultDeps();
  return { runner, deps, probes: io.probes ?? commandProbes(runner, (p) => deps.mkTempDir(p)) };
}

export function stepCtx(stack: Stack, io: CommandIo, m: { probes: Probes; deps: Deps }, key: KeySource = { kind: 'none' }): StepCtx {
  return { stack, probe: m.probes, reporter: io.reporter, deps: m.deps, key: { source: key }, stealLock: false, found: {} };
}

export function executor(io: CommandIo, runner: Runner, flags: { dryRun?: boolean; verbose?: boolean }, hint: string, deps: Deps, passThrough?: (err: unknown) => boolean): Executor {
  return new Executor({ runner, reporter: io.reporter, dryRun: Boolean(flags.dryRun), verbose: Boolean(flags.verbose), now: () => deps.now(), hint, passThrough });
}

/** Stops before anything when this machine lacks what the command needs (a dry-run needs the same). */
export async function requireReady(command: PreflightCommand, encrypted: boolean, io: CommandIo): Promise<void> {
  const missing = await preflight(command, { encrypted }, io.preflight ?? defaultPreflightDeps(io.env));
  if (missing.length === 0) return;
  const pkgs = packagesFor(missing);
  throw new PreflightError(`this machine is not ready for hbs ${command}:\n${describeMissing(missing)}`, missing, pkgs.length ? `apt-get install ${pkgs.join(' ')}` : undefined);
}

/** The person's answers, asked only in a terminal and never with --yes. */
export async function prompterFor(io: CommandIo, flags: { yes?: boolean }): Promise<Prompter | undefined> {
  return io.prompter && !flags.yes ? io.prompter() : undefined;
}

/**
 * --steal-lock: another machine's lock is taken over only after the person's yes (or with --yes).
 * Runs `work`; when it stops on another machine's lock and --steal-lock was given, asks, and on a
 * yes runs it again with the takeover allowed. A dry-run takes nothing over, so its plan simply
 * shows what a confirmed takeover does.
 */
export async function withLockTakeover<T>(
  ctx: StepCtx,
  flags: { stealLock?: boolean; yes?: boolean; dryRun?: boolean },
  prompter: Prompter | undefined,
  work: () => Promise<T>,
  question = 'Mount here anyway? Only if that machine no longer has it mounted.',
): Promise<T> {
  if (flags.dryRun) ctx.stealLock = Boolean(flags.stealLock);
  try {
    return await work();
  } catch (err) {
    if (ctx.stealLock || !(await confirmTakeover(err, flags, prompter, question))) throw err;
    ctx.stealLock = true;
    return work();
  }
}

/**
 * The one question before another machine's lock is taken over: only with --steal-lock, and only
 * after a yes in a terminal (or --yes). True when the person said yes; false when `err` is not about
 * a lock or --steal-lock was not given (the caller rethrows).
 */
export async function confirmTakeover(err: unknown, flags: { stealLock?: boolean; yes?: boolean }, prompter: Prompter | undefined, question: string): Promise<boolean> {
  if (!(err instanceof LockHeldError) || !flags.stealLock) return false;
  if (!flags.yes) {
    if (!prompter) throw new UsageError('--steal-lock needs a confirmation: answer the question in a terminal, or add --yes');
    const ok = await prompter.confirm({ message: `${err.holder} holds the lock. ${question}`, default: false });
    if (!ok) throw new HbsError('lock not taken over; nothing was changed', EXIT.aborted);
  }
  return true;
}

export const DRY_RUN_INTRO = 'Dry-run: lines starting with ! are changes that would be made; nothing is changed.\n';
export const DRY_RUN_DONE = '\nDry-run finished: nothing was changed on this machine or the box.';
