import { chmod, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Action } from '../../../src/core/action.js';
import { formatBlock } from '../../../src/core/block.js';
import { EXIT, HbsError } from '../../../src/core/errors.js';
import { Executor } from '../../../src/core/executor.js';
import { MemoryReporter } from '../../../src/core/reporter.js';
import type { Cmd, CmdResult, Runner } from '../../../src/core/runner.js';
import type { Check, Step } from '../../../src/core/step.js';
import { RecordingRunner, type Expectation } from '../../support/recording-runner.js';

const NOW = new Date('2025-01-02T03:04:05.678Z');
const STAMP = '20250102T030405Z';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hbs-exec-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function executor(o: { dryRun?: boolean; verbose?: boolean; runner?: Runner; passThrough?: (e: unknown) => boolean } = {}) {
  const reporter = new MemoryReporter();
  const runner = o.runner ?? new RecordingRunner();
  const ex = new Executor({ runner, reporter, dryRun: o.dryRun ?? false, verbose: o.verbose ?? false, now: () => NOW, hint: 'the hint', passThrough: o.passThrough });
  return { ex, reporter, runner };
}

/** A step that records what the executor asks of it. */
function step(id: string, o: { check?: Check; actions?: Action[]; after?: string[]; expect?: Check; log: string[] }): Step<object> {
  const s: Step<object> = {
    id,
    title: `Step ${id}`,
    after: o.after,
    check: () => (o.log.push(`${id}.check`), Promise.resolve(o.check ?? { done: false })),
    plan: (_ctx, pending) => (o.log.push(`${id}.plan${pending?.length ? `(${pending.join(',')})` : ''}`), Promise.resolve(o.actions ?? [])),
    verify: () => (o.log.push(`${id}.verify`), Promise.resolve()),
  };
  if (o.expect) s.expect = (_ctx, pending) => (o.log.push(`${id}.expect(${pending.join(',')})`), Promise.resolve(o.expect!));
  return s;
}

const run = (argv: string[], extra: Partial<Cmd> = {}): Action => ({ kind: 'run', cmd: { argv, ...extra } });

describe('Executor: check, plan, verify', () => {
  it('a step already done is only checked; one not done is planned, applied in order, then verified', async () => {
    const log: string[] = [];
    const runner = new RecordingRunner([{ argv: ['one'] }, { argv: ['two'] }]);
    const { ex, reporter } = executor({ runner });
    const out = await ex.run({}, [
      step('a', { check: { done: true, detail: 'was so' }, log }),
      step('b', { check: { done: false, detail: 'made so' }, actions: [run(['one']), run(['two'])], log }),
    ]);
    runner.assertDone();
    expect(log).toEqual(['a.check', 'b.check', 'b.plan', 'b.verify']);
    expect(out).toEqual([
      { id: 'a', title: 'Step a', status: 'already', detail: 'was so' },
      { id: 'b', title: 'Step b', status: 'done', detail: 'made so' },
    ]);
    expect(reporter.lines).toEqual(['• Step a — was so', '✔ Step b — made so']);
  });

  it('a failing verify fails the step', async () => {
    const { ex } = executor();
    const s: Step<object> = { id: 'v', title: 'Verified', check: () => Promise.resolve({ done: false }), plan: () => Promise.resolve([]), verify: () => Promise.reject(new Error('did not take')) };
    await expect(ex.run({}, [s])).rejects.toThrow('Verified: did not take');
  });
});

