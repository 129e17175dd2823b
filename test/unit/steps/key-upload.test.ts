import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, HbsError, UsageError } from '../../../src/core/errors.js';
import { execute } from '../../../src/core/plan.js';
import { formatCmd } from '../../../src/core/runner.js';
import { RecordingRunner, type Expectation } from '../../../src/core/recording-runner.js';
import { installKey, keyUploadStep } from '../../../src/steps/key-upload.js';
import {
  FIXED_NOW,
  FIXTURE_KEY,
  FIXTURE_PUB,
  HOST,
  makeCtx,
  makeSandbox,
  modeOf,
  readText,
  rejection,
  sftpProbe,
  USER,
  type Sandbox,
} from './helpers.js';

const PASSWORD = 'S3cr3t pw,with=odd"chars';

/** The RFC4716 block ssh-keygen -e would print for the fixture key, without a Comment header. */
const FIXTURE_RFC4716 = [
  '---- BEGIN SSH2 PUBLIC KEY ----',
  FIXTURE_KEY.blob.slice(0, 70),
  '---- END SSH2 PUBLIC KEY ----',
  '',
].join('\n');

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

function passwordMount(dir: string, exitCode = 0, stderr = ''): Expectation {
  const opts = [
    'password_stdin',
    'port=23',
    'PubkeyAuthentication=no',
    'NumberOfPasswordPrompts=1',
    `UserKnownHostsFile=${sb.knownHosts}`,
    'GlobalKnownHostsFile=/dev/null',
    'StrictHostKeyChecking=yes',
    'ServerAliveInterval=15',
    'ServerAliveCountMax=3',
  ].join(',');
  return { argv: ['sshfs', '-o', opts, `${USER}@${HOST}:`, dir], stdin: `${PASSWORD}\n`, exitCode, stderr };
}

async function withPublicKey(): Promise<void> {
  await mkdir(sb.sshDir, { recursive: true });
  await writeFile(sb.sshKey, 'PRIVATE', { mode: 0o600 });
  await writeFile(`${sb.sshKey}.pub`, FIXTURE_PUB);
}

function assertPasswordOnlyOnStdin(runner: RecordingRunner): void {
  for (const c of runner.calls) {
    for (const arg of c.argv) expect(arg).not.toContain(PASSWORD);
    expect(formatCmd(c)).not.toContain(PASSWORD);
    if (typeof c.stdin === 'string' && c.stdin.includes(PASSWORD)) expect(c.argv[0]).toBe('sshfs');
  }
}

describe('key-upload step: check', () => {
  it('in a dry-run with the host key not pinned yet, probes with a throwaway known_hosts holding the confirmed key', async () => {
    const probe = sftpProbe(sb, 0);
    const kh = sb.tempDir('hbs-probe-', 0) + '/known_hosts';
    const argv = probe.argv.map((a) => (a === `UserKnownHostsFile=${sb.knownHosts}` ? `UserKnownHostsFile=${kh}` : a));
    let seen = '';
    const runner = new RecordingRunner([{ ...probe, argv }]);
    const run = runner.run.bind(runner);
    runner.run = async (cmd) => {
      seen = await readText(kh); // the throwaway file exists while the probe runs
      return run(cmd);
    };
    const ctx = makeCtx(sb, { runner, state: { simulated: new Set(['host-key']), hostKey: { type: FIXTURE_KEY.type, blob: FIXTURE_KEY.blob, fingerprint: 'SHA256:x' } } });
    await expect(keyUploadStep.check(ctx)).resolves.toEqual({ done: true, detail: `${USER}@${HOST} accepts ${sb.sshKey}` });
    runner.assertDone();
    expect(seen).toBe(`[${HOST}]:23 ${FIXTURE_KEY.type} ${FIXTURE_KEY.blob}\n`);
    await expect(readText(kh)).rejects.toThrow(); // removed afterwards
  });

  it('is done when the sftp key-login probe exits 0', async () => {
    const runner = new RecordingRunner([sftpProbe(sb, 0)]);
    await expect(keyUploadStep.check(makeCtx(sb, { runner }))).resolves.toEqual({ done: true, detail: `${USER}@${HOST} accepts ${sb.sshKey}` });
    runner.assertDone();
  });

  it('is not done when the probe exits 255', async () => {
    const runner = new RecordingRunner([sftpProbe(sb, 255, 'Permission denied (publickey,password).')]);
    await expect(keyUploadStep.check(makeCtx(sb, { runner }))).resolves.toEqual({ done: false });
    runner.assertDone();
  });

  it('does not probe when the key or host key was only simulated', async () => {
    for (const simulated of ['ssh-key', 'host-key']) {
      const runner = new RecordingRunner([], true);
      const ctx = makeCtx(sb, { runner, state: { simulated: new Set([simulated]) } });
      await expect(keyUploadStep.check(ctx)).resolves.toEqual({ done: false, detail: 'the key is not on the box yet' });
      expect(runner.calls).toEqual([]);
    }
  });
});

