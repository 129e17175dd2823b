/**
 * The fstab step's check against findmnt --verify, through the real probe (commandProbes) with a
 * findmnt that judges the file it is given: the cases the fake machine's per-line errors cannot show.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Cmd, CmdResult, Runner } from '../../../../src/core/runner.js';
import { commandProbes } from '../../../../src/lib/probes.js';
import { fstabEntries, fstabStep } from '../../../../src/steps/init/fstab.js';
import type { FakeMachine } from '../../../support/fake-machine.js';
import { block, fakeBox, initCtx, listTree, plainFstabLines, runSteps } from '../../../support/init.js';
import { makeDeps, makeSandbox, rejection, type Sandbox } from '../../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
});
afterEach(async () => {
  await sb.cleanup();
});

/** findmnt --verify as a runner: `judge` gets the tab file's text and answers as findmnt would. */
function findmnt(judge: (text: string) => Promise<Partial<CmdResult>>): Runner & { files: string[] } {
  const files: string[] = [];
  return {
    files,
    async run(cmd: Cmd) {
      if (cmd.argv[0] !== 'findmnt' || cmd.argv[1] !== '--verify') throw new Error(`unexpected ${cmd.argv.join(' ')}`);
      const file = cmd.argv[3]!;
      files.push(file);
      const r = await judge(await readFile(file, 'utf8'));
      return { exitCode: r.exitCode ?? 0, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
    },
  };
}

/** Errors for mount targets listed twice (a mount point some other line uses already). */
const duplicates = (text: string): Promise<Partial<CmdResult>> => {
  const targets = text.split('\n').filter((l) => l.trim() && !l.startsWith('#')).map((l) => l.split(/\s+/)[1]);
  const dup = targets.filter((t, i) => targets.indexOf(t) !== i);
  return Promise.resolve(dup.length ? { exitCode: 1, stdout: dup.map((t) => `${t}\n   [E] duplicate target`).join('\n'), stderr: `\n0 parse errors, ${dup.length} error, 0 warnings\n` } : { stderr: '\n0 parse errors, 0 errors, 0 warnings\n' });
};

const OTHER = '# /etc/fstab\nUUID=1234-abcd / ext4 errors=remount-ro 0 1\n';

function ctxWith(runner: Runner) {
  const ctx = initCtx(sb, m);
  ctx.probe = { ...m.probes, verifyTab: commandProbes(runner, makeDeps().mkTempDir).verifyTab };
  ctx.stack.fs.mountOptions = ['noatime', 'noinit_itable'];
  return ctx;
}

describe('fstab step', () => {
  it('checks the block alone, then the file before and after: clean, it is written', async () => {
    await writeFile(sb.fstab, OTHER);
    const runner = findmnt(duplicates);
    await runSteps(ctxWith(runner), m, [fstabStep]);
    expect(runner.files).toHaveLength(3);
    expect(await readFile(sb.fstab, 'utf8')).toBe(OTHER + block(sb, plainFstabLines(sb)));
    // The files findmnt read are gone again.
    for (const f of runner.files) await expect(readFile(f)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a block that is clean alone but gives the whole file a new error: refused with what findmnt said, fstab untouched, no backup', async () => {
    const theirs = `${OTHER}/dev/sdb1 ${sb.mountPoint} xfs defaults 0 2\n`;
    await writeFile(sb.fstab, theirs);
    const err = await rejection(runSteps(ctxWith(findmnt(duplicates)), m, [fstabStep]));
    expect(err.message).toBe(`findmnt --verify finds new errors in ${sb.fstab} with the hbs block; it was not changed`);
    expect(err.details).toContain(`${sb.mountPoint}\n   [E] duplicate target`);
    expect(await readFile(sb.fstab, 'utf8')).toBe(theirs);
    expect((await listTree(sb.root)).filter((p) => p.includes('hbs-backup'))).toEqual([]);
  });

  it('output findmnt never gives is an error, not a silent pass', async () => {
    await writeFile(sb.fstab, OTHER);
    const err = await rejection(runSteps(ctxWith(findmnt(() => Promise.resolve({ exitCode: 1, stderr: 'findmnt: unrecognized option' }))), m, [fstabStep]));
    expect(err.message).toBe('fstab entries: unexpected findmnt --verify output: findmnt: unrecognized option');
    expect(await readFile(sb.fstab, 'utf8')).toBe(OTHER);
  });

  it('is done when the file has the identical block (anywhere), and follows the mount options', async () => {
    await writeFile(sb.fstab, `${OTHER}${block(sb, plainFstabLines(sb))}# after\n`);
    const [o] = await runSteps(ctxWith(findmnt(duplicates)), m, [fstabStep]);
    expect(o).toMatchObject({ status: 'already', detail: `${sb.fstab} already has the hbs block` });
    const other = ctxWith(findmnt(duplicates));
    other.stack.fs.mountOptions = ['noatime'];
    expect(fstabEntries(other.stack)[1]?.options).toEqual(['loop', '_netdev', 'nofail', 'noatime', `x-systemd.requires-mounts-for=${sb.boxMount}`]);
    const [changed] = await runSteps(other, m, [fstabStep]);
    expect(changed?.status).toBe('done');
  });

  it('a missing fstab is created with mode 0644, without a backup', async () => {
    await runSteps(ctxWith(findmnt(duplicates)), m, [fstabStep]);
    expect(await readFile(sb.fstab, 'utf8')).toBe(block(sb, plainFstabLines(sb)));
    expect((await listTree(sb.root)).filter((p) => p.includes('hbs-backup'))).toEqual([]);
  });
});
