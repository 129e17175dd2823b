import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { RealRunner } from '../../../src/core/real-runner.js';
import { CommandError, formatCmd, isWrite, quoteArg, redact } from '../../../src/core/runner.js';
import { RecordingRunner } from '../../support/recording-runner.js';

/** What a run rejects with. */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the promise to reject');
}

describe('quoteArg / formatCmd / redact', () => {
  it('leaves plain arguments alone and quotes the rest', () => {
    expect(quoteArg('plain-arg/x=1:2,3@%+_.')).toBe('plain-arg/x=1:2,3@%+_.');
    expect(quoteArg('a b')).toBe("'a b'");
    expect(quoteArg('')).toBe("''");
    expect(quoteArg("it's")).toBe(`'it'\\''s'`);
    expect(quoteArg('$(x)')).toBe("'$(x)'");
  });

  it('quotes so that a shell reads back the exact arguments', () => {
    const args = ['a b', "it's", '', '$(echo pwned)', 'a;b', 'x|y', '`id`', '"q"', 'tab\there', 'back\\slash', '*', '~', 'plain'];
    const line = formatCmd({ argv: ['printf', '%s\\n', ...args] });
    const out = execFileSync('sh', ['-c', line], { encoding: 'utf8' });
    expect(out).toBe(args.map((a) => a + '\n').join(''));
  });

  it('shows a command as typed', () => {
    expect(formatCmd({ argv: ['mount', '-o', 'loop,nofail', '/srv/a b/img', '/mnt/x'] })).toBe("mount -o loop,nofail '/srv/a b/img' /mnt/x");
  });

  it('redacts the command\'s secrets and extra secrets', () => {
    expect(formatCmd({ argv: ['tool', '--password=hunter2', 'x'], secrets: ['hunter2'] })).toBe('tool --password=*** x');
    expect(formatCmd({ argv: ['tool', 'tok-123', 'hunter2'], secrets: ['hunter2'] }, ['tok-123'])).toBe('tool *** ***');
    expect(formatCmd({ argv: ['tool', '--pw', 'two words'], secrets: ['two words'] })).not.toContain('two words');
  });

  it('redacts a secret that quoting changes (one with a single quote)', () => {
    const line = formatCmd({ argv: ['tool', "--pw=it's secret"], secrets: ["it's secret"] });
    expect(line).toBe("tool '--pw=***'");
    expect(formatCmd({ argv: ['tool', "a'b'c", 'x'] }, ["a'b'c"])).toBe("tool '***' x");
  });

  it('never shows stdin, only a marker', () => {
    const line = formatCmd({ argv: ['sshfs', 'u1@h:', '/mnt'], stdin: 'hunter2\n' });
    expect(line).toBe('sshfs u1@h: /mnt <<(stdin)');
    expect(formatCmd({ argv: ['cat'], stdin: '' })).toBe('cat <<(stdin)');
    expect(formatCmd({ argv: ['cat'] })).toBe('cat');
  });

  it('redact replaces every occurrence and ignores empty secrets', () => {
    expect(redact('a hunter2 b hunter2', ['hunter2', ''])).toBe('a *** b ***');
    expect(redact('nothing here', [])).toBe('nothing here');
  });

  it('isWrite defaults to true', () => {
    expect(isWrite({ argv: ['x'] })).toBe(true);
    expect(isWrite({ argv: ['x'], write: true })).toBe(true);
    expect(isWrite({ argv: ['x'], write: false })).toBe(false);
  });

  it('CommandError names the exit code and command; tail prefers stderr', () => {
    const e = new CommandError('mkfs.ext4 /x', { exitCode: 3, stdout: 'o1\no2\n', stderr: 'e1\ne2\ne3\n' });
    expect(e.message).toBe('command failed (exit 3): mkfs.ext4 /x');
    expect(e.tail(2)).toBe('e2\ne3');
    expect(new CommandError('x', { exitCode: 1, stdout: 'only stdout\n', stderr: '  \n' }).tail()).toBe('only stdout');
  });
});

