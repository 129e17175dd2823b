import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fsMountStep, MOUNT_TIMEOUT_MS } from '../../../src/steps/fs.js';
import type { FakeMachine } from '../../support/fake-machine.js';
import { fakeBox, initCtx } from '../../support/init.js';
import { BOX_SOURCE, makeSandbox, type Sandbox } from '../../support/sandbox.js';

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

describe('fs-mount step', () => {
  it('gives the mount the time a large filesystem needs over a slow link (20 TiB: 2,560 descriptor reads, over 120 s)', async () => {
    const ctx = initCtx(sb, m);
    const actions = await fsMountStep.plan(ctx, []);
    const mount = actions.find((a) => a.kind === 'run');
    expect(mount?.kind === 'run' && mount.cmd.argv[0]).toBe('mount');
    expect(mount?.kind === 'run' && mount.cmd.timeoutMs).toBe(MOUNT_TIMEOUT_MS);
    expect(MOUNT_TIMEOUT_MS).toBeGreaterThanOrEqual(15 * 60_000);
  });
});
