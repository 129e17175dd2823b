import { chmod, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, HbsError } from '../../../src/core/errors.js';
import type { Action } from '../../../src/core/plan.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { fstabStep } from '../../../src/steps/fstab.js';
import { fstabBlock, listTree, makeCtx, makeSandbox, modeOf, readText, rejection, verifyTab, writeCalls, type Sandbox } from './helpers.js';

const CLEAN = { stderr: '\n0 parse errors, 0 errors, 0 warnings\n' };
const OTHER_LINES = '# /etc/fstab: static file system information.\nUUID=1234-abcd / ext4 errors=remount-ro 0 1\n/swapfile none swap sw 0 0\n';

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

const expectedBlock = (): string => fstabBlock(sb);

function onlyTask(actions: Action[]): Extract<Action, { kind: 'task' }> {
  expect(actions).toHaveLength(1);
  const [a] = actions;
  if (a?.kind !== 'task') throw new Error('expected one task');
  return a;
}

function tmpFiles(): { block: string; before: string; after: string } {
  const dir = sb.tempDir('hbs-fstab-');
  return { block: join(dir, 'block'), before: join(dir, 'before'), after: join(dir, 'after') };
}

describe('fstab step: check', () => {
  it('with --no-fstab, is done (skipped) and plans nothing', async () => {
    const ctx = makeCtx(sb, { runner: new RecordingRunner(), opts: { fstab: null } });
    await expect(fstabStep.check(ctx)).resolves.toEqual({ done: true, detail: 'skipped (--no-fstab)' });
    expect(await fstabStep.plan(ctx)).toEqual([]);
  });

  it('is done when the file already has the identical block (anywhere in it)', async () => {
    await writeFile(sb.fstab, OTHER_LINES + expectedBlock() + '# after\n');
    const ctx = makeCtx(sb, { runner: new RecordingRunner() });
    await expect(fstabStep.check(ctx)).resolves.toEqual({ done: true, detail: `${sb.fstab} already has the hbs block` });
  });

  it('is not done when the file is missing, has no block, or an outdated one', async () => {
    const ctx = makeCtx(sb, { runner: new RecordingRunner() });
    await expect(fstabStep.check(ctx)).resolves.toEqual({ done: false });
    await writeFile(sb.fstab, OTHER_LINES);
    await expect(fstabStep.check(ctx)).resolves.toEqual({ done: false });
    await writeFile(sb.fstab, OTHER_LINES + expectedBlock().replace('noatime,x-systemd', 'noatime,noinit_itable,x-systemd'));
    await expect(fstabStep.check(ctx)).resolves.toEqual({ done: false });
  });

  it('the block follows the filesystem mount options', async () => {
    await writeFile(sb.fstab, expectedBlock().replace('noatime,x-systemd', 'noatime,noinit_itable,x-systemd'));
    const ctx = makeCtx(sb, { runner: new RecordingRunner(), state: { mountOptions: ['noatime', 'noinit_itable'] } });
    await expect(fstabStep.check(ctx)).resolves.toMatchObject({ done: true });
  });
});

