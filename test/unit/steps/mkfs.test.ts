import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, HbsError } from '../../../src/core/errors.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { mkfsStep, mkfsTuning } from '../../../src/steps/mkfs.js';
import { FIXED_UUID, makeCtx, makeSandbox, mke2fsVersion, rejection, type Sandbox } from './helpers.js';

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

const created = { image: { created: true } };

describe('mkfs step', () => {
  it('is done when the image step found the recorded filesystem', async () => {
    const ctx = makeCtx(sb, { runner: new RecordingRunner(), state: { image: { created: false, uuid: FIXED_UUID } } });
    await expect(mkfsStep.check(ctx)).resolves.toEqual({ done: true, detail: `already ext4, UUID ${FIXED_UUID}` });
  });

  it('is not done for a fresh image', async () => {
    await expect(mkfsStep.check(makeCtx(sb, { runner: new RecordingRunner(), state: created }))).resolves.toEqual({ done: false });
  });

  it('with e2fsprogs 1.47.0, formats with assume_storage_prezeroed; mounts with noinit_itable (no zeroing of groups a grow adds)', async () => {
    const runner = new RecordingRunner([mke2fsVersion('1.47.0')]);
    const ctx = makeCtx(sb, { runner, state: created });
    expect(await mkfsStep.plan(ctx)).toEqual([
      {
        kind: 'run',
        cmd: {
          argv: ['mkfs.ext4', '-q', '-L', 'hbs-backup', '-U', FIXED_UUID, '-m', '0', '-e', 'remount-ro', '-E', 'assume_storage_prezeroed=1,nodiscard', sb.image],
          timeoutMs: 30 * 60_000,
        },
      },
    ]);
    runner.assertDone();
    expect(ctx.state.mountOptions).toEqual(['noatime', 'noinit_itable']);
    expect(ctx.state.mkfsExtended).toEqual(['assume_storage_prezeroed=1', 'nodiscard']);
    expect(ctx.state.image.uuid).toBe(FIXED_UUID);
  });

  it('with e2fsprogs 1.46.5, defers zeroing (lazy init) and mounts with noinit_itable', async () => {
    const runner = new RecordingRunner([mke2fsVersion('1.46.5')]);
    const ctx = makeCtx(sb, { runner, state: created });
    const [action] = await mkfsStep.plan(ctx);
    expect(action).toEqual({
      kind: 'run',
      cmd: {
        argv: ['mkfs.ext4', '-q', '-L', 'hbs-backup', '-U', FIXED_UUID, '-m', '0', '-e', 'remount-ro', '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard', sb.image],
        timeoutMs: 30 * 60_000,
      },
    });
    expect(ctx.state.mountOptions).toEqual(['noatime', 'noinit_itable']);
  });

  it('refuses to format an image this run did not create, running nothing', async () => {
    const runner = new RecordingRunner([mke2fsVersion('1.47.0')]);
    const ctx = makeCtx(sb, { runner });
    const err = await rejection(mkfsStep.plan(ctx));
    expect(err.message).toBe('refusing to format an image this run did not create');
    expect(runner.calls).toEqual([]);
    expect(ctx.state.image.uuid).toBeUndefined();
  });

  it('an unreadable version is a preflight error', async () => {
    const runner = new RecordingRunner([{ argv: ['mke2fs', '-V'], write: false, exitCode: 127, stderr: 'mke2fs: not found' }]);
    const err = await rejection(mkfsStep.plan(makeCtx(sb, { runner, state: created })));
    expect(err).toBeInstanceOf(HbsError);
    expect((err as HbsError).exitCode).toBe(EXIT.preflight);
  });

  it('tuning: 1.47 and later (2.x too) skip zeroing; older ones defer it', () => {
    expect(mkfsTuning([2, 0, 0]).extended).toEqual(['assume_storage_prezeroed=1', 'nodiscard']);
    expect(mkfsTuning([1, 47, 2]).mountOptions).toEqual(['noinit_itable']);
    expect(mkfsTuning([1, 45, 7]).mountOptions).toEqual(['noinit_itable']);
  });
});