describe('key-upload step: plan', () => {
  it('without a password on a real run, is a usage error pointing to --password-stdin', async () => {
    const err = await rejection(keyUploadStep.plan(makeCtx(sb, { runner: new RecordingRunner() })));
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`key login to ${USER}@${HOST} does not work yet and no box password was given`);
    expect((err as UsageError).hint).toContain('--password-stdin');
  });

  it('in a dry-run without a password, describes the two tasks', async () => {
    const actions = await keyUploadStep.plan(makeCtx(sb, { runner: new RecordingRunner([], true) }));
    expect(actions.map((a) => a.kind)).toEqual(['task', 'task']);
    const lines = actions.flatMap((a) => (a.kind === 'task' ? a.describe : []));
    expect(lines[0]).toContain(`sshfs -o password_stdin,port=23,PubkeyAuthentication=no,NumberOfPasswordPrompts=1,UserKnownHostsFile=${sb.knownHosts},`);
    expect(lines[0]).toContain(`${USER}@${HOST}: <temp dir> <<(password on stdin)`);
    expect(lines[1]).toBe(`add ${sb.sshKey}.pub to .ssh/authorized_keys in RFC4716 and OpenSSH formats (keeping every line there; .ssh 0700, file 0600)`);
    expect(lines[3]).toBe(`prove key login over SFTP: sftp -b - -P 23 … ${USER}@${HOST}:`);
  });

  it('mounts the home with the password on stdin only, installs the key, unmounts and proves key login', async () => {
    await withPublicKey();
    const home = sb.tempDir('hbs-home-');
    const runner = new RecordingRunner([passwordMount(home), { argv: ['fusermount3', '-u', home] }, sftpProbe(sb, 0)]);
    const ctx = makeCtx(sb, { runner, password: PASSWORD });
    const actions = await keyUploadStep.plan(ctx);
    await execute(actions, { runner, print: () => undefined, verbose: false, now: () => FIXED_NOW });
    runner.assertDone();
    expect(sb.tempDirs).toEqual([home]);
    // the temp dir stood in for the box home: the key landed in it
    expect(await readText(join(home, '.ssh', 'authorized_keys'))).toBe(FIXTURE_RFC4716 + FIXTURE_PUB);
    expect(ctx.reporter.lines).toEqual(['  added the key in RFC4716 and OpenSSH format']);
    const mount = runner.calls[0]!;
    expect(mount.stdin).toBe(`${PASSWORD}\n`);
    expect(mount.secrets).toEqual([PASSWORD]);
    assertPasswordOnlyOnStdin(runner);
    expect(runner.calls.filter((c) => typeof c.stdin === 'string' && c.stdin.includes(PASSWORD))).toHaveLength(1);
  });

  it('a rejected password fails with a hint, without unmounting, and removes the empty temp dir', async () => {
    await withPublicKey();
    const home = sb.tempDir('hbs-home-');
    const runner = new RecordingRunner([passwordMount(home, 1, 'read: Connection reset by peer\nPermission denied')]);
    const ctx = makeCtx(sb, { runner, password: PASSWORD });
    const err = await rejection(execute(await keyUploadStep.plan(ctx), { runner, print: () => undefined, verbose: false, now: () => FIXED_NOW }));
    expect(err).toBeInstanceOf(HbsError);
    expect((err as HbsError).exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(`logging in to ${USER}@${HOST} port 23 with the password failed`);
    expect((err as HbsError).details).toBe('read: Connection reset by peer\nPermission denied');
    expect(JSON.stringify(err)).not.toContain(PASSWORD);
    expect(err.message).not.toContain(PASSWORD);
    runner.assertDone();
    expect(await readdir(join(sb.root, 'tmp'))).toEqual([]);
    assertPasswordOnlyOnStdin(runner);
  });

  it('fails when key login still does not work after the upload', async () => {
    await withPublicKey();
    const home = sb.tempDir('hbs-home-');
    const runner = new RecordingRunner([passwordMount(home), { argv: ['fusermount3', '-u', home] }, sftpProbe(sb, 255, 'Permission denied (publickey).')]);
    const ctx = makeCtx(sb, { runner, password: PASSWORD });
    const err = await rejection(execute(await keyUploadStep.plan(ctx), { runner, print: () => undefined, verbose: false, now: () => FIXED_NOW }));
    expect(err.message).toBe(`the key is on the box, but key login to ${USER}@${HOST} still fails`);
    expect((err as HbsError).details).toBe('Permission denied (publickey).');
    assertPasswordOnlyOnStdin(runner);
  });
});