describe('Executor: dry-run', () => {
  it('prints `! …` for every kind of action and applies none', async () => {
    const ran: string[] = [];
    let thenCalled = false;
    let taskRan = false;
    const seen = new RecordingRunner();
    const target = join(dir, 'file');
    const actions: Action[] = [
      { kind: 'run', cmd: { argv: ['tool', '--token=abc123', 'a b'], secrets: ['abc123'], stdin: 'hunter2' }, then: () => void (thenCalled = true) },
      { kind: 'mkdir', path: join(dir, 'new'), mode: 0o750 },
      { kind: 'write', path: target, content: 'line 1\nline 2\n', mode: 0o600, how: 'atomic', show: true, backup: true, what: 'the config' },
      { kind: 'write', path: join(dir, 'lock'), content: 'secret', mode: 0o600, how: 'create' },
      { kind: 'write', path: join(dir, 'remote'), content: new Uint8Array(64), mode: 0o400, how: 'replace' },
      { kind: 'block', path: join(dir, 'fstab'), id: '/etc/hbs/config.json', lines: ['a b c', 'd e f'], mode: 0o644, what: 'the mounts', validate: { describe: 'check it with findmnt --verify', run: () => Promise.reject(new Error('not in a dry-run')) } },
      { kind: 'block', path: join(dir, 'crypttab'), id: '/etc/hbs/config.json', lines: null, mode: 0o600, what: 'x' },
      { kind: 'remove', path: join(dir, 'gone'), what: "this machine's lock" },
      { kind: 'task', describe: ['mount a scratch directory', 'and take it away again'], run: () => ((taskRan = true), Promise.resolve()) },
    ];
    const { ex, reporter } = executor({ dryRun: true, runner: { run: (c) => (ran.push(c.argv.join(' ')), seen.run(c)) } });
    const out = await ex.run({}, [step('all', { actions, log: [] })]);
    expect(reporter.lines).toEqual([
      "  ! tool --token=*** 'a b' <<(stdin)",
      `  ! mkdir -p -m 0750 ${dir}/new`,
      `  ! back up ${target} (if it exists)`,
      `  ! write ${target} (the config) (mode 0600, 14 bytes, atomic)`,
      '  !   | line 1',
      '  !   | line 2',
      `  ! write ${dir}/lock (mode 0600, 6 bytes, only if it does not exist)`,
      `  ! write ${dir}/remote (mode 0400, 64 bytes, replacing it)`,
      '  ! check it with findmnt --verify',
      `  ! back up ${dir}/fstab (if it exists), then write its hbs block (/etc/hbs/config.json) — the mounts; the rest of the file stays as it is:`,
      '  !   | a b c',
      '  !   | d e f',
      `  ! remove the hbs block (/etc/hbs/config.json) from ${dir}/crypttab, after a backup; the rest of the file stays as it is`,
      `  ! rm ${dir}/gone  (this machine's lock)`,
      '  ! mount a scratch directory',
      '  ! and take it away again',
      '✔ Step all — would change (not done: dry-run)',
    ]);
    expect(reporter.lines.join('\n')).not.toContain('hunter2');
    expect(reporter.lines.join('\n')).not.toContain('secret');
    expect(out[0]?.status).toBe('planned');
    expect(ran).toEqual([]);
    expect([thenCalled, taskRan]).toEqual([false, false]);
    expect(await readdir(dir)).toEqual([]);
  });

  it('a step that plans nothing counts as already so', async () => {
    const { ex } = executor({ dryRun: true });
    expect((await ex.run({}, [step('n', { check: { done: false, detail: 'nothing to do' }, log: [] })]))[0]).toMatchObject({ status: 'already', detail: 'nothing to do' });
  });
});

describe('Executor: after and expect', () => {
  it('in a dry-run, a step after a planned step gets its expect (with what is pending) instead of its check', async () => {
    const log: string[] = [];
    const { ex, reporter } = executor({ dryRun: true });
    await ex.run({}, [
      step('box', { actions: [run(['sshfs'])], log }),
      step('image', { after: ['box'], expect: { done: true, detail: 'checked once the box is up' }, log }),
      step('lock', { after: ['box'], actions: [run(['write-lock'])], log }),
    ]);
    expect(log).toEqual(['box.check', 'box.plan', 'image.expect(box)', 'lock.plan(box)']);
    expect(reporter.lines).toContain('• Step image — checked once the box is up');
    expect(reporter.lines).toContain('  ! write-lock');
  });

  it('the plans stay known across runs of the same executor', async () => {
    const log: string[] = [];
    const { ex } = executor({ dryRun: true });
    await ex.run({}, [step('open', { actions: [run(['open'])], log })]);
    await ex.run({}, [step('close', { after: ['open'], actions: [run(['close'])], log })]);
    expect(log).toEqual(['open.check', 'open.plan', 'close.plan(open)']);
  });

  it('a step after one that was already so, or in a real run, is checked', async () => {
    const log: string[] = [];
    const dry = executor({ dryRun: true });
    await dry.ex.run({}, [step('box', { check: { done: true, detail: 'up' }, log }), step('image', { after: ['box'], expect: { done: true, detail: 'x' }, check: { done: true, detail: 'y' }, log })]);
    const real = executor({ runner: new RecordingRunner([{ argv: ['sshfs'] }]) });
    await real.ex.run({}, [step('box2', { actions: [run(['sshfs'])], log }), step('image2', { after: ['box2'], expect: { done: true, detail: 'x' }, check: { done: true, detail: 'y' }, log })]);
    expect(log).toEqual(['box.check', 'image.check', 'box2.check', 'box2.plan', 'box2.verify', 'image2.check']);
  });
});