/** The scripted runner of the probe tests (test/support/recording-runner.ts). */
describe('RecordingRunner', () => {
  it('answers expected commands in order and records every call', async () => {
    const r = new RecordingRunner([
      { argv: ['findmnt', '-J'], stdout: '{}', write: false },
      { argv: ['mkdir', '-p', '/x'], stderr: 'warn', exitCode: 0 },
    ]);
    await expect(r.run({ argv: ['findmnt', '-J'], write: false })).resolves.toEqual({ exitCode: 0, stdout: '{}', stderr: '' });
    await expect(r.run({ argv: ['mkdir', '-p', '/x'] })).resolves.toEqual({ exitCode: 0, stdout: '', stderr: 'warn' });
    expect(r.calls.map((c) => c.argv)).toEqual([['findmnt', '-J'], ['mkdir', '-p', '/x']]);
    expect(() => r.assertDone()).not.toThrow();
  });

  it('throws on an unexpected command, showing what it expected', async () => {
    const r = new RecordingRunner([{ argv: ['a', '1'] }]);
    const err = await rejection(r.run({ argv: ['rm', '-rf', '/x y'] }));
    expect(err.message).toBe("unexpected command: rm -rf '/x y'\nexpected:           a 1");
    expect(r.pending).toHaveLength(1);
  });

  it('throws when no more commands are expected', async () => {
    const r = new RecordingRunner();
    expect((await rejection(r.run({ argv: ['ls'] }))).message).toMatch(/^unexpected command: ls\nexpected no more commands$/);
  });

  it('throws on the right commands in the wrong order', async () => {
    const r = new RecordingRunner([{ argv: ['first'] }, { argv: ['second'] }]);
    expect((await rejection(r.run({ argv: ['second'] }))).message).toMatch(/unexpected command: second\nexpected: +first/);
  });

  it('compares argv exactly (no prefix or join matches)', async () => {
    const r = new RecordingRunner([{ argv: ['ls', '-l'] }]);
    await expect(r.run({ argv: ['ls', '-l', '/'] })).rejects.toThrow(/unexpected command/);
    await expect(r.run({ argv: ['ls -l'] })).rejects.toThrow(/unexpected command/);
    await expect(r.run({ argv: ['ls', '-l'] })).resolves.toMatchObject({ exitCode: 0 });
  });

  it('assertDone throws listing the expectations that remain', async () => {
    const r = new RecordingRunner([{ argv: ['a'] }]).expect({ argv: ['b', 'c'] }, { argv: ['d'] });
    await r.run({ argv: ['a'] });
    expect(() => r.assertDone()).toThrow('expected commands never ran:\n  b c\n  d');
  });

  it('throws CommandError for a non-zero exit unless allowFail', async () => {
    const r = new RecordingRunner([
      { argv: ['false'], exitCode: 2, stderr: 'boom' },
      { argv: ['false'], exitCode: 2, stderr: 'boom' },
    ]);
    const err = await rejection(r.run({ argv: ['false'] }));
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).result).toEqual({ exitCode: 2, stdout: '', stderr: 'boom' });
    expect(err.message).toBe('command failed (exit 2): false');
    await expect(r.run({ argv: ['false'], allowFail: true })).resolves.toEqual({ exitCode: 2, stdout: '', stderr: 'boom' });
    r.assertDone();
  });

  it('checks the write marking and stdin when the expectation says so', async () => {
    const r = new RecordingRunner([
      { argv: ['probe'], write: false },
      { argv: ['change'], write: true },
      { argv: ['login'], stdin: 'pw\n' },
    ]);
    await expect(r.run({ argv: ['probe'] })).rejects.toThrow('command probe should not be marked as a write');
    await r.run({ argv: ['probe'], write: false });
    await expect(r.run({ argv: ['change'], write: false })).rejects.toThrow('command change should be marked as a write');
    await r.run({ argv: ['change'] });
    await expect(r.run({ argv: ['login'], stdin: 'other\n' })).rejects.toThrow(/got unexpected stdin/);
    await expect(r.run({ argv: ['login'] })).rejects.toThrow(/got unexpected stdin/);
    await r.run({ argv: ['login'], stdin: 'pw\n' });
    r.assertDone();
  });
});

