/**
 * The one way hbs runs programs. Commands are argv arrays (never shell strings); secrets travel
 * on stdin and are redacted from every line a runner logs or puts into an error.
 */
export interface Cmd {
  argv: readonly string[];
  /** Data for the program's stdin (e.g. a password, or a binary LUKS key). Never logged. */
  stdin?: string | Uint8Array;
  /** Strings that must never appear in logs or errors (stdin is never logged anyway). */
  secrets?: readonly string[];
  /**
   * Whether the command changes anything. Defaults to true: a command counts as a write unless
   * marked read-only, so a probe can never run a change by accident (see readOnly below).
   */
  write?: boolean;
  /** A non-zero exit is returned instead of thrown. */
  allowFail?: boolean;
  env?: Record<string, string>;
  timeoutMs?: number;
  /**
   * Start it in a session of its own. For daemons such as sshfs: its ssh child would otherwise stay
   * in the terminal's session and die of SIGHUP when that terminal closes, breaking the mount.
   */
  detached?: boolean;
  /** Called with each stdout line as it arrives (progress of long commands; not redacted); stdout is still returned. */
  onStdoutLine?: (line: string) => void;
}

export interface CmdResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface Runner {
  run(cmd: Cmd): Promise<CmdResult>;
}

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly result: CmdResult,
  ) {
    super(`command failed (exit ${result.exitCode}): ${command}`);
    this.name = 'CommandError';
  }

  /** The last lines of stderr (or stdout when stderr is empty), for error messages. */
  tail(lines = 6): string {
    const text = (this.result.stderr.trim() || this.result.stdout.trim()).split('\n');
    return text.slice(-lines).join('\n');
  }
}

/** Thrown when something that may only look runs a command that changes the machine. */
export class WriteInProbeError extends Error {
  constructor(cmd: Cmd) {
    super(`a read-only probe tried to run a changing command: ${formatCmd(cmd)}`);
    this.name = 'WriteInProbeError';
  }
}

/**
 * A view of a runner that runs only commands marked `write: false`. Probes get this view: a
 * step's check() and plan() can then never change the machine, in a dry-run or a real run.
 */
export function readOnly(runner: Runner): Runner {
  return {
    run: (cmd) => (isWrite(cmd) ? Promise.reject(new WriteInProbeError(cmd)) : runner.run(cmd)),
  };
}

const SAFE_ARG = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Shell-quote one argument for display (the runner itself never goes through a shell). */
export function quoteArg(arg: string): string {
  if (arg !== '' && SAFE_ARG.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function redact(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const s of secrets) {
    if (s.length > 0) out = out.split(s).join('***');
  }
  return out;
}

/** The command as a person would type it, secrets redacted; stdin is shown only as a marker. */
export function formatCmd(cmd: Cmd, extraSecrets: readonly string[] = []): string {
  const line = cmd.argv.map(quoteArg).join(' ');
  const secrets = [...(cmd.secrets ?? []), ...extraSecrets];
  // Quoting spells a ' inside a secret as '\'' ; redact that spelling too.
  const quoted = secrets.filter((s) => s.includes("'")).map((s) => s.replace(/'/g, `'\\''`));
  const shown = redact(line, [...secrets, ...quoted]);
  return cmd.stdin !== undefined ? `${shown} <<(stdin)` : shown;
}

export function isWrite(cmd: Cmd): boolean {
  return cmd.write !== false;
}
