import { mkdir, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isWrite } from '../../../src/core/runner.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { sshKeyStep } from '../../../src/steps/ssh-key.js';
import { FIXTURE_KEY, FIXTURE_PUB, makeCtx, makeSandbox, modeOf, readText, writeCalls, type Sandbox } from './helpers.js';

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

describe('ssh-key step', () => {
  it('is not done when there is no key, and plans ssh-keygen ed25519 without passphrase, commented with the hostname', async () => {
    const ctx = makeCtx(sb, { runner: new RecordingRunner() });
    await expect(sshKeyStep.check(ctx)).resolves.toEqual({ done: false });
    const actions = await sshKeyStep.plan(ctx);
    expect(actions).toEqual([
      { kind: 'mkdir', path: sb.sshDir, mode: 0o700 },
      { kind: 'run', cmd: { argv: ['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'hbs@testhost', '-f', sb.sshKey] } },
    ]);
    const run = actions[1];
    expect(run?.kind === 'run' && isWrite(run.cmd)).toBe(true);
  });

  it('is done when the key and its .pub exist', async () => {
    await mkdir(sb.sshDir);
    await writeFile(sb.sshKey, 'PRIVATE', { mode: 0o600 });
    await writeFile(`${sb.sshKey}.pub`, FIXTURE_PUB);
    await expect(sshKeyStep.check(makeCtx(sb, { runner: new RecordingRunner() }))).resolves.toEqual({ done: true, detail: `using ${sb.sshKey}` });
  });

  it('with only the private key, derives the .pub (0644) and never replaces the key', async () => {
    await mkdir(sb.sshDir);
    await writeFile(sb.sshKey, 'PRIVATE', { mode: 0o600 });
    const runner = new RecordingRunner([
      { argv: ['ssh-keygen', '-y', '-f', sb.sshKey], write: false, stdout: `${FIXTURE_KEY.type} ${FIXTURE_KEY.blob} hbs@testhost` },
    ]);
    const ctx = makeCtx(sb, { runner });
    await expect(sshKeyStep.check(ctx)).resolves.toEqual({ done: false, detail: `${sb.sshKey}.pub is missing` });
    const actions = await sshKeyStep.plan(ctx);
    expect(actions).toHaveLength(1);
    const task = actions[0];
    if (task?.kind !== 'task') throw new Error('expected a task');
    expect(task.describe).toEqual([`ssh-keygen -y -f ${sb.sshKey} > ${sb.sshKey}.pub`]);
    await task.run();
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
    expect(await readText(`${sb.sshKey}.pub`)).toBe(FIXTURE_PUB);
    expect(await modeOf(`${sb.sshKey}.pub`)).toBe(0o644);
    expect(await readText(sb.sshKey)).toBe('PRIVATE');
  });
});
