import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../../../src/core/errors.js';
import type { Step } from '../../../../src/core/step.js';
import type { InitCtx } from '../../../../src/steps/init/context.js';
import type { BoxConn } from '../../../../src/lib/ssh.js';
import { installKey, keyUploadStep } from '../../../../src/steps/init/key-upload.js';
import { sshKeyStep } from '../../../../src/steps/init/ssh-key.js';
import type { FakeMachine } from '../../../support/fake-machine.js';
import { BOX_PASSWORD, fakeBox, HOST_KEY, initCtx, modeOf, runSteps } from '../../../support/init.js';
import { HOST, makeSandbox, rejection, USER, type Sandbox } from '../../../support/sandbox.js';

/** A real ed25519 public key line, and its RFC4716 block as ssh-keygen -e prints it (no Comment header). */
const PUB = `ssh-ed25519 ${HOST_KEY.blob} hbs@testhost\n`;
const RFC4716 = ['---- BEGIN SSH2 PUBLIC KEY ----', HOST_KEY.blob, '---- END SSH2 PUBLIC KEY ----', ''].join('\n');

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
});
afterEach(async () => {
  await sb.cleanup();
});

async function keyPair(): Promise<void> {
  await mkdir(join(sb.root, 'ssh'), { recursive: true });
  await writeFile(sb.sshKey, 'PRIVATE', { mode: 0o600 });
  await writeFile(`${sb.sshKey}.pub`, m.world.publicKey);
}

describe('key-upload step', () => {
  it('is done when key login works with the pinned host key', async () => {
    await keyPair();
    const seen: BoxConn[] = [];
    const login = m.probes.keyLogin;
    m.probes.keyLogin = (c) => (seen.push(c), login(c));
    const [o] = await runSteps(initCtx(sb, m), m, [keyUploadStep]);
    expect(o).toMatchObject({ status: 'already', detail: `${USER}@${HOST} accepts ${sb.sshKey}` });
    expect(seen.map((c) => c.knownHosts)).toEqual([sb.knownHosts]);
  });

  it('a dry-run before the host key is pinned asks with a throwaway known_hosts holding the confirmed key, removed afterwards', async () => {
    await keyPair();
    const ctx = initCtx(sb, m, { state: { hostKey: HOST_KEY } });
    let held = '';
    let used = '';
    const login = m.probes.keyLogin;
    m.probes.keyLogin = async (c) => {
      used = c.knownHosts;
      held = await readFile(c.knownHosts, 'utf8');
      return login(c);
    };
    // The host key is only planned (a dry-run pins nothing): key login is probed with the confirmed key alone.
    const pinning: Step<InitCtx> = {
      id: 'host-key',
      title: 'Pin the box host key',
      check: () => Promise.resolve({ done: false }),
      plan: () => Promise.resolve([{ kind: 'mkdir', path: sb.configDir, mode: 0o700 }]),
    };
    await runSteps(ctx, m, [pinning, keyUploadStep], { dryRun: true });
    expect(used).not.toBe(sb.knownHosts);
    expect(held).toBe(`[${HOST}]:23 ssh-ed25519 ${HOST_KEY.blob}\n`);
    await expect(readFile(used)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(ctx.reporter.lines).toContain(`• Key login to the box — ${USER}@${HOST} accepts ${sb.sshKey}`);
  });

  it('a dry-run with a key made in this run does not probe: the key is not on the box yet', async () => {
    let probed = false;
    m.probes.keyLogin = () => ((probed = true), Promise.resolve({ ok: true, stderr: '' }));
    const ctx = initCtx(sb, m);
    await runSteps(ctx, m, [sshKeyStep, keyUploadStep], { dryRun: true });
    expect(probed).toBe(false);
    expect(ctx.reporter.lines.at(-1)).toBe('✔ Key login to the box — would change (not done: dry-run)');
  });

  it('a real run without a password when key login does not work: a usage error pointing to --password-stdin', async () => {
    await keyPair();
    m.world.keyLogin = false;
    const err = await rejection(runSteps(initCtx(sb, m), m, [keyUploadStep]));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`key login to ${USER}@${HOST} does not work yet and no box password was given`);
    expect(err.hint).toContain('--password-stdin');
    expect(m.ran).toEqual([]);
  });

  it('with the password: the home mounted on a private temp dir, the key installed, unmounted, the temp dir gone', async () => {
    await keyPair();
    m.world.keyLogin = false;
    const home = join(sb.root, 'home');
    m.account(home, BOX_PASSWORD);
    const temp = join(sb.root, 'tmp');
    await mkdir(temp);
    const ctx = initCtx(sb, m, { password: BOX_PASSWORD });
    ctx.deps.mkTempDir = async (prefix) => {
      const d = join(temp, `${prefix}0`);
      await mkdir(d, { mode: 0o700 });
      return d;
    };
    await runSteps(ctx, m, [keyUploadStep]);
    expect(m.ran).toEqual([
      `sshfs -o password_stdin,port=23,PubkeyAuthentication=no,NumberOfPasswordPrompts=1,UserKnownHostsFile=${sb.knownHosts},GlobalKnownHostsFile=/dev/null,StrictHostKeyChecking=yes,ServerAliveInterval=15,ServerAliveCountMax=3 ${USER}@${HOST}: ${temp}/hbs-home-0 <<(stdin)`,
      `fusermount3 -u ${temp}/hbs-home-0`,
    ]);
    expect(m.commands[0]).toMatchObject({ stdin: `${BOX_PASSWORD}\n`, secrets: [BOX_PASSWORD], detached: true });
    expect(await readdir(temp)).toEqual([]);
    expect(await readFile(join(home, '.ssh', 'authorized_keys'), 'utf8')).toContain(m.world.publicKey.split(' ')[1]);
    expect(ctx.reporter.lines).toContain('  added the key in RFC4716 and OpenSSH format');
  });

  it('a rejected password: stops with the reason, nothing to unmount, the empty temp dir removed', async () => {
    await keyPair();
    m.world.keyLogin = false;
    m.account(join(sb.root, 'home'), BOX_PASSWORD);
    const temp = join(sb.root, 'tmp');
    await mkdir(temp);
    const ctx = initCtx(sb, m, { password: 'not the password' });
    ctx.deps.mkTempDir = async (prefix) => {
      const d = join(temp, `${prefix}0`);
      await mkdir(d, { mode: 0o700 });
      return d;
    };
    const err = await rejection(runSteps(ctx, m, [keyUploadStep]));
    expect(err.message).toBe(`logging in to ${USER}@${HOST} port 23 with the password failed`);
    expect(m.ran.map((l) => l.split(' ')[0])).toEqual(['sshfs']);
    expect(await readdir(temp)).toEqual([]);
  });
});

