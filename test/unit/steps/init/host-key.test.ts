import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, HbsError, UsageError } from '../../../../src/core/errors.js';
import type { HostKey } from '../../../../src/lib/host-keys.js';
import { hostKeyStep } from '../../../../src/steps/init/host-key.js';
import type { FakeMachine } from '../../../support/fake-machine.js';
import { fakeBox, HOST_KEY, initCtx, listTree, modeOf, OTHER_HOST_KEY, PINNED, runSteps } from '../../../support/init.js';
import { HOST, makeSandbox, rejection, type Sandbox } from '../../../support/sandbox.js';

/** OpenSSH's SHA256 fingerprint, computed here on its own (not with the src helper). */
const fp = (blob: string): string => `SHA256:${createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '')}`;
const ECDSA_BLOB = 'AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFu8sZ0hXnRQqCbE5TJ0k4dNnYzN1zRrSGVd3cIWq7uv2x7N0Cq3m3Pp8tU5Vh4vY2b1L7wGfS0rX9E2kQmYp9c=';
const ECDSA: HostKey = { type: 'ecdsa-sha2-nistp256', blob: ECDSA_BLOB, fingerprint: fp(ECDSA_BLOB) };

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
});
afterEach(async () => {
  await sb.cleanup();
});

async function pin(text: string): Promise<void> {
  await mkdir(sb.configDir, { recursive: true });
  await writeFile(sb.knownHosts, text, { mode: 0o600 });
}

