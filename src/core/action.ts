import { formatCmd, type Cmd, type CmdResult, type Runner } from './runner.js';

/**
 * One change a step makes, as data: a dry-run prints exactly these, a real run applies them in
 * order (core/executor.ts). Every change hbs makes to the machine or the box is one of these.
 */
export type Action =
  /**
   * A command. `then` looks at its result (the command has `allowFail` when `then` decides what a
   * failure means): it may throw to stop the run, or run what a failure calls for (a lazy unmount
   * after a refused one). It is not called in a dry-run.
   */
  | { kind: 'run'; cmd: Cmd; then?: (r: CmdResult, runner: Runner) => void | Promise<void> }
  | { kind: 'mkdir'; path: string; mode: number }
  /**
   * A file. `how`: `atomic` (temp file + rename, local files), `create` (must not exist yet:
   * O_EXCL, e.g. a lock or a new image), `replace` (beside + rename, for files on the box),
   * `in-place` (an existing file written as it is, never created: a kernel setting in /sys).
   * `show`: the content as lines in a dry-run (never for secrets), else only its size.
   */
  | { kind: 'write'; path: string; content: string | Uint8Array; mode: number; how: 'atomic' | 'create' | 'replace' | 'in-place'; backup?: boolean; show?: boolean; what?: string }
  /**
   * The hbs block (between BEGIN/END markers naming `id`) in a system file: `lines` replace it, or
   * null removes it. A backup of the file is made first; the file keeps its mode (`mode` is for a
   * new file); every byte outside the block stays as it is. `validate` sees the file before and
   * after, right before it is written, and throws to leave it untouched (e.g. `findmnt --verify`).
   */
  | {
      kind: 'block';
      path: string;
      id: string;
      lines: readonly string[] | null;
      mode: number;
      what: string;
      validate?: { describe: string; run: (before: string, after: string) => Promise<void> };
    }
  /** A file; or a directory: `dir` removes only an empty one (rmdir), `tree` one with what is in it. */
  | { kind: 'remove'; path: string; what?: string; dir?: 'empty' | 'tree' }
  /** A symbolic link at `path` pointing to `target` (replacing a link there, never a file). */
  | { kind: 'symlink'; path: string; target: string; what?: string }
  /** A change that needs more than commands and files (a temporary mount with a clean-up). Avoid. */
  | { kind: 'task'; describe: readonly string[]; run: (runner: Runner) => Promise<void> };

const octal = (mode: number): string => mode.toString(8).padStart(4, '0');

/** The lines a dry-run prints for an action (each shown with a leading `! `). */
export function describeAction(a: Action): string[] {
  switch (a.kind) {
    case 'run':
      return [formatCmd(a.cmd)];
    case 'mkdir':
      return [`mkdir -p -m ${octal(a.mode)} ${a.path}`];
    case 'write': {
      const bytes = typeof a.content === 'string' ? Buffer.byteLength(a.content) : a.content.length;
      const how = { atomic: 'atomic', create: 'only if it does not exist', replace: 'replacing it', 'in-place': 'in place' }[a.how];
      const head = `write ${a.path}${a.what ? ` (${a.what})` : ''} (mode ${octal(a.mode)}, ${bytes} bytes, ${how})`;
      const body = a.show && typeof a.content === 'string' ? a.content.replace(/\n$/, '').split('\n').map((l) => `  | ${l}`) : [];
      return [...(a.backup ? [`back up ${a.path} (if it exists)`] : []), head, ...body];
    }
    case 'block':
      return a.lines === null
        ? [`remove the hbs block (${a.id}) from ${a.path}, after a backup; the rest of the file stays as it is`]
        : [
            ...(a.validate ? [a.validate.describe] : []),
            `back up ${a.path} (if it exists), then write its hbs block (${a.id}) — ${a.what}; the rest of the file stays as it is:`,
            ...a.lines.map((l) => `  | ${l}`),
          ];
    case 'remove':
      return [`${a.dir === 'empty' ? 'rmdir' : a.dir === 'tree' ? 'rm -r' : 'rm'} ${a.path}${a.what ? `  (${a.what})` : ''}`];
    case 'symlink':
      return [`ln -sfn ${a.target} ${a.path}${a.what ? `  (${a.what})` : ''}`];
    case 'task':
      return [...a.describe];
  }
}
