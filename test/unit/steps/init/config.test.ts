import { readFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readConfig, serializeConfig, type Config } from '../../../../src/lib/config.js';
import { buildConfig, configStep } from '../../../../src/steps/init/config.js';
import type { FakeMachine } from '../../../support/fake-machine.js';
import { fakeBox, HOST_KEY, initCtx, modeOf, runSteps, type CtxParts } from '../../../support/init.js';
import { GiB, IMAGE, makeConfig, makeSandbox, OTHER_UUID, rejection, UUID, writeConfig, type Sandbox } from '../../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
});
afterEach(async () => {
  await sb.cleanup();
});

/** A context after mkfs: the host key confirmed, the filesystem's UUID and mount options decided. */
function known(p: CtxParts = {}, uuid = UUID) {
  const ctx = initCtx(sb, m, { ...p, state: { hostKey: HOST_KEY, ...p.state } });
  ctx.stack.fs.uuid = uuid;
  ctx.stack.fs.mountOptions = ['noatime', 'noinit_itable'];
  return ctx;
}
const expected = (): Config => makeConfig(sb, { fstab: sb.fstab, systemd: null });

describe('config step', () => {
  it('builds the config from the answers and what the steps learned', () => {
    expect(buildConfig(known())).toEqual(expected());
  });

  it('writes it atomically, 0600 in a 0700 directory; it reads back as the same config', async () => {
    await runSteps(known(), m, [configStep]);
    expect(await readFile(sb.config, 'utf8')).toBe(serializeConfig(expected()));
    expect(await modeOf(sb.config)).toBe(0o600);
    expect(await modeOf(sb.configDir)).toBe(0o700);
    expect(await readConfig(sb.config)).toEqual(expected());
    expect(m.ran).toEqual([]);
  });

  it('is done when the config on disk is the same, and not when any field differs', async () => {
    const [same] = await runSteps(known({ state: { existingConfig: expected() } }), m, [configStep]);
    expect(same).toMatchObject({ status: 'already', detail: `${sb.config} is up to date` });
    const other = { ...expected(), filesystem: { mountPoint: sb.mountPoint, mountOptions: ['noatime'] } };
    await writeConfig(sb, other);
    const [differs] = await runSteps(known({ state: { existingConfig: other } }), m, [configStep]);
    expect(differs?.status).toBe('done');
    expect(await readConfig(sb.config)).toEqual(expected());
  });

  it('keeps the recorded size and label of the same filesystem on a re-run with another --size', () => {
    const prior = { ...expected(), image: { ...expected().image, sizeBytes: 50 * GiB, label: 'old-label' } };
    const cfg = buildConfig(known({ opts: { size: 300 * GiB }, state: { existingConfig: prior } }));
    expect(cfg.image).toEqual({ name: IMAGE, sizeBytes: 50 * GiB, uuid: UUID, label: 'old-label' });
    // Another filesystem (a new image): the recorded size says nothing about it.
    expect(buildConfig(known({ opts: { size: 300 * GiB }, state: { existingConfig: prior } }, OTHER_UUID)).image).toEqual({ name: IMAGE, sizeBytes: 300 * GiB, uuid: OTHER_UUID, label: 'hbs-backup' });
  });

  it('an adopted image records its own size, whatever --size said', () => {
    expect(buildConfig(known({ opts: { size: 10 * GiB }, state: { image: { created: false, adopted: true, sizeBytes: 200 * GiB } } })).image.sizeBytes).toBe(200 * GiB);
  });

  it('refuses to build a config before the host key is known, or (a real run) before the filesystem is', async () => {
    const ctx = known();
    ctx.state.hostKey = undefined;
    expect(() => buildConfig(ctx)).toThrow('config built before the host key is known');
    const noFs = initCtx(sb, m, { state: { hostKey: HOST_KEY } });
    const err = await rejection(runSteps(noFs, m, [configStep]));
    expect(err.message).toBe('internal: the config is due before the filesystem is known');
  });
});