describe('installKey', () => {
  it('creates .ssh (0700) and authorized_keys (0600) with the key in both formats', async () => {
    const home = join(sb.root, 'home');
    await mkdir(home);
    expect(await installKey(home, FIXTURE_PUB)).toEqual(['RFC4716', 'OpenSSH']);
    expect(await modeOf(join(home, '.ssh'))).toBe(0o700);
    expect(await modeOf(join(home, '.ssh', 'authorized_keys'))).toBe(0o600);
    expect(await readText(join(home, '.ssh', 'authorized_keys'))).toBe(FIXTURE_RFC4716 + FIXTURE_PUB);
  });

  it('keeps existing lines, fixes loose modes, and adds nothing on a second call', async () => {
    const home = join(sb.root, 'home');
    const ssh = join(home, '.ssh');
    await mkdir(ssh, { recursive: true });
    await chmod(ssh, 0o755);
    const existing = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 old@laptop'; // no final newline
    await writeFile(join(ssh, 'authorized_keys'), existing, { mode: 0o644 });
    await chmod(join(ssh, 'authorized_keys'), 0o644);
    expect(await installKey(home, FIXTURE_PUB)).toEqual(['RFC4716', 'OpenSSH']);
    const after = await readText(join(ssh, 'authorized_keys'));
    expect(after).toBe(`${existing}\n${FIXTURE_RFC4716}${FIXTURE_PUB}`);
    expect(await modeOf(ssh)).toBe(0o700);
    expect(await modeOf(join(ssh, 'authorized_keys'))).toBe(0o600);

    expect(await installKey(home, FIXTURE_PUB)).toEqual([]);
    expect(await readText(join(ssh, 'authorized_keys'))).toBe(after);
    expect((await readdir(ssh)).sort()).toEqual(['authorized_keys']);
  });

  it('adds only the missing format when the other is already there', async () => {
    const home = join(sb.root, 'home');
    await mkdir(join(home, '.ssh'), { recursive: true });
    await writeFile(join(home, '.ssh', 'authorized_keys'), `command="x" ${FIXTURE_PUB}`);
    expect(await installKey(home, FIXTURE_PUB)).toEqual(['RFC4716']);
    expect(await readText(join(home, '.ssh', 'authorized_keys'))).toBe(`command="x" ${FIXTURE_PUB}${FIXTURE_RFC4716}`);
  });

  it('refuses something that is not a public key, writing nothing', async () => {
    const home = join(sb.root, 'home');
    await mkdir(home);
    await expect(installKey(home, '-----BEGIN OPENSSH PRIVATE KEY-----\n')).rejects.toThrow(/public key/);
    expect(await readdir(home)).toEqual([]);
  });
});