describe('RealRunner', () => {
  it('starts a detached command in a session of its own (sshfs must survive the terminal closing)', async () => {
    const script = ['sh', '-c', 'echo "$$ $(cut -d" " -f6 /proc/$$/stat)"'];
    const [pid, sid] = (await new RealRunner().run({ argv: script, write: false, detached: true })).stdout.trim().split(' ');
    expect(sid).toBe(pid);
    const [pid2, sid2] = (await new RealRunner().run({ argv: script, write: false })).stdout.trim().split(' ');
    expect(sid2).not.toBe(pid2);
  });

  it('shows stdout lines as they come, a carriage return ending one too (progress meters), and returns stdout unchanged', async () => {
    const lines: string[] = [];
    const r = await new RealRunner().run({ argv: ['printf', '10%%\\r20%%\\rdone\\nstats: 3\\nlast'], write: false, onStdoutLine: (l) => lines.push(l) });
    expect(lines).toEqual(['10%', '20%', 'done', 'stats: 3', 'last']);
    expect(r.stdout).toBe('10%\r20%\rdone\nstats: 3\nlast');
  });

  const SECRET = 'hunter2-S3cret';

  it('passes stdin and keeps the final newline', async () => {
    const r = new RealRunner();
    await expect(r.run({ argv: ['cat'], stdin: 'line one\nline two\n' })).resolves.toEqual({ exitCode: 0, stdout: 'line one\nline two\n', stderr: '' });
  });

  it('gives a command no stdin when none is set', async () => {
    await expect(new RealRunner().run({ argv: ['cat'] })).resolves.toMatchObject({ exitCode: 0, stdout: '' });
  });

  it('logs `$ cmd` lines, with stdin hidden', async () => {
    const log: string[] = [];
    const r = new RealRunner((l) => log.push(l));
    await r.run({ argv: ['cat'], stdin: SECRET });
    await r.run({ argv: ['printf', '%s', 'a b'] });
    expect(log).toEqual(['$ cat <<(stdin)', "$ printf %s 'a b'"]);
  });

  it('redacts a registered secret from stdout, stderr and the log', async () => {
    const log: string[] = [];
    const r = new RealRunner((l) => log.push(l));
    r.addSecret(SECRET);
    r.addSecret('');
    const res = await r.run({ argv: ['sh', '-c', `echo "out ${SECRET}"; echo "err ${SECRET}" >&2`] });
    expect(res).toEqual({ exitCode: 0, stdout: 'out ***\n', stderr: 'err ***\n' });
    expect(log).toEqual([`$ sh -c 'echo "out ***"; echo "err ***" >&2'`]);
  });

  it('redacts a secret it only sees through stdin', async () => {
    const r = new RealRunner();
    r.addSecret(SECRET);
    await expect(r.run({ argv: ['cat'], stdin: `pw=${SECRET}` })).resolves.toMatchObject({ stdout: 'pw=***' });
  });

  it('redacts the command\'s own secrets', async () => {
    const log: string[] = [];
    const res = await new RealRunner((l) => log.push(l)).run({ argv: ['echo', SECRET], secrets: [SECRET] });
    expect(res.stdout).toBe('***\n');
    expect(log).toEqual(['$ echo ***']);
  });

  it('throws CommandError for a non-zero exit, with the secret redacted from message and output', async () => {
    const r = new RealRunner();
    r.addSecret(SECRET);
    const err = await rejection(r.run({ argv: ['sh', '-c', `echo "bad ${SECRET}" >&2; exit 3`, SECRET] }));
    expect(err).toBeInstanceOf(CommandError);
    const ce = err as CommandError;
    expect(ce.result).toEqual({ exitCode: 3, stdout: '', stderr: 'bad ***\n' });
    expect(ce.message).toMatch(/^command failed \(exit 3\): sh -c /);
    expect(ce.message).not.toContain(SECRET);
    expect(ce.command).toContain('***');
    expect(ce.tail()).toBe('bad ***');
    expect(JSON.stringify(ce)).not.toContain(SECRET);
  });

  it('returns a non-zero exit with allowFail', async () => {
    await expect(new RealRunner().run({ argv: ['sh', '-c', 'echo x; exit 7'], allowFail: true })).resolves.toEqual({ exitCode: 7, stdout: 'x\n', stderr: '' });
  });

  it('reports a missing program as a failure, secret redacted', async () => {
    const r = new RealRunner();
    r.addSecret(SECRET);
    const res = await r.run({ argv: [`/nonexistent/${SECRET}`], allowFail: true });
    expect(res.exitCode).not.toBe(0);
    expect(res.stderr).toMatch(/ENOENT/);
    expect(res.stderr).not.toContain(SECRET);
    await expect(r.run({ argv: [`/nonexistent/${SECRET}`] })).rejects.toBeInstanceOf(CommandError);
  });

  it('runs with LC_ALL=C plus the command\'s env', async () => {
    const res = await new RealRunner().run({ argv: ['sh', '-c', 'echo "$LC_ALL $HBS_TEST_VAR"'], env: { HBS_TEST_VAR: 'yes' } });
    expect(res.stdout).toBe('C yes\n');
  });

  it('stops a command at its timeout', async () => {
    const started = Date.now();
    const res = await new RealRunner().run({ argv: ['sleep', '5'], timeoutMs: 200, allowFail: true });
    expect(res.exitCode).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('rejects an empty argv', async () => {
    await expect(new RealRunner().run({ argv: [] })).rejects.toThrow('empty command');
  });
});
