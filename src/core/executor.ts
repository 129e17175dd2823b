import { lstat, rename, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { describeAction, type Action } from './action.js';
import { mergeBlock, removeBlock } from './block.js';
import { EXIT, HbsError } from './errors.js';
import { backupFile, ensureDir, modeOf, readTextIfExists, replaceFile, writeFileAtomic, writeFileExclusive } from './files.js';
import type { Reporter } from './reporter.js';
import { CommandError, type Runner } from './runner.js';
import type { Check, Step } from './step.js';

export interface StepOutcome {
  id: string;
  title: string;
  status: 'done' | 'already' | 'planned';
  detail?: string;
}

export interface ExecutorOptions {
  /** Runs the commands of plans (and tasks). Probes have their own read-only view of it. */
  runner: Runner;
  reporter: Reporter;
  /** Print every change as `! …` instead of making it. The only place hbs knows about dry-runs. */
  dryRun: boolean;
  /** Show file changes as `$ …` lines as they are made (commands are logged by the runner). */
  verbose: boolean;
  now: () => Date;
  /** What to tell the person when a step fails. */
  hint: string;
  /** Errors that go up untouched (the caller handles them, e.g. a refused online resize). */
  passThrough?: (err: unknown) => boolean;
}

/**
 * The one loop every command's steps go through: check (already so?), else plan, then apply the
 * plan and verify it — or, in a dry-run, print the plan. A step whose check needs the changes of a
 * step that was only planned gets its `expect` instead. A failure names the step, the command and
 * the tail of its stderr.
 */
export class Executor {
  /** Steps whose changes were printed, not made (dry-run). */
  private readonly planned = new Set<string>();

  constructor(private readonly o: ExecutorOptions) {}

  get dryRun(): boolean {
    return this.o.dryRun;
  }

  async run<C>(ctx: C, steps: readonly Step<C>[]): Promise<StepOutcome[]> {
    const outcomes: StepOutcome[] = [];
    for (const step of steps) outcomes.push(await this.runStep(ctx, step));
    return outcomes;
  }

  private async runStep<C>(ctx: C, step: Step<C>): Promise<StepOutcome> {
    const r = this.o.reporter;
    r.stepStart(step.title);
    try {
      const pending = (step.after ?? []).filter((id) => this.planned.has(id));
      const c: Check = pending.length ? await (step.expect?.(ctx, pending) ?? Promise.resolve({ done: false as const })) : await step.check(ctx);
      if (c.done) {
        r.stepSkipped(step.title, c.detail);
        return { id: step.id, title: step.title, status: 'already', detail: c.detail };
      }
      const actions = await step.plan(ctx, pending);
      if (this.o.dryRun) {
        for (const a of actions) for (const line of describeAction(a)) r.line(`! ${line}`);
        if (actions.length) this.planned.add(step.id);
        r.stepDone(step.title, actions.length ? 'would change (not done: dry-run)' : c.detail);
        return { id: step.id, title: step.title, status: actions.length ? 'planned' : 'already', detail: c.detail };
      }
      for (const a of actions) await this.apply(a);
      await step.verify?.(ctx);
      r.stepDone(step.title, c.detail);
      return { id: step.id, title: step.title, status: 'done', detail: c.detail };
    } catch (err) {
      r.stepFailed(step.title);
      throw this.o.passThrough?.(err) ? err : stepError(step.title, err, this.o.hint);
    }
  }

  private async apply(a: Action): Promise<void> {
    const log = (): void => {
      if (this.o.verbose && a.kind !== 'run' && a.kind !== 'task') for (const line of describeAction(a)) this.o.reporter.line(`$ ${line}`);
    };
    switch (a.kind) {
      case 'run': {
        const result = await this.o.runner.run(a.cmd); // the runner logs `$ cmd` itself
        await a.then?.(result, this.o.runner);
        return;
      }
      case 'mkdir':
        log();
        await ensureDir(a.path, a.mode);
        return;
      case 'write':
        log();
        if (a.backup) await this.backup(a.path);
        if (a.how === 'create') await writeFileExclusive(a.path, a.content, a.mode);
        else if (a.how === 'replace') await replaceFile(a.path, a.content, a.mode);
        else if (a.how === 'in-place') await writeFile(a.path, a.content, { flag: 'r+' });
        else await writeFileAtomic(a.path, a.content, a.mode);
        return;
      case 'block': {
        log();
        const text = await readTextIfExists(a.path);
        if (text === undefined && a.lines === null) return;
        const next = a.lines === null ? removeBlock(text ?? '', a.id) : mergeBlock(text ?? '', a.id, a.lines);
        if (next === text) return;
        await a.validate?.run(text ?? '', next);
        const mode = (await modeOf(a.path)) ?? a.mode; // an existing file keeps its own mode
        if (text !== undefined) await this.backup(a.path);
        await writeFileAtomic(a.path, next, mode);
        return;
      }
      case 'remove':
        log();
        if (a.dir === 'empty') await rmdir(a.path).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
        else await rm(a.path, { force: true, recursive: a.dir === 'tree' });
        return;
      case 'symlink': {
        log();
        await ensureDir(dirname(a.path), 0o755);
        const st = await lstat(a.path).catch(() => undefined);
        if (st && !st.isSymbolicLink()) throw new Error(`${a.path} exists and is not a symbolic link; hbs leaves it alone`);
        // Made beside and renamed over the old one: whoever follows the link sees the old target or the new, never none.
        const tmp = `${a.path}.hbs-tmp-${process.pid}`;
        await rm(tmp, { force: true });
        await symlink(a.target, tmp);
        await rename(tmp, a.path);
        return;
      }
      case 'task':
        await a.run(this.o.runner);
        return;
    }
  }

  private async backup(path: string): Promise<void> {
    if ((await modeOf(path)) === undefined) return;
    this.o.reporter.line(`backup: ${await backupFile(path, this.o.now())}`);
  }
}

function stepError(title: string, err: unknown, hint: string): unknown {
  if (err instanceof CommandError) return new HbsError(`${title}: ${err.message}`, EXIT.failed, hint, err.tail());
  if (err instanceof HbsError) return err;
  if (err instanceof Error) return new HbsError(`${title}: ${err.message}`, EXIT.failed, hint);
  return err;
}
