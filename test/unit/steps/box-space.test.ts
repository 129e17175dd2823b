import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, UsageError } from '../../../src/core/errors.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { boxSpaceStep } from '../../../src/steps/box-space.js';
import { GiB, makeCtx, makeSandbox, recordedConfig, rejection, statFs, type Sandbox } from './helpers.js';

/** 4 KiB fragments: 100 GiB in total, 50 GiB free. */
const HALF_FULL = '4096 26214400 13107200\n';

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

describe('box-space step', () => {
  it('refuses an image larger than the free space, with the figures', async () => {
    const runner = new RecordingRunner([statFs(sb.boxMount, HALF_FULL)]);
    const err = await rejection(boxSpaceStep.check(makeCtx(sb, { runner })));
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe('image size 100 GiB is larger than the space left on the box (50 GiB free of 100 GiB)');
    expect((err as UsageError).hint).toContain('--force');
  });

  it('with --force, lets it pass and records the space', async () => {
    const runner = new RecordingRunner([statFs(sb.boxMount, HALF_FULL)]);
    const ctx = makeCtx(sb, { runner, opts: { force: true } });
    await expect(boxSpaceStep.check(ctx)).resolves.toEqual({ done: true, detail: '50 GiB free of 100 GiB' });
    expect(ctx.state.box).toEqual({ totalBytes: 100 * GiB, freeBytes: 50 * GiB });
    runner.assertDone();
  });

  it('--adopt without --size: no size to check (the image is there already), even on a nearly full box', async () => {
    const runner = new RecordingRunner([statFs(sb.boxMount, '4096 26214400 256\n')]); // 1 MiB free
    const ctx = makeCtx(sb, { runner, opts: { adopt: true, sizeGiven: false, size: 64 * 1024 * 1024 } });
    await expect(boxSpaceStep.check(ctx)).resolves.toEqual({ done: true, detail: '1 MiB free of 100 GiB' });
  });

  it('passes when the image fits (exactly the free space)', async () => {
    const runner = new RecordingRunner([statFs(sb.boxMount, HALF_FULL)]);
    await expect(boxSpaceStep.check(makeCtx(sb, { runner, opts: { size: 50 * GiB } }))).resolves.toEqual({ done: true, detail: '50 GiB free of 100 GiB' });
  });

  it('does not refuse the image this config already recorded (it takes its space already)', async () => {
    const runner = new RecordingRunner([statFs(sb.boxMount, HALF_FULL)]);
    const ctx = makeCtx(sb, { runner, state: { existingConfig: recordedConfig(sb) } });
    await expect(boxSpaceStep.check(ctx)).resolves.toMatchObject({ done: true });
  });

  it('still refuses when the recorded config names another image', async () => {
    const runner = new RecordingRunner([statFs(sb.boxMount, HALF_FULL)]);
    const ctx = makeCtx(sb, { runner, state: { existingConfig: recordedConfig(sb, { image: { name: 'other.img' } }) } });
    await expect(boxSpaceStep.check(ctx)).rejects.toBeInstanceOf(UsageError);
  });

  it('is done without probing while the box mount is only simulated', async () => {
    const runner = new RecordingRunner([], true);
    const ctx = makeCtx(sb, { runner, state: { simulated: new Set(['box-mount']) } });
    await expect(boxSpaceStep.check(ctx)).resolves.toEqual({ done: true, detail: 'will be read once the box is mounted' });
    expect(runner.calls).toEqual([]);
    expect(await boxSpaceStep.plan(ctx)).toEqual([]);
  });

  it('unreadable stat output is an error naming the path', async () => {
    const runner = new RecordingRunner([statFs(sb.boxMount, '?\n')]);
    await expect(boxSpaceStep.check(makeCtx(sb, { runner }))).rejects.toThrow(`cannot read the free space of ${sb.boxMount}: ?`);
  });
});