describe('installKey', () => {
  it('creates .ssh (0700) and authorized_keys (0600) with the key in both formats', async () => {
    const home = join(sb.root, 'home');
    await mkdir(home);
    expect(await installKey(home, PUB)).toEqual(['RFC4716', 'OpenSSH']);
    expect(await modeOf(join(home, '.ssh'))).toBe(0o700);
    expect(await modeOf(join(home, '.ssh', 'authorized_keys'))).toBe(0o600);
    expect(await readFile(join(home, '.ssh', 'authorized_keys'), 'utf8')).toBe(RFC4716 + PUB);
  });

  it('keeps existing lines, fixes loose modes, and adds nothing on a second call', async () => {
    const home = join(sb.root, 'home');
    const ssh = join(home, '.ssh');
    await mkdir(ssh, { recursive: true });
    await chmod(ssh, 0o755);
    const existing = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 old@laptop'; // no final newline
    await writeFile(join(ssh, 'authorized_keys'), existing);
    await chmod(join(ssh, 'authorized_keys'), 0o644);
    expect(await installKey(home, PUB)).toEqual(['RFC4716', 'OpenSSH']);
    const after = await readFile(join(ssh, 'authorized_keys'), 'utf8');
    expect(after).toBe(`${existing}\n${RFC4716}${PUB}`);
    expect(await modeOf(ssh)).toBe(0o700);
    expect(await modeOf(join(ssh, 'authorized_keys'))).toBe(0o600);
    expect(await installKey(home, PUB)).toEqual([]);
    expect(await readFile(join(ssh, 'authorized_keys'), 'utf8')).toBe(after);
    expect(await readdir(ssh)).toEqual(['authorized_keys']);
  });

  it('adds only the missing format when the other is already there', async () => {
    const home = join(sb.root, 'home');
    await mkdir(join(home, '.ssh'), { recursive: true });
    await writeFile(join(home, '.ssh', 'authorized_keys'), `command="x" ${PUB}`);
    expect(await installKey(home, PUB)).toEqual(['RFC4716']);
    expect(await readFile(join(home, '.ssh', 'authorized_keys'), 'utf8')).toBe(`command="x" ${PUB}${RFC4716}`);
  });

  it('refuses something that is not a public key, writing nothing', async () => {
    const home = join(sb.root, 'home');
    await mkdir(home);
    await expect(installKey(home, '-----BEGIN OPENSSH PRIVATE KEY-----\n')).rejects.toThrow(/public key/);
    expect(await readdir(home)).toEqual([]);
  });
});
