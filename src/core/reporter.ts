/**
 * How progress reaches the person. Everything below the command line talks to this interface
 * only; the terminal implementation (chalk, ora) lives in ui/, where only cli.ts picks it.
 */
export interface Reporter {
  stepStart(title: string): void;
  stepDone(title: string, detail?: string): void;
  stepSkipped(title: string, detail: string): void;
  stepFailed(title: string): void;
  /** A line belonging to the current step: a `$ cmd` (verbose) or `! cmd` (dry-run) line, or a note. */
  line(text: string): void;
  info(text: string): void;
  warn(text: string): void;
  /** Transient progress of the current step (e.g. "e2fsck pass 1 of 5, 40%"); may be shown or dropped. */
  progress?(text: string): void;
}

/** Collects everything as plain lines: for `--json` (nothing on the terminal), tests and golden transcripts. */
export class MemoryReporter implements Reporter {
  readonly lines: string[] = [];
  stepStart(): void {}
  stepDone(title: string, detail?: string): void {
    this.lines.push(`✔ ${title}${detail ? ` — ${detail}` : ''}`);
  }
  stepSkipped(title: string, detail: string): void {
    this.lines.push(`• ${title} — ${detail}`);
  }
  stepFailed(title: string): void {
    this.lines.push(`✖ ${title}`);
  }
  line(text: string): void {
    this.lines.push(`  ${text}`);
  }
  info(text: string): void {
    this.lines.push(text);
  }
  warn(text: string): void {
    this.lines.push(`! ${text}`);
  }
}

type Report =
  | { kind: 'stepDone'; title: string; detail?: string }
  | { kind: 'stepSkipped'; title: string; detail: string }
  | { kind: 'stepFailed'; title: string }
  | { kind: 'line' | 'info' | 'warn'; text: string };

/**
 * Keeps what a run reports, to be shown later (the wizard's summary shows the dry-run plan).
 * Spinner starts and progress are dropped: replayed, every step is already finished.
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
