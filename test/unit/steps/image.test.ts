import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, HbsError, UsageError } from '../../../src/core/errors.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import type { Config } from '../../../src/lib/config.js';
import { createExclusive, ExistingImageError, imageStep } from '../../../src/steps/image.js';
import {
  blkid,
  FIXED_UUID,
  GiB,
  IMAGE,
  makeCtx,
  makeSandbox,
  recordedConfig,
  modeOf,
  readText,
  rejection,
  statImage,
  writeCalls,
  type Sandbox,
} from './helpers.js';

const OTHER_UUID = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';
const EXISTING = { size: 100 * GiB, blocks: 2048 };

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

const recorded = (image: Partial<Config['image']> = {}): Config => recordedConfig(sb, { image, mountOptions: ['noatime', 'noinit_itable'] });

describe('image step: check', () => {
  it('is not done when there is no file', async () => {
    const runner = new RecordingRunner([statImage(sb.image)]);
    const ctx = makeCtx(sb, { runner });
    await expect(imageStep.check(ctx)).resolves.toEqual({ done: false });
    runner.assertDone();
    expect(ctx.state.image).toEqual({ created: false });
  });

  it('is done when the file is the ext4 image the config recorded, taking its UUID and mount options', async () => {
    const runner = new RecordingRunner([statImage(sb.image, EXISTING), blkid(sb.image, { UUID: FIXED_UUID, BLOCK_SIZE: '4096', TYPE: 'ext4' })]);
    const ctx = makeCtx(sb, { runner, state: { existingConfig: recorded() } });
    await expect(imageStep.check(ctx)).resolves.toEqual({
      done: true,
      detail: `${sb.image} is the image recorded in ${sb.config} (100 GiB, UUID ${FIXED_UUID})`,
    });
    expect(ctx.state.image.uuid).toBe(FIXED_UUID);
    expect(ctx.state.image.created).toBe(false);
    expect(ctx.state.mountOptions).toEqual(['noatime', 'noinit_itable']);
    expect(writeCalls(runner)).toEqual([]);
  });

  it('leaves an ext4 file with another UUID untouched and says so', async () => {
    const runner = new RecordingRunner([statImage(sb.image, EXISTING), blkid(sb.image, { UUID: OTHER_UUID, TYPE: 'ext4' })]);
    const ctx = makeCtx(sb, { runner, state: { existingConfig: recorded() } });
    const err = await rejection(imageStep.check(ctx));
    expect(err).toBeInstanceOf(ExistingImageError);
    expect(err).toBeInstanceOf(HbsError);
    expect((err as ExistingImageError).kind).toBe('adoptable');
    expect((err as HbsError).exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(
      `${sb.image} already exists on the box (100 GiB, ext4, UUID ${OTHER_UUID}) and is not the image recorded in ${sb.config}; hbs left it untouched`,
    );
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
    expect(ctx.state.image.uuid).toBeUndefined();
  });

  it('leaves a file without a filesystem untouched (no config at all)', async () => {
    const runner = new RecordingRunner([statImage(sb.image, { size: 5 * GiB, blocks: 0 }), blkid(sb.image)]);
    const ctx = makeCtx(sb, { runner });
    const err = await rejection(imageStep.check(ctx));
    expect(err).toBeInstanceOf(ExistingImageError);
    expect((err as ExistingImageError).kind).toBe('foreign');
    expect(err.message).toBe(
      `${sb.image} already exists on the box (5 GiB, no filesystem recognised) and is not the image recorded in ${sb.config}; hbs left it untouched`,
    );
    expect((err as HbsError).hint).toContain('--image');
    expect(writeCalls(runner)).toEqual([]);
  });

  it('does not take the recorded UUID for an image at another path', async () => {
    const runner = new RecordingRunner([statImage(sb.image, EXISTING), blkid(sb.image, { UUID: FIXED_UUID, TYPE: 'ext4' })]);
    const ctx = makeCtx(sb, { runner, state: { existingConfig: recorded({ name: 'other.img' }) } });
    await expect(imageStep.check(ctx)).rejects.toThrow('hbs left it untouched');
    expect(writeCalls(runner)).toEqual([]);
  });

  it('with --adopt, takes an unrecorded ext4 image as it is', async () => {
    const runner = new RecordingRunner([statImage(sb.image, { size: 200 * GiB, blocks: 8 }), blkid(sb.image, { UUID: OTHER_UUID, TYPE: 'ext4' })]);
    const ctx = makeCtx(sb, { runner, opts: { adopt: true } });
    await expect(imageStep.check(ctx)).resolves.toEqual({
      done: true,
      detail: `adopted ${sb.image} as it is (200 GiB, ext4 UUID ${OTHER_UUID}); not formatted`,
    });
    expect(ctx.state.image).toEqual({ created: false, uuid: OTHER_UUID, sizeBytes: 200 * GiB, adopted: true });
    expect(writeCalls(runner)).toEqual([]);
  });

  it('--adopt without --size and without a file is a usage error', async () => {
    const runner = new RecordingRunner([statImage(sb.image)]);
    const err = await rejection(imageStep.check(makeCtx(sb, { runner, opts: { adopt: true, sizeGiven: false } })));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe(`--adopt: there is no image at ${sb.image} to adopt`);
  });

  it('in a dry-run with the box not mounted, takes the recorded image as there (no probe, no create/mkfs shown)', async () => {
    const runner = new RecordingRunner([], true);
    const ctx = makeCtx(sb, { runner, state: { simulated: new Set(['box-mount']), existingConfig: recorded() } });
    await expect(imageStep.check(ctx)).resolves.toEqual({
      done: true,
      detail: `${sb.image} is recorded in ${sb.config}; it will be checked once the box is mounted`,
    });
    expect(runner.calls).toEqual([]);
    expect(ctx.state.image).toEqual({ created: false, uuid: FIXED_UUID });
    expect(ctx.state.mountOptions).toEqual(['noatime', 'noinit_itable']);
  });

  it('is not done, without probing, while the box mount is only simulated', async () => {
    const runner = new RecordingRunner([], true);
    const ctx = makeCtx(sb, { runner, state: { simulated: new Set(['box-mount']) } });
    await expect(imageStep.check(ctx)).resolves.toEqual({ done: false, detail: 'the box is not mounted yet' });
    expect(runner.calls).toEqual([]);
  });
});

describe('image step: plan', () => {
  it('is an exclusive create, then truncate --size=>N; it marks the image as created by this run', async () => {
    const runner = new RecordingRunner();
    const ctx = makeCtx(sb, { runner });
    const actions = await imageStep.plan(ctx);
    expect(actions.map((a) => (a.kind === 'task' ? { kind: a.kind, describe: a.describe } : a))).toEqual([
      { kind: 'task', describe: [`create ${sb.image} (only if nothing is there: O_CREAT|O_EXCL, mode 0600)`] },
      { kind: 'run', cmd: { argv: ['truncate', '--size=>107374182400', sb.image] } },
    ]);
    expect(ctx.state.image.created).toBe(true);
    expect(runner.calls).toEqual([]);

    await mkdir(sb.boxMount);
    const create = actions[0];
    if (create?.kind !== 'task') throw new Error('expected the create task');
    await create.run();
    expect(await readText(sb.image)).toBe('');
    expect(await modeOf(sb.image)).toBe(0o600);
    // running it again (a file is there now) must fail rather than touch it
    await expect(create.run()).rejects.toMatchObject({ code: 'EEXIST' });
  });
});

describe('image step: confirmed re-format', () => {
  it('only with --force-format and a typed confirmation: not done, and the plan removes the old file first', async () => {
    const runner = new RecordingRunner([
      statImage(sb.image, EXISTING),
      blkid(sb.image, { UUID: OTHER_UUID, TYPE: 'ext4' }),
      statImage(sb.image, EXISTING),
    ]);
    const ctx = makeCtx(sb, { runner, opts: { forceFormat: true, formatConfirmed: true } });
    await expect(imageStep.check(ctx)).resolves.toEqual({ done: false, detail: `erasing ${sb.image} as confirmed, and creating it anew` });
    const actions = await imageStep.plan(ctx);
    expect(actions.map((a) => (a.kind === 'task' ? a.describe[0] : a.kind === 'run' ? a.cmd.argv.join(' ') : a.kind))).toEqual([
      `rm ${sb.image}  (confirmed by typing its name)`,
      `create ${sb.image} (only if nothing is there: O_CREAT|O_EXCL, mode 0600)`,
      `truncate --size=>107374182400 ${sb.image}`,
    ]);
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
  });

  it('--force-format without the confirmation still leaves the file untouched', async () => {
    const runner = new RecordingRunner([statImage(sb.image, EXISTING), blkid(sb.image, { UUID: OTHER_UUID, TYPE: 'ext4' })]);
    const ctx = makeCtx(sb, { runner, opts: { forceFormat: true, formatConfirmed: false } });
    await expect(imageStep.check(ctx)).rejects.toThrow('hbs left it untouched');
  });
});

describe('createExclusive', () => {
  it('refuses an existing file (EEXIST) and leaves its content intact', async () => {
    await mkdir(sb.boxMount);
    await writeFile(sb.image, 'precious bytes', { mode: 0o644 });
    const err = await rejection(createExclusive(sb.image));
    expect((err as NodeJS.ErrnoException).code).toBe('EEXIST');
    expect(await readText(sb.image)).toBe('precious bytes');
    expect(await modeOf(sb.image)).toBe(0o644);
    expect(await readdir(sb.boxMount)).toEqual([IMAGE]);
  });

  it('creates a missing file empty with mode 0600', async () => {
    await mkdir(sb.boxMount);
    await createExclusive(sb.image);
    expect(await readText(sb.image)).toBe('');
    expect(await modeOf(sb.image)).toBe(0o600);
  });
});