describe('Executor: failures', () => {
  it('a failed command names the step and the command, carries the tail of its stderr and the hint', async () => {
    const runner = new RecordingRunner([{ argv: ['mount', '/img', '/mnt'], exitCode: 32, stderr: 'l1\nl2\nl3\nl4\nl5\nl6\nmount: /mnt: wrong fs type\n' }, { argv: ['never'] }]);
    const { ex, reporter } = executor({ runner });
    const err = (await ex.run({}, [step('m', { actions: [run(['mount', '/img', '/mnt']), run(['never'])], log: [] })]).catch((e: unknown) => e)) as HbsError;
    expect(err).toBeInstanceOf(HbsError);
    expect(err.message).toBe('Step m: command failed (exit 32): mount /img /mnt');
    expect(err.exitCode).toBe(EXIT.failed);
    expect(err.hint).toBe('the hint');
    expect(err.details).toBe('l2\nl3\nl4\nl5\nl6\nmount: /mnt: wrong fs type');
    expect(runner.pending.map((e) => e.argv[0])).toEqual(['never']);
    expect(reporter.lines).toEqual(['✖ Step m']);
  });

  it('an HbsError goes up as it is; another error is named after its step; passThrough errors go up untouched', async () => {
    const { ex } = executor({ passThrough: (e) => e instanceof RangeError });
    const failing = (err: Error): Step<object> => ({ id: 'f', title: 'Failing', check: () => Promise.reject(err), plan: () => Promise.resolve([]) });
    const own = new HbsError('the image is gone', EXIT.usage, 'its own hint');
    await expect(ex.run({}, [failing(own)])).rejects.toBe(own);
    const plain = (await ex.run({}, [failing(new Error('boom'))]).catch((e: unknown) => e)) as HbsError;
    expect(plain).toBeInstanceOf(HbsError);
    expect([plain.message, plain.hint]).toEqual(['Failing: boom', 'the hint']);
    const passed = new RangeError('refused');
    await expect(ex.run({}, [failing(passed)])).rejects.toBe(passed);
  });
});

