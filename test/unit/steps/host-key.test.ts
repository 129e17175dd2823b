import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, HbsError, UsageError } from '../../../src/core/errors.js';
import { execute } from '../../../src/core/plan.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { hostKeyStep } from '../../../src/steps/host-key.js';
import {
  FIXED_NOW,
  generateKey,
  HOST,
  keyscan,
  keyscanOutput,
  makeCtx,
  makeSandbox,
  modeOf,
  readText,
  rejection,
  writeCalls,
  type GeneratedKey,
  type Sandbox,
} from './helpers.js';

let keyDir: string;
let ed: GeneratedKey;
let ecdsa: GeneratedKey;
let newEd: GeneratedKey;

beforeAll(async () => {
  keyDir = await mkdtemp(join(tmpdir(), 'hbs-hostkeys-'));
  [ed, ecdsa, newEd] = await Promise.all([generateKey(keyDir, 'ed'), generateKey(keyDir, 'ecdsa', 'ecdsa'), generateKey(keyDir, 'new-ed')]);
});
afterAll(async () => {
  await rm(keyDir, { recursive: true, force: true });
});

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

async function pin(line: string): Promise<void> {
  await mkdir(sb.configDir, { recursive: true });
  await writeFile(sb.knownHosts, line);
}

describe('host-key step', () => {
  it('generated keys have the fingerprints ssh-keygen reports (sanity check of the fixture)', () => {
    for (const k of [ed, ecdsa, newEd]) expect(k.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(new Set([ed.fingerprint, ecdsa.fingerprint, newEd.fingerprint]).size).toBe(3);
    expect(ecdsa.type).toBe('ecdsa-sha2-nistp256');
  });

  it('with a matching --host-key-fingerprint, plans to pin `[host]:port type blob` in known_hosts (0600)', async () => {
    const runner = new RecordingRunner([keyscan(keyscanOutput(ecdsa, ed))]);
    const ctx = makeCtx(sb, { runner, opts: { hostKeyFingerprint: ed.fingerprint } });
    await expect(hostKeyStep.check(ctx)).resolves.toEqual({ done: false, detail: `${ed.fingerprint} (ssh-ed25519)` });
    expect(ctx.state.hostKey).toEqual({ type: 'ssh-ed25519', blob: ed.blob, fingerprint: ed.fingerprint });
    expect(await hostKeyStep.plan(ctx)).toEqual([
      { kind: 'mkdir', path: sb.configDir, mode: 0o700 },
      { kind: 'write', path: sb.knownHosts, content: `[${HOST}]:23 ssh-ed25519 ${ed.blob}\n`, mode: 0o600 },
    ]);
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
  });

  it('pins the key whose fingerprint was given, even when it is not the preferred type', async () => {
    const runner = new RecordingRunner([keyscan(keyscanOutput(ed, ecdsa))]);
    const ctx = makeCtx(sb, { runner, opts: { hostKeyFingerprint: ecdsa.fingerprint } });
    await hostKeyStep.check(ctx);
    const actions = await hostKeyStep.plan(ctx);
    expect(actions[1]).toMatchObject({ kind: 'write', content: `[${HOST}]:23 ecdsa-sha2-nistp256 ${ecdsa.blob}\n` });
  });

  it('writing the pin keeps other hosts and replaces an older line for the same host', async () => {
    await pin(`other.example ssh-ed25519 ${newEd.blob}\n[${HOST}]:23 ssh-ed25519 ${newEd.blob}\n[${HOST}]:22 ssh-ed25519 ${newEd.blob}\n`);
    const runner = new RecordingRunner([keyscan(keyscanOutput(ed))]);
    const ctx = makeCtx(sb, { runner, opts: { hostKeyFingerprint: ed.fingerprint } });
    await expect(hostKeyStep.check(ctx)).resolves.toMatchObject({ done: false });
    await execute(await hostKeyStep.plan(ctx), { runner, print: () => undefined, verbose: false, now: () => FIXED_NOW });
    expect(await readText(sb.knownHosts)).toBe(
      `other.example ssh-ed25519 ${newEd.blob}\n[${HOST}]:22 ssh-ed25519 ${newEd.blob}\n[${HOST}]:23 ssh-ed25519 ${ed.blob}\n`,
    );
    expect(await modeOf(sb.knownHosts)).toBe(0o600);
  });

  it('a given fingerprint the server does not offer is a usage error listing what it offers', async () => {
    const runner = new RecordingRunner([keyscan(keyscanOutput(ed, ecdsa))]);
    const ctx = makeCtx(sb, { runner, opts: { hostKeyFingerprint: newEd.fingerprint } });
    const err = await rejection(hostKeyStep.check(ctx));
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(
      `host key fingerprint ${newEd.fingerprint} does not match ${HOST}:23, which offers ${ed.fingerprint} (ssh-ed25519), ${ecdsa.fingerprint} (ecdsa-sha2-nistp256)`,
    );
    expect(ctx.state.hostKey).toBeUndefined();
  });

  it('without a fingerprint and nothing pinned, names --host-key-fingerprint and the offered (preferred) key', async () => {
    const runner = new RecordingRunner([keyscan(keyscanOutput(ecdsa, ed))]);
    const err = await rejection(hostKeyStep.check(makeCtx(sb, { runner })));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe(`--host-key-fingerprint is missing: the box offers ${ed.fingerprint} (ssh-ed25519)`);
    expect((err as UsageError).hint).toContain('--host-key-fingerprint');
  });

  it('is done when the pinned key is what the server offers', async () => {
    await pin(`[${HOST}]:23 ssh-ed25519 ${ed.blob}\n`);
    const runner = new RecordingRunner([keyscan(keyscanOutput(ecdsa, ed))]);
    const ctx = makeCtx(sb, { runner });
    await expect(hostKeyStep.check(ctx)).resolves.toEqual({ done: true, detail: `${ed.fingerprint} already pinned in ${sb.knownHosts}` });
    expect(ctx.state.hostKey?.fingerprint).toBe(ed.fingerprint);
  });

  it('is done when the pinned key matches the given fingerprint too', async () => {
    await pin(`[${HOST}]:23 ssh-ed25519 ${ed.blob}\n`);
    const runner = new RecordingRunner([keyscan(keyscanOutput(ed))]);
    await expect(hostKeyStep.check(makeCtx(sb, { runner, opts: { hostKeyFingerprint: ed.fingerprint } }))).resolves.toMatchObject({ done: true });
  });

  it('a pin for port 22 does not count for port 23', async () => {
    await pin(`${HOST} ssh-ed25519 ${ed.blob}\n`);
    const runner = new RecordingRunner([keyscan(keyscanOutput(ed))]);
    const err = await rejection(hostKeyStep.check(makeCtx(sb, { runner })));
    expect(err.message).toContain('--host-key-fingerprint is missing');
  });

  it('a pinned key the server no longer offers is a "changed" error (exit 1), not a usage error', async () => {
    await pin(`[${HOST}]:23 ssh-ed25519 ${ed.blob}\n`);
    const runner = new RecordingRunner([keyscan(keyscanOutput(newEd))]);
    const err = await rejection(hostKeyStep.check(makeCtx(sb, { runner })));
    expect(err).toBeInstanceOf(HbsError);
    expect(err).not.toBeInstanceOf(UsageError);
    expect((err as HbsError).exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(`the host key of ${HOST}:23 changed: pinned ${ed.fingerprint}, the server offers ${newEd.fingerprint} (ssh-ed25519)`);
    expect((err as HbsError).hint).toContain(sb.knownHosts);
    // nothing was touched
    expect(await readText(sb.knownHosts)).toBe(`[${HOST}]:23 ssh-ed25519 ${ed.blob}\n`);
  });

  it('no answer from ssh-keyscan means the server cannot be reached', async () => {
    const runner = new RecordingRunner([keyscan('', 1)]);
    const err = await rejection(hostKeyStep.check(makeCtx(sb, { runner, opts: { hostKeyFingerprint: ed.fingerprint } })));
    expect(err).toBeInstanceOf(HbsError);
    expect(err.message).toBe(`cannot reach an SSH server at ${HOST} port 23: no host key received`);
  });

  it('plan refuses to run before check found the key', async () => {
    const err = await rejection(hostKeyStep.plan(makeCtx(sb, { runner: new RecordingRunner() })));
    expect(err.message).toContain('before its check');
  });
});
