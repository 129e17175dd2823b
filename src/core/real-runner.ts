import { execa } from 'execa';
import { CommandError, formatCmd, redact, type Cmd, type CmdResult, type Runner } from './runner.js';

export type LogLine = (line: string) => void;

/** Runs commands for real through execa (no shell), logging `$ cmd` lines when asked to. */
export class RealRunner implements Runner {
  private readonly secrets: string[] = [];

  constructor(private readonly log?: LogLine) {}

  /** Registers a secret to redact from every later log line and error, whatever command. */
  addSecret(secret: string): void {
    if (secret) this.secrets.push(secret);
  }

  async run(cmd: Cmd): Promise<CmdResult> {
    const secrets = [...this.secrets, ...(cmd.secrets ?? [])];
    const shown = formatCmd(cmd, secrets);
    this.log?.(`$ ${shown}`);
    const [file, ...args] = cmd.argv;
    if (file === undefined) throw new Error('empty command');
    const r = await execa(file, args, {
      input: cmd.stdin ?? '',
      reject: false,
      env: { LC_ALL: 'C', ...cmd.env },
      timeout: cmd.timeoutMs,
      detached: cmd.detached ?? false,
      stripFinalNewline: false,
      ...(cmd.onStdoutLine ? { stdout: [lineTap(cmd.onStdoutLine), 'pipe'] as const } : {}),
    });
    const result: CmdResult = {
      exitCode: r.exitCode ?? (r.failed ? 1 : 0),
      stdout: redact(String(r.stdout ?? ''), secrets),
      // A program that could not start, or was killed by the timeout, has no exit code: execa's message says why.
      stderr: redact(String(r.stderr ?? '') || (r.exitCode === undefined ? (r.message ?? '') : ''), secrets),
    };
    if (result.exitCode !== 0 && !cmd.allowFail) throw new CommandError(shown, result);
    return result;
  }
}

/**
 * An execa transform that shows each stdout line to `onLine` and passes the bytes on unchanged. A
 * carriage return ends a line too: progress meters (rsync --info=progress2) redraw with \r.
 */
function lineTap(onLine: (line: string) => void) {
  let rest = '';
  return {
    *transform(chunk: unknown): Generator<unknown> {
      const parts = (rest + Buffer.from(chunk as Uint8Array).toString('utf8')).split(/[\r\n]/);
      rest = parts.pop() ?? '';
      for (const p of parts) if (p) onLine(p);
      yield chunk;
    },
    *final(): Generator<unknown> {
      if (rest) onLine(rest);
      yield* []; // nothing more to pass on
    },
    binary: true,
  };
}
