/**
 * A real terminal for the end-to-end wizard tests: a command in a tmux pane (a real pty), keys sent
 * as a person types them, the screen read back as plain text (capture-pane drops the colours).
 * Each terminal has its own tmux server on a socket in a temp directory, so closing it ends
 * exactly what it started.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';

/** Runs the command, keeps the pane open afterwards and leaves its exit code in a file and on screen. */
const WRAPPER = 'f=$1; shift; "$@"; code=$?; echo "$code" > "$f"; printf "\\n[exited %s]\\n" "$code"; exec sleep 3600';

export async function tmuxMissing(): Promise<string | undefined> {
  const r = await execa('tmux', ['-V'], { reject: false });
  return r.exitCode === 0 ? undefined : 'needs tmux (apt-get install tmux)';
}

export class Terminal {
  private constructor(
    private readonly socket: string,
    private readonly exitFile: string,
  ) {}

  /** Starts `argv` in a fresh 200×50 terminal; `dir` holds the tmux socket and the exit code. */
  static async start(dir: string, argv: readonly string[]): Promise<Terminal> {
    const t = new Terminal(join(dir, 'tmux.sock'), join(dir, 'exit-code'));
    await t.tmux('-f', '/dev/null', 'new-session', '-d', '-s', 'hbs', '-x', '200', '-y', '50', '--', 'sh', '-c', WRAPPER, 'sh', t.exitFile, ...argv);
    return t;
  }

  private async tmux(...args: string[]): Promise<string> {
    return (await execa('tmux', ['-S', this.socket, ...args])).stdout;
  }

  /** Everything the terminal showed so far (scroll-back included), wrapped lines joined, trailing blanks cut. */
  async screen(): Promise<string> {
    const text = await this.tmux('capture-pane', '-p', '-J', '-S', '-', '-t', 'hbs');
    return text
      .split('\n')
      .map((l) => l.trimEnd())
      .join('\n')
      .trimEnd();
  }

  /** Polls the screen until `ready` holds; fails after `timeoutMs` showing the screen it last saw. */
  async waitFor(ready: string | RegExp | ((screen: string) => boolean), timeoutMs = 30_000): Promise<string> {
    const test = typeof ready === 'function' ? ready : typeof ready === 'string' ? (s: string) => s.includes(ready) : (s: string) => ready.test(s);
    const deadline = Date.now() + timeoutMs;
    let screen = '';
    while (Date.now() < deadline) {
      screen = await this.screen();
      if (test(screen)) return screen;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${String(ready)}; the screen:\n${screen}`);
  }

  /** Waits until the question is the one being asked (Inquirer marks it `?` until answered). */
  prompt(question: string, timeoutMs?: number): Promise<string> {
    return this.waitFor((s) => s.split('\n').some((l) => l.startsWith(`? ${question}`)), timeoutMs);
  }

  /** Types text literally (never for secrets: it would be in tmux's argv). */
  async type(text: string): Promise<void> {
    await this.tmux('send-keys', '-t', 'hbs', '-l', text);
  }

  /** Presses keys by name: Enter, C-c, C-u… */
  async press(...keys: string[]): Promise<void> {
    await this.tmux('send-keys', '-t', 'hbs', ...keys);
  }

  /** Types a secret through a paste buffer filled from stdin, so it is in no process's argv. */
  async typeSecret(secret: string): Promise<void> {
    await execa('tmux', ['-S', this.socket, 'load-buffer', '-b', 'secret', '-'], { input: secret });
    await this.tmux('paste-buffer', '-d', '-b', 'secret', '-t', 'hbs');
  }

  /** Waits for the command to end and returns its exit code. */
  async exitCode(timeoutMs = 90_000): Promise<number> {
    await this.waitFor(/^\[exited \d+\]$/m, timeoutMs);
    return Number((await readFile(this.exitFile, 'utf8')).trim());
  }

  /** Ends the tmux server of this terminal (and the pane with it); safe to call twice. */
  async close(): Promise<void> {
    await execa('tmux', ['-S', this.socket, 'kill-server'], { reject: false });
  }
}