describe('Executor: then handlers', () => {
  it('see the result (allowFail) and the runner, may run more, or throw to stop the run', async () => {
    const runner = new RecordingRunner([
      { argv: ['umount', '/mnt'], exitCode: 32, stderr: 'busy' },
      { argv: ['umount', '--lazy', '/mnt'] },
      { argv: ['check'], exitCode: 4 },
    ]);
    const seen: CmdResult[] = [];
    const { ex } = executor({ runner });
    const actions: Action[] = [
      {
        kind: 'run',
        cmd: { argv: ['umount', '/mnt'], allowFail: true },
        then: async (r, rr) => {
          seen.push(r);
          if (r.exitCode !== 0) await rr.run({ argv: ['umount', '--lazy', '/mnt'] });
        },
      },
      { kind: 'run', cmd: { argv: ['check'], allowFail: true }, then: (r) => { if (r.exitCode !== 0) throw new HbsError(`check said ${r.exitCode}`); } },
      { kind: 'mkdir', path: join(dir, 'not-made'), mode: 0o755 },
    ];
    await expect(ex.run({}, [step('t', { actions, log: [] })])).rejects.toThrow('check said 4');
    runner.assertDone();
    expect(seen).toEqual([{ exitCode: 32, stdout: '', stderr: 'busy' }]);
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('Executor: files, for real', () => {
  const apply = async (actions: Action[], o: { verbose?: boolean } = {}) => {
    const e = executor(o);
    await e.ex.run({}, [step('files', { actions, log: [] })]);
    return e.reporter;
  };
  const mode = async (p: string): Promise<number> => (await stat(p)).mode & 0o7777;

  it('mkdir: the directory and its parents with the mode; an existing one is left as it is', async () => {
    await apply([{ kind: 'mkdir', path: join(dir, 'a', 'b'), mode: 0o750 }]);
    expect(await mode(join(dir, 'a', 'b'))).toBe(0o750);
    await mkdir(join(dir, 'keep'), { mode: 0o700 });
    await chmod(join(dir, 'keep'), 0o711);
    await apply([{ kind: 'mkdir', path: join(dir, 'keep'), mode: 0o755 }]);
    expect(await mode(join(dir, 'keep'))).toBe(0o711);
  });

  it('symlink: replaces a link by a rename (never a moment without one), no temporary left; refuses a file', async () => {
    const link = join(dir, 'latest');
    await apply([{ kind: 'symlink', path: link, target: 'one' }]);
    expect(await readlink(link)).toBe('one');
    await apply([{ kind: 'symlink', path: link, target: 'two' }]);
    expect(await readlink(link)).toBe('two');
    expect(await readdir(dir)).toEqual(['latest']);
    await writeFile(join(dir, 'file'), 'x');
    await expect(apply([{ kind: 'symlink', path: join(dir, 'file'), target: 'two' }])).rejects.toThrow(/is not a symbolic link/);
    expect(await readFile(join(dir, 'file'), 'utf8')).toBe('x');
  });

  it('write atomic: the exact mode whatever the umask, no temporary file left; with backup, the old content kept beside it', async () => {
    const p = join(dir, 'config.json');
    await writeFile(p, 'old\n');
    const reporter = await apply([{ kind: 'write', path: p, content: 'new\n', mode: 0o640, how: 'atomic', backup: true }]);
    expect(await readFile(p, 'utf8')).toBe('new\n');
    expect(await mode(p)).toBe(0o640);
    expect(await readFile(`${p}.hbs-backup-${STAMP}`, 'utf8')).toBe('old\n');
    expect(reporter.lines).toContain(`  backup: ${p}.hbs-backup-${STAMP}`);
    expect((await readdir(dir)).sort()).toEqual(['config.json', `config.json.hbs-backup-${STAMP}`]);
    // A second backup in the same second gets its own name.
    await apply([{ kind: 'write', path: p, content: 'newer\n', mode: 0o640, how: 'atomic', backup: true }]);
    expect(await readFile(`${p}.hbs-backup-${STAMP}-1`, 'utf8')).toBe('new\n');
  });

  it('write create: only where there is nothing yet (O_EXCL); the existing file stays', async () => {
    const p = join(dir, 'lock');
    await apply([{ kind: 'write', path: p, content: 'mine', mode: 0o600, how: 'create' }]);
    expect([await readFile(p, 'utf8'), await mode(p)]).toEqual(['mine', 0o600]);
    await expect(apply([{ kind: 'write', path: p, content: 'theirs', mode: 0o600, how: 'create' }])).rejects.toThrow(/EEXIST/);
    expect(await readFile(p, 'utf8')).toBe('mine');
  });

  it('write replace: written beside and renamed over it, binary content as it is', async () => {
    const p = join(dir, 'remote.key');
    await writeFile(p, 'old');
    await apply([{ kind: 'write', path: p, content: Uint8Array.from([0, 1, 2, 255]), mode: 0o400, how: 'replace' }]);
    expect([...(await readFile(p))]).toEqual([0, 1, 2, 255]);
    expect(await mode(p)).toBe(0o400);
    expect(await readdir(dir)).toEqual(['remote.key']);
  });

  it('block: merged into an existing file after a backup; the file keeps its own mode; every other byte stays', async () => {
    const p = join(dir, 'fstab');
    const system = '# /etc/fstab\nUUID=1 / ext4 defaults 0 1\n';
    await writeFile(p, system, { mode: 0o644 });
    await chmod(p, 0o644);
    const reporter = await apply([{ kind: 'block', path: p, id: 'cfg', lines: ['x y z'], mode: 0o600, what: 'mounts' }]);
    expect(await readFile(p, 'utf8')).toBe(system + formatBlock('cfg', ['x y z']));
    expect(await mode(p)).toBe(0o644);
    expect(await readFile(`${p}.hbs-backup-${STAMP}`, 'utf8')).toBe(system);
    expect(reporter.lines).toContain(`  backup: ${p}.hbs-backup-${STAMP}`);
  });

  it('block: a new file gets the mode and no backup; removing the block gives back the file as it was', async () => {
    const p = join(dir, 'crypttab');
    await apply([{ kind: 'block', path: p, id: 'cfg', lines: ['hbs-x /img none luks'], mode: 0o600, what: 'x' }]);
    expect(await mode(p)).toBe(0o600);
    expect(await readdir(dir)).toEqual(['crypttab']);
    await apply([{ kind: 'block', path: p, id: 'cfg', lines: null, mode: 0o600, what: 'x' }]);
    expect(await readFile(p, 'utf8')).toBe('');
  });

  it('block: unchanged text is not written (no backup); removal from a missing file creates nothing', async () => {
    const p = join(dir, 'fstab');
    await writeFile(p, formatBlock('cfg', ['a']));
    await apply([{ kind: 'block', path: p, id: 'cfg', lines: ['a'], mode: 0o644, what: 'x' }]);
    await apply([{ kind: 'block', path: join(dir, 'missing'), id: 'cfg', lines: null, mode: 0o644, what: 'x' }]);
    expect(await readdir(dir)).toEqual(['fstab']);
  });

  it('block: validate sees the file before and after; when it throws, the file is left untouched and no backup is made', async () => {
    const p = join(dir, 'fstab');
    await writeFile(p, 'keep me\n');
    const seen: [string, string][] = [];
    const action: Action = {
      kind: 'block',
      path: p,
      id: 'cfg',
      lines: ['bad line'],
      mode: 0o644,
      what: 'x',
      validate: { describe: 'findmnt --verify', run: (before, after) => (seen.push([before, after]), Promise.reject(new Error('1 parse error'))) },
    };
    await expect(apply([action])).rejects.toThrow('Step files: 1 parse error');
    expect(seen).toEqual([['keep me\n', `keep me\n${formatBlock('cfg', ['bad line'])}`]]);
    expect(await readFile(p, 'utf8')).toBe('keep me\n');
    expect(await readdir(dir)).toEqual(['fstab']);
  });

  it('remove: the file goes; a missing one is fine', async () => {
    const p = join(dir, 'lock');
    await writeFile(p, 'x');
    await apply([{ kind: 'remove', path: p }, { kind: 'remove', path: join(dir, 'never-there') }]);
    expect(await readdir(dir)).toEqual([]);
  });

  it('verbose: file changes are shown as `$ …` lines as they are made (commands are the runner\'s to log)', async () => {
    const reporter = await apply([{ kind: 'mkdir', path: join(dir, 'v'), mode: 0o755 }, { kind: 'remove', path: join(dir, 'nothing') }], { verbose: true });
    expect(reporter.lines.slice(0, 2)).toEqual([`  $ mkdir -p -m 0755 ${dir}/v`, `  $ rm ${dir}/nothing`]);
  });

  it('task: runs with the executor\'s runner', async () => {
    const runner = new RecordingRunner([{ argv: ['inside'] } satisfies Expectation]);
    const { ex } = executor({ runner });
    await ex.run({}, [step('t', { actions: [{ kind: 'task', describe: ['x'], run: async (r) => void (await r.run({ argv: ['inside'] })) }], log: [] })]);
    runner.assertDone();
  });
});
