import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sshKeyStep } from '../../../../src/steps/init/ssh-key.js';
import type { FakeMachine } from '../../../support/fake-machine.js';
import { fakeBox, initCtx, listTree, modeOf, runSteps } from '../../../support/init.js';
import { makeSandbox, type Sandbox } from '../../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
});
afterEach(async () => {
  await sb.cleanup();
});

const sshDir = () => join(sb.root, 'ssh');

describe('ssh-key step', () => {
  it('no key: makes an ed25519 key without a passphrase, commented with the hostname, in a 0700 directory', async () => {
    const [o] = await runSteps(initCtx(sb, m), m, [sshKeyStep]);
    expect(o?.status).toBe('done');
    expect(m.ran).toEqual([`ssh-keygen -q -t ed25519 -N '' -C hbs@testhost -f ${sb.sshKey}`]);
    expect(await modeOf(sshDir())).toBe(0o700);
    expect(await listTree(sshDir())).toEqual(['hbs_ed25519', 'hbs_ed25519.pub']);
  });

  it('is done when the key and its .pub are there; nothing runs', async () => {
    await mkdir(sshDir());
    await writeFile(sb.sshKey, 'PRIVATE', { mode: 0o600 });
    await writeFile(`${sb.sshKey}.pub`, m.world.publicKey);
    const [o] = await runSteps(initCtx(sb, m), m, [sshKeyStep]);
    expect(o).toMatchObject({ status: 'already', detail: `using ${sb.sshKey}` });
    expect(m.ran).toEqual([]);
  });

  it('only the private key: derives the .pub (0644) from it and never replaces the key', async () => {
    await mkdir(sshDir());
    await writeFile(sb.sshKey, 'PRIVATE', { mode: 0o600 });
    const ctx = initCtx(sb, m);
    const [o] = await runSteps(ctx, m, [sshKeyStep]);
    expect(o).toMatchObject({ status: 'done', detail: `${sb.sshKey}.pub derived from ${sb.sshKey}` });
    expect(m.ran).toEqual([]);
    expect(await readFile(`${sb.sshKey}.pub`, 'utf8')).toBe(m.world.publicKey);
    expect(await modeOf(`${sb.sshKey}.pub`)).toBe(0o644);
    expect(await readFile(sb.sshKey, 'utf8')).toBe('PRIVATE');
  });

  it('a dry-run shows the public half it would write, and writes nothing', async () => {
    await mkdir(sshDir());
    await writeFile(sb.sshKey, 'PRIVATE', { mode: 0o600 });
    const ctx = initCtx(sb, m);
    await runSteps(ctx, m, [sshKeyStep], { dryRun: true });
    expect(ctx.reporter.lines.slice(0, 2)).toEqual([
      `  ! write ${sb.sshKey}.pub (the public half of ${sb.sshKey}) (mode 0644, ${Buffer.byteLength(m.world.publicKey)} bytes, atomic)`,
      `  !   | ${m.world.publicKey.trimEnd()}`,
    ]);
    expect(await listTree(sshDir())).toEqual(['hbs_ed25519']);
  });
});
