import chalk, { Chalk } from 'chalk';
import ora, { type Ora } from 'ora';
import type { Reporter } from '../core/reporter.js';

/**
 * Spinners on a TTY (off in CI, with --verbose, and when stdout is not a terminal); plain lines
 * otherwise. Colour follows chalk's detection, which honours NO_COLOR and a missing TTY.
 */
export class TerminalReporter implements Reporter {
  private spinner: Ora | undefined;
  private readonly c: typeof chalk;
  private readonly spin: boolean;
  private title = '';

  constructor(opts: { spinners: boolean; stream?: NodeJS.WriteStream }) {
    const stream = opts.stream ?? process.stdout;
    const colour = Boolean(stream.isTTY) && !('NO_COLOR' in process.env) ? chalk.level || 1 : 0;
    this.c = new Chalk({ level: colour });
    this.spin = opts.spinners && Boolean(stream.isTTY) && !process.env.CI;
  }

  private out(text: string): void {
    if (this.spinner?.isSpinning) {
      this.spinner.clear();
      console.log(text);
      this.spinner.render();
    } else {
      console.log(text);
    }
  }

  stepStart(title: string): void {
    if (this.spin) this.spinner = ora({ text: title, discardStdin: false }).start();
    this.title = title;
  }

  /** On the spinner only: without a terminal, progress would be a flood of lines. */
  progress(text: string): void {
    if (this.spinner?.isSpinning) this.spinner.text = `${this.title} ${this.c.dim(`— ${text}`)}`;
  }

  stepDone(title: string, detail?: string): void {
    const text = `${title}${detail ? this.c.dim(` — ${detail}`) : ''}`;
    if (this.spinner) this.spinner.succeed(text);
    else console.log(`${this.c.green('✔')} ${text}`);
    this.spinner = undefined;
  }

  stepSkipped(title: string, detail: string): void {
    const text = `${title}${this.c.dim(` — ${detail}`)}`;
    if (this.spinner) this.spinner.stopAndPersist({ symbol: this.c.blue('•'), text });
    else console.log(`${this.c.blue('•')} ${text}`);
    this.spinner = undefined;
  }

  stepFailed(title: string): void {
    if (this.spinner) this.spinner.fail(title);
    else console.log(`${this.c.red('✖')} ${title}`);
    this.spinner = undefined;
  }

  line(text: string): void {
    this.out(this.c.dim(`  ${text}`));
  }

  info(text: string): void {
    this.out(text);
  }

  warn(text: string): void {
    this.out(this.c.yellow(`! ${text}`));
  }
}
