import { CommandError, formatCmd, isWrite, type Cmd, type CmdResult, type Runner } from '../../src/core/runner.js';

/** What a test expects: the exact argv, and what the fake program answers. */
export interface Expectation {
  argv: readonly string[];
  stdout?: string;
  stderr?: string;
  exitCode?: number;
  /** When set, the command must (or must not) be marked as a write. */
  write?: boolean;
  /** When set, the stdin the command must receive. */
  stdin?: string | Uint8Array;
}

function sameStdin(a: string | Uint8Array | undefined, b: string | Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  // A test may spell a passphrase sent as bytes as a string: compare the bytes (utf-8).
  return Buffer.from(a).equals(Buffer.from(b));
}

/**
 * A runner for tests: answers from a script of expected commands, in order, and throws on any
 * command it was not told to expect. Everything run is kept in `calls` for assertions.
 */
export class RecordingRunner implements Runner {
  readonly calls: Cmd[] = [];
  private readonly queue: Expectation[];

  constructor(
    expectations: Expectation[] = [],
    readonly dryRun = false,
  ) {
    this.queue = [...expectations];
  }

  expect(...more: Expectation[]): this {
    this.queue.push(...more);
    return this;
  }

  get pending(): readonly Expectation[] {
    return this.queue;
  }

  /** Throws unless every expected command has run. */
  assertDone(): void {
    if (this.queue.length > 0) {
      throw new Error(`expected commands never ran:\n${this.queue.map((e) => '  ' + e.argv.join(' ')).join('\n')}`);
    }
  }

  run(cmd: Cmd): Promise<CmdResult> {
    this.calls.push(cmd);
    const next = this.queue[0];
    const got = JSON.stringify(cmd.argv);
    if (!next || JSON.stringify(next.argv) !== got) {
      return Promise.reject(
        new Error(
          `unexpected command: ${formatCmd(cmd)}\n` +
            (next ? `expected:           ${next.argv.join(' ')}` : 'expected no more commands'),
        ),
      );
    }
    if (next.write !== undefined && next.write !== isWrite(cmd)) {
      return Promise.reject(new Error(`command ${formatCmd(cmd)} should ${next.write ? '' : 'not '}be marked as a write`));
    }
    if (next.stdin !== undefined && !sameStdin(next.stdin, cmd.stdin)) {
      return Promise.reject(new Error(`command ${formatCmd(cmd)} got unexpected stdin`));
    }
    this.queue.shift();
    if (cmd.onStdoutLine && next.stdout) for (const line of next.stdout.replace(/\n$/, '').split('\n')) cmd.onStdoutLine(line);
    const result: CmdResult = { exitCode: next.exitCode ?? 0, stdout: next.stdout ?? '', stderr: next.stderr ?? '' };
    if (result.exitCode !== 0 && !cmd.allowFail) return Promise.reject(new CommandError(formatCmd(cmd), result));
    return Promise.resolve(result);
  }
}
