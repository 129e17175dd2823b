import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Cmd, Runner } from '../../../../src/core/runner.js';
import { commandProbes } from '../../../../src/lib/probes.js';
import { targetsStep } from '../../../../src/steps/init/targets.js';
import type { FakeMachine } from '../../../support/fake-machine.js';
import { fakeBox, initCtx, runSteps } from '../../../support/init.js';
import { BOX_SOURCE, makeDeps, makeSandbox, rejection, type Sandbox } from '../../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
});
afterEach(async () => {
  await sb.cleanup();
});

/** findmnt answering with stacked mounts at one path, the last on top (as findmnt --json lists them). */
function stacked(path: string, mounts: { source: string; fstype: string }[]): Runner {
  return {
    run: (cmd: Cmd) => {
      const at = cmd.argv[cmd.argv.indexOf('--mountpoint') + 1];
      const filesystems = at === path ? mounts.map((x) => ({ target: path, ...x, options: 'rw' })) : [];
      return Promise.resolve(filesystems.length ? { exitCode: 0, stdout: JSON.stringify({ filesystems }), stderr: '' } : { exitCode: 1, stdout: '', stderr: '' });
    },
  };
}

describe('targets step', () => {
  it('is done when both mount points are free', async () => {
    const [o] = await runSteps(initCtx(sb, m), m, [targetsStep]);
    expect(o).toMatchObject({ status: 'already', detail: `${sb.boxMount}, ${sb.mountPoint}` });
  });

  it('is done when both already hold what hbs mounts there', async () => {
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    m.mountFs(sb.mountPoint, m.attach(sb.image));
    expect((await runSteps(initCtx(sb, m), m, [targetsStep]))[0]?.status).toBe('already');
  });

  it('goes by the top of stacked mounts: the box under a tmpfs is not the box', async () => {
    const ctx = initCtx(sb, m);
    ctx.probe = { ...m.probes, mountAt: commandProbes(stacked(sb.boxMount, [{ source: BOX_SOURCE, fstype: 'fuse.sshfs' }, { source: 'tmpfs', fstype: 'tmpfs' }]), makeDeps().mkTempDir).mountAt };
    const err = await rejection(runSteps(ctx, m, [targetsStep]));
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain(`${sb.boxMount} holds tmpfs (tmpfs)`);
  });
});
