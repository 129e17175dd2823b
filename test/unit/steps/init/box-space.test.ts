import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, UsageError } from '../../../../src/core/errors.js';
import type { Step } from '../../../../src/core/step.js';
import { boxSpaceStep } from '../../../../src/steps/init/box-space.js';
import type { InitCtx } from '../../../../src/steps/init/context.js';
import type { FakeMachine } from '../../../support/fake-machine.js';
import { fakeBox, initCtx, runSteps, type CtxParts } from '../../../support/init.js';
import { BOX_SOURCE, GiB, makeConfig, makeSandbox, rejection, type Sandbox } from '../../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
  await m.mountBox(sb.boxMount, BOX_SOURCE);
  m.world.space.set(sb.boxMount, { totalBytes: 100 * GiB, freeBytes: 50 * GiB });
});
afterEach(async () => {
  await sb.cleanup();
});

const check = (p: CtxParts) => {
  const ctx = initCtx(sb, m, p);
  return runSteps(ctx, m, [boxSpaceStep]).then(([o]) => ({ o, ctx }));
};

describe('box-space step', () => {
  it('refuses an image larger than the free space, with the figures (exit 2)', async () => {
    const err = await rejection(check({ opts: { size: 100 * GiB } }));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe('image size 100 GiB is larger than the space left on the box (50 GiB free of 100 GiB)');
    expect(err.hint).toContain('--force');
  });

  it('--force lets it pass, and the space is kept for what follows', async () => {
    const { o, ctx } = await check({ opts: { size: 100 * GiB, force: true } });
    expect(o).toMatchObject({ status: 'already', detail: '50 GiB free of 100 GiB' });
    expect(ctx.state.box).toEqual({ totalBytes: 100 * GiB, freeBytes: 50 * GiB });
  });

  it('exactly the free space fits', async () => {
    expect((await check({ opts: { size: 50 * GiB } })).o?.status).toBe('already');
  });

  it('--adopt without --size: nothing is created, so nothing to fit, even on a nearly full box', async () => {
    m.world.space.set(sb.boxMount, { totalBytes: 100 * GiB, freeBytes: 1024 ** 2 });
    const { o } = await check({ opts: { adopt: true, sizeGiven: false, size: undefined } });
    expect(o?.detail).toBe('1 MiB free of 100 GiB');
  });

  it('the image this config recorded is not refused (it takes its space already); a config of another image does not count', async () => {
    expect((await check({ opts: { size: 100 * GiB }, state: { existingConfig: makeConfig(sb, { image: { name: 'filesystem.img', sizeBytes: 100 * GiB, uuid: '3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b', label: 'hbs-backup' } }) } })).o?.status).toBe('already');
    const other = makeConfig(sb, { image: { name: 'other.img', sizeBytes: 100 * GiB, uuid: '3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b', label: 'hbs-backup' } });
    await expect(check({ opts: { size: 100 * GiB }, state: { existingConfig: other } })).rejects.toBeInstanceOf(UsageError);
  });

  it('a box that does not answer: the step fails with the reason', async () => {
    m.world.space.set(sb.boxMount, new Error('Transport endpoint is not connected'));
    const err = await rejection(check({}));
    expect(err.message).toBe('Space on the box: Transport endpoint is not connected');
  });

  it('while the box mount is only planned (a dry-run): done without looking', async () => {
    let looked = false;
    m.probes.space = () => ((looked = true), Promise.reject(new Error('not mounted')));
    const mount: Step<InitCtx> = { id: 'box-mount', title: 'Mount the box with sshfs', check: () => Promise.resolve({ done: false }), plan: () => Promise.resolve([{ kind: 'mkdir', path: sb.boxMount, mode: 0o755 }]) };
    const ctx = initCtx(sb, m, { opts: { size: 1000 * GiB } });
    await runSteps(ctx, m, [mount, boxSpaceStep], { dryRun: true });
    expect(looked).toBe(false);
    expect(ctx.reporter.lines.at(-1)).toBe('• Space on the box — read once the box is mounted');
  });
});
