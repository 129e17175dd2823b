import { DryRunRunner } from '../core/dry-run-runner.js';
import type { Step } from '../core/plan.js';
import type { Runner } from '../core/runner.js';
import type { Reporter } from '../ui/reporter.js';
import { newState, type InitContext } from './context.js';
import { initStepsFor, runSteps } from './run-init.js';

type Report =
  | { kind: 'stepDone'; title: string; detail?: string }
  | { kind: 'stepSkipped'; title: string; detail: string }
  | { kind: 'stepFailed'; title: string }
  | { kind: 'line' | 'info' | 'warn'; text: string };

/**
 * Keeps what a run reports, to be shown later (inside the summary). Spinner starts and progress
 * are dropped: replayed, every step is already finished.
 */
export class CapturingReporter implements Reporter {
  readonly reports: Report[] = [];
  stepStart(): void {}
  stepDone(title: string, detail?: string): void {
    this.reports.push({ kind: 'stepDone', title, detail });
  }
  stepSkipped(title: string, detail: string): void {
    this.reports.push({ kind: 'stepSkipped', title, detail });
  }
  stepFailed(title: string): void {
    this.reports.push({ kind: 'stepFailed', title });
  }
  line(text: string): void {
    this.reports.push({ kind: 'line', text });
  }
  info(text: string): void {
    this.reports.push({ kind: 'info', text });
  }
  warn(text: string): void {
    this.reports.push({ kind: 'warn', text });
  }

  /** Whether any step would change something (a dry-run reports those as done). */
  get changes(): boolean {
    return this.reports.some((r) => r.kind === 'stepDone');
  }

  replay(to: Reporter): void {
    for (const r of this.reports) {
      if (r.kind === 'stepDone') to.stepDone(r.title, r.detail);
      else if (r.kind === 'stepSkipped') to.stepSkipped(r.title, r.detail);
      else if (r.kind === 'stepFailed') to.stepFailed(r.title);
      else to[r.kind](r.text);
    }
  }
}

/**
 * The plan exactly as `--dry-run` prints it: every step through a dry-run runner (read-only probes
 * run, changes are only described), with a state of its own so the real run starts fresh.
 */
export async function previewSteps(
  base: Pick<InitContext, 'opts' | 'deps'> & { luksKeys?: InitContext['luksKeys'] },
  real: Runner,
  steps: readonly Step<InitContext>[] = initStepsFor(base.opts),
): Promise<CapturingReporter> {
  const reporter = new CapturingReporter();
  const ctx: InitContext = {
    ...base,
    runner: new DryRunRunner(real, (l) => reporter.line(l)),
    reporter,
    // The dry-run plan of the key upload needs no password; it is given to the real run only.
    password: undefined,
    state: newState(),
  };
  await runSteps(ctx, steps);
  return reporter;
}