describe('host-key step', () => {
  it('the fixtures: fingerprints as OpenSSH computes them', () => {
    expect(fp(HOST_KEY.blob)).toBe(HOST_KEY.fingerprint);
    expect(fp(OTHER_HOST_KEY.blob)).toBe(OTHER_HOST_KEY.fingerprint);
  });

  it('with a matching --host-key-fingerprint: pins `[host]:port type blob` in hbs known_hosts (0600, dir 0700)', async () => {
    m.world.hostKeys = [HOST_KEY, ECDSA];
    const ctx = initCtx(sb, m);
    const [o] = await runSteps(ctx, m, [hostKeyStep]);
    expect(o).toMatchObject({ status: 'done', detail: `${HOST_KEY.fingerprint} (ssh-ed25519)` });
    expect(await readFile(sb.knownHosts, 'utf8')).toBe(`[${HOST}]:23 ssh-ed25519 ${HOST_KEY.blob}\n`);
    expect(await modeOf(sb.knownHosts)).toBe(0o600);
    expect(await modeOf(sb.configDir)).toBe(0o700);
    expect(ctx.state.hostKey).toEqual(HOST_KEY);
    expect(m.ran).toEqual([]);
  });

  it('pins the key whose fingerprint was given, even when it is not the preferred type', async () => {
    m.world.hostKeys = [HOST_KEY, ECDSA];
    await runSteps(initCtx(sb, m, { opts: { hostKeyFingerprint: ECDSA.fingerprint } }), m, [hostKeyStep]);
    expect(await readFile(sb.knownHosts, 'utf8')).toBe(`[${HOST}]:23 ecdsa-sha2-nistp256 ${ECDSA_BLOB}\n`);
  });

  it('keeps the lines of other hosts (and of port 22) and replaces an older line for the same host and port', async () => {
    await pin(`other.example ssh-ed25519 ${OTHER_HOST_KEY.blob}\n[${HOST}]:23 ssh-ed25519 ${OTHER_HOST_KEY.blob}\n${HOST} ssh-ed25519 ${OTHER_HOST_KEY.blob}\n`);
    await runSteps(initCtx(sb, m), m, [hostKeyStep]);
    expect(await readFile(sb.knownHosts, 'utf8')).toBe(`other.example ssh-ed25519 ${OTHER_HOST_KEY.blob}\n${HOST} ssh-ed25519 ${OTHER_HOST_KEY.blob}\n[${HOST}]:23 ssh-ed25519 ${HOST_KEY.blob}\n`);
  });

  it('a given fingerprint the box does not offer: a usage error listing what it offers; nothing written', async () => {
    m.world.hostKeys = [HOST_KEY, ECDSA];
    const ctx = initCtx(sb, m, { opts: { hostKeyFingerprint: OTHER_HOST_KEY.fingerprint } });
    const err = await rejection(runSteps(ctx, m, [hostKeyStep]));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe(
      `host key fingerprint ${OTHER_HOST_KEY.fingerprint} does not match ${HOST}:23, which offers ${HOST_KEY.fingerprint} (ssh-ed25519), ${ECDSA.fingerprint} (ecdsa-sha2-nistp256)`,
    );
    expect(ctx.state.hostKey).toBeUndefined();
    expect(await listTree(sb.root)).toEqual([]);
  });

  it('no fingerprint and nothing pinned: names --host-key-fingerprint and the key the box offers first', async () => {
    const err = await rejection(runSteps(initCtx(sb, m, { opts: { hostKeyFingerprint: undefined } }), m, [hostKeyStep]));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe(`--host-key-fingerprint is missing: the box offers ${HOST_KEY.fingerprint} (ssh-ed25519)`);
    expect(err.hint).toContain('--host-key-fingerprint');
  });

  it('is done when the pinned key is what the box offers, with or without the fingerprint given', async () => {
    await pin(PINNED);
    for (const hostKeyFingerprint of [undefined, HOST_KEY.fingerprint]) {
      const ctx = initCtx(sb, m, { opts: { hostKeyFingerprint } });
      const [o] = await runSteps(ctx, m, [hostKeyStep]);
      expect(o).toMatchObject({ status: 'already', detail: `${HOST_KEY.fingerprint} already pinned in ${sb.knownHosts}` });
      expect(ctx.state.hostKey?.fingerprint).toBe(HOST_KEY.fingerprint);
    }
  });

  it('a pin for port 22 does not count for port 23', async () => {
    await pin(`${HOST} ssh-ed25519 ${HOST_KEY.blob}\n`);
    const err = await rejection(runSteps(initCtx(sb, m, { opts: { hostKeyFingerprint: undefined } }), m, [hostKeyStep]));
    expect(err.message).toContain('--host-key-fingerprint is missing');
  });

  it('a pinned key the box no longer offers: "changed" (exit 1, not a usage error), known_hosts untouched', async () => {
    await pin(PINNED);
    m.world.hostKeys = [OTHER_HOST_KEY];
    const err = await rejection(runSteps(initCtx(sb, m, { opts: { hostKeyFingerprint: undefined } }), m, [hostKeyStep]));
    expect(err).toBeInstanceOf(HbsError);
    expect(err).not.toBeInstanceOf(UsageError);
    expect(err.exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(`the host key of ${HOST}:23 changed: pinned ${HOST_KEY.fingerprint}, the server offers ${OTHER_HOST_KEY.fingerprint} (ssh-ed25519)`);
    expect(err.hint).toContain(sb.knownHosts);
    expect(await readFile(sb.knownHosts, 'utf8')).toBe(PINNED);
  });

  it('no host key from the server: it cannot be reached', async () => {
    m.world.hostKeys = [];
    const err = await rejection(runSteps(initCtx(sb, m), m, [hostKeyStep]));
    expect(err.message).toBe(`cannot reach an SSH server at ${HOST} port 23: no host key received`);
    expect(err.hint).toContain('--port');
  });

  it('plan refuses to run before check found the key', async () => {
    await expect(hostKeyStep.plan(initCtx(sb, m))).rejects.toThrow('host key step planned before its check');
  });

  it('a dry-run prints the pin it would write, and writes nothing', async () => {
    const ctx = initCtx(sb, m);
    await runSteps(ctx, m, [hostKeyStep], { dryRun: true });
    expect(ctx.reporter.lines).toEqual([
      `  ! mkdir -p -m 0700 ${sb.configDir}`,
      `  ! write ${sb.knownHosts} (the box's host key) (mode 0600, 113 bytes, atomic)`,
      `  !   | [${HOST}]:23 ssh-ed25519 ${HOST_KEY.blob}`,
      '✔ Pin the box host key — would change (not done: dry-run)',
    ]);
    expect(await listTree(sb.root)).toEqual([]);
  });
});
