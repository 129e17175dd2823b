import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execute } from '../../../src/core/plan.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { readConfig, type Config } from '../../../src/lib/config.js';
import { buildConfig, configStep } from '../../../src/steps/config.js';
import { FIXED_NOW, FIXED_UUID, FIXTURE_KEY, GiB, IMAGE, makeCtx, makeSandbox, modeOf, readText, recordedConfig, rejection, type Sandbox } from './helpers.js';

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

const known = {
  hostKey: { type: FIXTURE_KEY.type, blob: FIXTURE_KEY.blob, fingerprint: FIXTURE_KEY.fingerprint },
  image: { created: true, uuid: FIXED_UUID },
  mountOptions: ['noatime', 'noinit_itable'],
};

const expected = (): Config => recordedConfig(sb, { mountOptions: ['noatime', 'noinit_itable'] });

describe('config step', () => {
  it('builds the config from the answers and what the steps learned', () => {
    expect(buildConfig(makeCtx(sb, { runner: new RecordingRunner(), state: known }))).toEqual(expected());
  });

  it('is done when the config on disk serializes identically', async () => {
    const ctx = makeCtx(sb, { runner: new RecordingRunner(), state: { ...known, existingConfig: expected() } });
    await expect(configStep.check(ctx)).resolves.toEqual({ done: true, detail: `${sb.config} is up to date` });
  });

  it('is not done when there is no config, or it differs in any field', async () => {
    const none = makeCtx(sb, { runner: new RecordingRunner(), state: known });
    await expect(configStep.check(none)).resolves.toEqual({ done: false });
    const other = { ...expected(), filesystem: { mountPoint: sb.mountPoint, mountOptions: ['noatime'] } };
    const differs = makeCtx(sb, { runner: new RecordingRunner(), state: { ...known, existingConfig: other } });
    await expect(configStep.check(differs)).resolves.toEqual({ done: false });
  });

  it('keeps the recorded size and label on a re-run with another --size', () => {
    const prior = { ...expected(), image: { ...expected().image, sizeBytes: 50 * GiB, label: 'old-label' } };
    const ctx = makeCtx(sb, { runner: new RecordingRunner(), opts: { size: 300 * GiB }, state: { ...known, existingConfig: prior } });
    expect(buildConfig(ctx).image).toEqual({ name: IMAGE, sizeBytes: 50 * GiB, uuid: FIXED_UUID, label: 'old-label' });
  });

  it('plans mkdir 0700 and an atomic write with mode 0600, which execute carries out', async () => {
    const runner = new RecordingRunner();
    const ctx = makeCtx(sb, { runner, state: known });
    const actions = await configStep.plan(ctx);
    const content = JSON.stringify(expected(), null, 2) + '\n';
    expect(actions).toEqual([
      { kind: 'mkdir', path: sb.configDir, mode: 0o700 },
      { kind: 'write', path: sb.config, content, mode: 0o600 },
    ]);
    await execute(actions, { runner, print: () => undefined, verbose: false, now: () => FIXED_NOW });
    expect(runner.calls).toEqual([]);
    expect(await readText(sb.config)).toBe(content);
    expect(await modeOf(sb.config)).toBe(0o600);
    expect(await modeOf(sb.configDir)).toBe(0o700);
    expect(await readConfig(sb.config)).toEqual(expected());
  });

  it('refuses to build a config before the image UUID is known', async () => {
    const ctx = makeCtx(sb, { runner: new RecordingRunner(), state: { hostKey: known.hostKey } });
    const err = await rejection(Promise.resolve().then(() => configStep.plan(ctx)));
    expect(err.message).toBe('config built before the image and host key are known');
  });
});
