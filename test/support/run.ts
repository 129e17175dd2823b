import { spawn } from 'node:child_process';

export interface RunResult {
  /** The exit code; -1 when the program could not start or died of a signal. */
  exitCode: number;
  /** Output, without its final newline. */
  stdout: string;
  stderr: string;
}

/**
 * Runs a program (no shell) with `input` on stdin; rejects on a non-zero exit unless `reject: false`.
 * node:child_process only, so that test support loads nothing else (under emulation in the test VM,
 * a program's imports are what its start costs).
 */
export function run(file: string, args: readonly string[], opts: { input?: string; reject?: boolean } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    let spawnError: Error | undefined;
    child.on('error', (e) => (spawnError = e));
    child.on('close', (code) => {
      const text = (chunks: Buffer[]): string => Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
      const r: RunResult = { exitCode: code ?? -1, stdout: text(out), stderr: text(err) };
      if (r.exitCode === 0 || opts.reject === false) resolve(r);
      else reject(new Error(`${[file, ...args].join(' ')} failed (${spawnError ? spawnError.message : `exit ${r.exitCode}`}): ${r.stderr}`));
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}
