import { formatCmd, type Cmd, type Runner } from './runner.js';
import { backupFile, ensureDir, writeFileAtomic } from '../lib/fs-util.js';

/** One change a step makes. A dry-run prints exactly these; a real run executes them in order. */
export type Action =
  | { kind: 'run'; cmd: Cmd }
  | { kind: 'mkdir'; path: string; mode: number }
  | { kind: 'write'; path: string; content: string; mode: number; backup?: boolean }
  /** A change that needs more than one command (e.g. a temporary mount with cleanup). */
  | { kind: 'task'; describe: readonly string[]; run: () => Promise<void> };

export type CheckResult = { done: true; detail: string } | { done: false; detail?: string };

/**
 * A provisioning step: `check` is read-only (is it already done?), `plan` lists the exact changes.
 * Steps never prompt; the context they get carries every answer already.
 */
export interface Step<C> {
  id: string;
  title: string;
  check(ctx: C): Promise<CheckResult>;
  plan(ctx: C): Promise<Action[]>;
}

export function describeAction(a: Action): string[] {
  switch (a.kind) {
    case 'run':
      return [formatCmd(a.cmd)];
    case 'mkdir':
      return [`mkdir -p -m ${a.mode.toString(8).padStart(4, '0')} ${a.path}`];
    case 'write':
      return [
        ...(a.backup ? [`back up ${a.path} (if it exists)`] : []),
        `write ${a.path} (mode ${a.mode.toString(8).padStart(4, '0')}, ${Buffer.byteLength(a.content)} bytes, atomic)`,
      ];
    case 'task':
      return [...a.describe];
  }
}

export interface ExecuteOptions {
  runner: Runner;
  /** Lines for changes that were not made (dry-run) or were made (verbose). */
  print: (line: string) => void;
  verbose: boolean;
  now: () => Date;
}

/** Applies a plan; with a dry-run runner it prints every change as `! …` and makes none. */
export async function execute(actions: readonly Action[], o: ExecuteOptions): Promise<{ backups: string[] }> {
  const backups: string[] = [];
  for (const a of actions) {
    if (a.kind === 'run') {
      await o.runner.run(a.cmd); // the runner itself prints or logs the command
      continue;
    }
    if (o.runner.dryRun) {
      for (const line of describeAction(a)) o.print(`! ${line}`);
      continue;
    }
    if (o.verbose && a.kind !== 'task') for (const line of describeAction(a)) o.print(`$ ${line}`);
    switch (a.kind) {
      case 'mkdir':
        await ensureDir(a.path, a.mode);
        break;
      case 'write':
        if (a.backup) {
          try {
            backups.push(await backupFile(a.path, o.now()));
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          }
        }
        await writeFileAtomic(a.path, a.content, a.mode);
        break;
      case 'task':
        await a.run();
        break;
    }
  }
  return { backups };
}
