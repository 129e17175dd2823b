/** How progress reaches the person. Core code talks to this interface only; chalk/ora live in ui/. */
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

/** Collects everything as plain lines; used by tests and as the base for the golden dry-run. */
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
