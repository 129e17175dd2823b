import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../../../src/core/errors.js';
import { mkfsTuning } from '../../../../src/lib/ext4.js';
import { mkfsStep } from '../../../../src/steps/init/mkfs.js';
import type { FakeMachine } from '../../../support/fake-machine.js';
import { encryptOpts, fakeBox, initCtx, runSteps } from '../../../support/init.js';
import { BOX_SOURCE, makeSandbox, OTHER_UUID, rejection, UUID, type Sandbox } from '../../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
  await m.mountBox(sb.boxMount, BOX_SOURCE);
});
afterEach(async () => {
  await sb.cleanup();
});

const created = { image: { created: true } };

describe('mkfs step', () => {
  it('is done when the image step found the recorded filesystem', async () => {
    const ctx = initCtx(sb, m);
    ctx.stack.fs.uuid = OTHER_UUID;
    const [o] = await runSteps(ctx, m, [mkfsStep]);
    expect(o).toMatchObject({ status: 'already', detail: `already ext4, UUID ${OTHER_UUID}` });
    expect(m.ran).toEqual([]);
  });

  it('e2fsprogs 1.47: no zeroing at all (assume_storage_prezeroed); mounted with noinit_itable (nothing zeroed after a grow either)', async () => {
    m.world.e2fsprogs = [1, 47, 0];
    const ctx = initCtx(sb, m, { state: created });
    await runSteps(ctx, m, [mkfsStep]);
    expect(m.ran).toEqual([`mkfs.ext4 -q -L hbs-backup -U ${UUID} -m 0 -e remount-ro -O 'meta_bg,^resize_inode' -E assume_storage_prezeroed=1,nodiscard ${sb.image}`]);
    expect(m.commands[0]?.timeoutMs).toBe(30 * 60_000);
    expect(ctx.stack.fs.mountOptions).toEqual(['noatime', 'noinit_itable']);
    expect(ctx.state.mkfsExtended).toEqual(['assume_storage_prezeroed=1', 'nodiscard']);
    expect(ctx.stack.fs.uuid).toBe(UUID);
  });

  it('e2fsprogs 1.46.5: zeroing deferred (lazy init), and the mount does not start it (noinit_itable)', async () => {
    m.world.e2fsprogs = [1, 46, 5];
    const ctx = initCtx(sb, m, { state: created });
    await runSteps(ctx, m, [mkfsStep]);
    expect(m.ran).toEqual([`mkfs.ext4 -q -L hbs-backup -U ${UUID} -m 0 -e remount-ro -O 'meta_bg,^resize_inode' -E lazy_itable_init=1,lazy_journal_init=1,nodiscard ${sb.image}`]);
    expect(ctx.stack.fs.mountOptions).toEqual(['noatime', 'noinit_itable']);
  });

  it('encrypted: the mapping is formatted with lazy init whatever e2fsprogs can do (a fresh mapping reads as noise, not zeros)', async () => {
    m.world.e2fsprogs = [1, 47, 0];
    const ctx = initCtx(sb, m, { state: created, opts: { encrypt: encryptOpts(sb) } });
    await runSteps(ctx, m, [mkfsStep]);
    expect(m.ran).toEqual([`mkfs.ext4 -q -L hbs-backup -U ${UUID} -m 0 -e remount-ro -O 'meta_bg,^resize_inode' -E lazy_itable_init=1,lazy_journal_init=1,nodiscard /dev/mapper/hbs-filesystem`]);
    expect(ctx.stack.fs.mountOptions).toEqual(['noatime', 'noinit_itable']);
  });

  it('refuses to format an image this run did not create, running nothing', async () => {
    const ctx = initCtx(sb, m);
    const err = await rejection(runSteps(ctx, m, [mkfsStep]));
    expect(err.message).toBe('refusing to format an image this run did not create');
    expect(m.ran).toEqual([]);
    expect(ctx.stack.fs.uuid).toBeUndefined();
  });

  it('an unreadable e2fsprogs version is a preflight error (exit 3)', async () => {
    m.probes.e2fsprogsVersion = () => Promise.resolve(undefined);
    const err = await rejection(runSteps(initCtx(sb, m, { state: created }), m, [mkfsStep]));
    expect(err.exitCode).toBe(EXIT.preflight);
    expect(err.message).toBe('cannot tell the e2fsprogs version (`mke2fs -V`)');
    expect(err.hint).toBe('install e2fsprogs');
    expect(m.ran).toEqual([]);
  });

  it('tuning: 1.47 and later (2.x too) skip zeroing; older ones defer it; noinit_itable always', () => {
    expect(mkfsTuning([2, 0, 0]).extended).toEqual(['assume_storage_prezeroed=1', 'nodiscard']);
    expect(mkfsTuning([1, 47, 2]).extended).toEqual(['assume_storage_prezeroed=1', 'nodiscard']);
    expect(mkfsTuning([1, 45, 7]).extended).toEqual(['lazy_itable_init=1', 'lazy_journal_init=1', 'nodiscard']);
    for (const v of [[2, 0, 0], [1, 47, 2], [1, 45, 7]]) expect(mkfsTuning(v).mountOptions).toEqual(['noinit_itable']);
  });
});
