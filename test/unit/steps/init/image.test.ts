import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../../../src/core/errors.js';
import type { Step } from '../../../../src/core/step.js';
import type { InitCtx } from '../../../../src/steps/init/context.js';
import { ExistingImageError, imageStep } from '../../../../src/steps/init/image.js';
import type { FakeMachine } from '../../../support/fake-machine.js';
import { fakeBox, initCtx, listTree, modeOf, runSteps } from '../../../support/init.js';
import { BOX_SOURCE, GiB, IMAGE, makeConfig, makeSandbox, OTHER_UUID, putOnBox, rejection, UUID, type Sandbox } from '../../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
});
afterEach(async () => {
  await sb.cleanup();
});

const recorded = () => makeConfig(sb, { fstab: sb.fstab, filesystem: { mountPoint: sb.mountPoint, mountOptions: ['noatime', 'noinit_itable'] } });

describe('image step', () => {
  it('no file: created only if nothing is there (O_EXCL, 0600), then sized with truncate --size=>N; marked as made by this run', async () => {
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    const ctx = initCtx(sb, m);
    await runSteps(ctx, m, [imageStep]);
    expect(m.ran).toEqual([`truncate '--size=>10737418240' ${sb.image}`]);
    expect(await readFile(sb.image, 'utf8')).toBe('');
    expect(await modeOf(sb.image)).toBe(0o600);
    expect(ctx.state.image.created).toBe(true);
  });

  it('a file that appears between the check and the write is never opened for writing (EEXIST); its content stays', async () => {
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    const racing: Step<InitCtx> = {
      ...imageStep,
      plan: async (ctx) => {
        const actions = await imageStep.plan(ctx);
        await writeFile(sb.image, 'precious bytes', { mode: 0o644 });
        return actions;
      },
    };
    const err = await rejection(runSteps(initCtx(sb, m), m, [racing]));
    expect(err.message).toMatch(/EEXIST/);
    expect(await readFile(sb.image, 'utf8')).toBe('precious bytes');
    expect(await modeOf(sb.image)).toBe(0o644);
    expect(m.ran).toEqual([]);
  });

  it('the ext4 image the config recorded: done, with its UUID and mount options', async () => {
    await putOnBox(sb, IMAGE);
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.ext4(sb.image, UUID);
    m.world.files.set(sb.image, { sizeBytes: 100 * GiB, allocatedBytes: GiB });
    const ctx = initCtx(sb, m, { state: { existingConfig: recorded() } });
    const [o] = await runSteps(ctx, m, [imageStep]);
    expect(o).toMatchObject({ status: 'already', detail: `${sb.image} is the image recorded in ${sb.config} (100 GiB, UUID ${UUID})` });
    expect(ctx.stack.fs).toMatchObject({ uuid: UUID, mountOptions: ['noatime', 'noinit_itable'] });
    expect(ctx.state.image.created).toBe(false);
  });

  it('--force-format without the typed confirmation still leaves the file untouched', async () => {
    await putOnBox(sb, IMAGE, 'old');
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.ext4(sb.image, OTHER_UUID);
    const err = await rejection(runSteps(initCtx(sb, m, { opts: { forceFormat: true, formatConfirmed: false } }), m, [imageStep]));
    expect(err).toBeInstanceOf(ExistingImageError);
    expect((err as ExistingImageError).kind).toBe('adoptable');
    expect(err.exitCode).toBe(EXIT.failed);
    expect(await readFile(sb.image, 'utf8')).toBe('old');
  });

  it('confirmed: the plan removes the old file first, then creates and sizes a new one', async () => {
    await putOnBox(sb, IMAGE, 'old');
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.ext4(sb.image, OTHER_UUID);
    const ctx = initCtx(sb, m, { opts: { forceFormat: true, formatConfirmed: true } });
    await runSteps(ctx, m, [imageStep], { dryRun: true });
    expect(ctx.reporter.lines).toEqual([
      `  ! mkdir -p -m 0700 ${sb.configDir}`,
      `  ! write ${sb.config}.creating (what this run is about to create) (mode 0600, 135 bytes, atomic)`,
      '  !   | {',
      `  !   |   "image": "${sb.image}",`,
      '  !   |   "sizeBytes": 10737418240,',
      `  !   |   "uuid": "${UUID}"`,
      '  !   | }',
      `  ! rm ${sb.image}  (confirmed by typing its name)`,
      `  ! write ${sb.image} (the sparse image) (mode 0600, 0 bytes, only if it does not exist)`,
      `  ! truncate '--size=>10737418240' ${sb.image}`,
      '✔ Sparse image file on the box — would change (not done: dry-run)',
    ]);
    expect(await readFile(sb.image, 'utf8')).toBe('old');
  });

  it('an encrypted image at the recorded path is taken as the recorded one only with --encrypt', async () => {
    await putOnBox(sb, IMAGE);
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.luksImage(sb.image, ['pw']);
    const prior = { ...recorded(), encryption: { type: 'luks2' as const, mapperName: 'hbs-filesystem', keys: ['passphrase' as const], headerBackup: '/h', unattendedKeyFile: null } };
    const err = await rejection(runSteps(initCtx(sb, m, { state: { existingConfig: prior } }), m, [imageStep]));
    expect((err as ExistingImageError).kind).toBe('encrypted');
    expect(await listTree(sb.boxMount)).toEqual([IMAGE]);
  });

  describe('an image an interrupted init was creating (the record <config>.creating)', () => {
    const INTENT_UUID = '7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d';
    const intent = (over: Record<string, unknown> = {}) => ({ image: sb.image, sizeBytes: 10 * GiB, uuid: INTENT_UUID, ...over });
    async function recordIntent(over: Record<string, unknown> = {}): Promise<void> {
      await mkdir(sb.configDir, { recursive: true });
      await writeFile(`${sb.config}.creating`, JSON.stringify(intent(over)));
    }

    for (const [what, setup] of [
      ['created, not yet sized', (): void => void m.world.files.set(sb.image, { sizeBytes: 0, allocatedBytes: 0 })],
      ['sized, not yet formatted', (): void => void m.world.files.set(sb.image, { sizeBytes: 10 * GiB, allocatedBytes: 0 })],
      ['formatted with the UUID it was given, config not yet written', (): void => void m.ext4(sb.image, INTENT_UUID).world.files.set(sb.image, { sizeBytes: 10 * GiB, allocatedBytes: 5 * 1024 * 1024 })],
    ] as const) {
      it(`${what}: recognised as its own, made anew with the same UUID`, async () => {
        await putOnBox(sb, IMAGE, 'half made');
        await m.mountBox(sb.boxMount, BOX_SOURCE);
        await recordIntent();
        setup();
        const ctx = initCtx(sb, m);
        const [out] = await runSteps(ctx, m, [imageStep]);
        expect(out?.detail).toContain('made anew');
        expect(ctx.state.image).toMatchObject({ created: true, resume: true, intent: intent() });
        expect(m.ran).toEqual([`truncate '--size=>10737418240' ${sb.image}`]);
        expect(await readFile(sb.image, 'utf8')).toBe('');
      });
    }

    it('a file that is not the one the record was about stays untouched: another UUID, size, path or a foreign signature', async () => {
      for (const [over, sig] of [
        [{}, { TYPE: 'ext4', UUID: OTHER_UUID }],
        [{ sizeBytes: 5 * GiB }, {}],
        [{ image: `${sb.boxMount}/other.img` }, {}],
        [{}, { TYPE: 'xfs', UUID: INTENT_UUID }],
      ] as const) {
        await putOnBox(sb, IMAGE, 'somebody else\'s');
        if (!m.world.mounts.has(sb.boxMount)) await m.mountBox(sb.boxMount, BOX_SOURCE);
        await recordIntent(over);
        m.world.files.set(sb.image, { sizeBytes: 10 * GiB, allocatedBytes: GiB });
        m.world.signatures.set(sb.image, { ...sig });
        await rejection(runSteps(initCtx(sb, m), m, [imageStep]));
        expect(await readFile(sb.image, 'utf8')).toBe('somebody else\'s');
        expect(m.ran).toEqual([]);
      }
    });
  });
});