describe('fstab step: the task', () => {
  it('describes what it will do', async () => {
    const task = onlyTask(await fstabStep.plan(makeCtx(sb, { runner: new RecordingRunner() })));
    expect(task.describe).toEqual([
      `findmnt --verify the new hbs block, and ${sb.fstab} with it (no new errors allowed)`,
      `back up ${sb.fstab}, then write it atomically with the block between the BEGIN/END markers`,
    ]);
  });

  it('verifies with findmnt, backs up, and appends the block keeping every other byte and the mode', async () => {
    await writeFile(sb.fstab, OTHER_LINES.trimEnd()); // no final newline
    await chmod(sb.fstab, 0o640);
    const f = tmpFiles();
    const runner = new RecordingRunner([verifyTab(f.block, CLEAN), verifyTab(f.before, CLEAN), verifyTab(f.after, CLEAN)]);
    const ctx = makeCtx(sb, { runner });
    await onlyTask(await fstabStep.plan(ctx)).run();
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
    expect(await readText(sb.fstab)).toBe(OTHER_LINES + expectedBlock());
    expect(await modeOf(sb.fstab)).toBe(0o640);
    const backup = `${sb.fstab}.hbs-backup-20250102T030405Z`;
    expect(await readText(backup)).toBe(OTHER_LINES.trimEnd());
    expect(ctx.reporter.lines).toEqual([`  backup: ${backup}`]);
    // the verification files are gone again
    expect(await readdir(join(sb.root, 'tmp'))).toEqual([]);
  });

  it('replaces an outdated block in place, keeping the lines before and after it', async () => {
    const old = expectedBlock().replace('noatime,x-systemd', 'noatime,noinit_itable,x-systemd');
    await writeFile(sb.fstab, `${OTHER_LINES}${old}# mine\n/dev/sdb1 /data xfs defaults 0 2\n`);
    const f = tmpFiles();
    const runner = new RecordingRunner([
      verifyTab(f.block, { stdout: '', stderr: 'Success, no errors or warnings detected\n' }),
      verifyTab(f.before, CLEAN),
      verifyTab(f.after, CLEAN),
    ]);
    await onlyTask(await fstabStep.plan(makeCtx(sb, { runner }))).run();
    expect(await readText(sb.fstab)).toBe(`${OTHER_LINES}${expectedBlock()}# mine\n/dev/sdb1 /data xfs defaults 0 2\n`);
  });

  it('creates a missing fstab with mode 0644 and no backup', async () => {
    const f = tmpFiles();
    const runner = new RecordingRunner([
      verifyTab(f.block, CLEAN),
      verifyTab(f.before, { stderr: 'Success, no errors or warnings detected\n' }),
      verifyTab(f.after, CLEAN),
    ]);
    const ctx = makeCtx(sb, { runner });
    await onlyTask(await fstabStep.plan(ctx)).run();
    expect(await readText(sb.fstab)).toBe(expectedBlock());
    expect(await modeOf(sb.fstab)).toBe(0o644);
    expect(ctx.reporter.lines).toEqual([]);
    expect((await listTree(sb.root)).filter((p) => p.includes('hbs-backup'))).toEqual([]);
  });

  it('refuses a candidate with more errors than the original, leaving the file as it was', async () => {
    const original = OTHER_LINES;
    await writeFile(sb.fstab, original);
    const f = tmpFiles();
    const runner = new RecordingRunner([
      verifyTab(f.block, CLEAN),
      verifyTab(f.before, CLEAN),
      verifyTab(f.after, { stdout: `${sb.boxMount}\n   [E] target is not a directory\n`, stderr: '\n0 parse errors, 1 error, 0 warnings\n' }),
    ]);
    const before = await listTree(sb.root);
    const err = await rejection(onlyTask(await fstabStep.plan(makeCtx(sb, { runner }))).run());
    expect(err).toBeInstanceOf(HbsError);
    expect((err as HbsError).exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(`findmnt --verify finds new errors in ${sb.fstab} with the hbs block; it was not changed`);
    expect((err as HbsError).details).toContain('[E] target is not a directory');
    expect(await readText(sb.fstab)).toBe(original);
    // no backup, and the verification files are removed again
    expect(await listTree(sb.root)).toEqual([...before, 'tmp/'].sort());
    expect(await readdir(join(sb.root, 'tmp'))).toEqual([]);
  });

  it('errors the original already had do not block the write', async () => {
    await writeFile(sb.fstab, OTHER_LINES);
    const f = tmpFiles();
    const twoErrors = { stderr: '\n0 parse errors, 2 errors, 0 warnings\n' };
    const runner = new RecordingRunner([verifyTab(f.block, CLEAN), verifyTab(f.before, twoErrors), verifyTab(f.after, twoErrors)]);
    await onlyTask(await fstabStep.plan(makeCtx(sb, { runner }))).run();
    expect(await readText(sb.fstab)).toBe(OTHER_LINES + expectedBlock());
  });

  it('refuses when findmnt rejects the block itself', async () => {
    await writeFile(sb.fstab, OTHER_LINES);
    const f = tmpFiles();
    const runner = new RecordingRunner([verifyTab(f.block, { stderr: 'parse error at line 2 -- ignored\n\n1 parse error, 0 errors, 0 warnings\n' })]);
    const err = await rejection(onlyTask(await fstabStep.plan(makeCtx(sb, { runner }))).run());
    expect(err.message).toBe(`findmnt --verify rejects the fstab lines hbs would add; ${sb.fstab} was not changed`);
    expect(await readText(sb.fstab)).toBe(OTHER_LINES);
    runner.assertDone();
  });

  it('output findmnt never gives is an error, not a silent pass', async () => {
    await writeFile(sb.fstab, OTHER_LINES);
    const f = tmpFiles();
    const runner = new RecordingRunner([verifyTab(f.block, { stderr: 'findmnt: unrecognized option', exitCode: 1 })]);
    await expect(onlyTask(await fstabStep.plan(makeCtx(sb, { runner }))).run()).rejects.toThrow('unexpected findmnt --verify output');
    expect(await readText(sb.fstab)).toBe(OTHER_LINES);
  });
});
