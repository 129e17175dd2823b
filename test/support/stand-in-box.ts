/**
 * A real OpenSSH server on 127.0.0.1 as a stand-in Storage Box, for the end-to-end tests and `npm run
 * demo`: an unprivileged account with a password (so chown fails there, as on a real box), SFTP, its
 * own host key, a free port. Test support, not part of the package: the e2e tests import this file,
 * the demo, the benchmarks and the VM guests its build (build/test-support/, `npm run build:test-support`).
 * Self-contained (Node only), so that changes in src/ cannot break it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './run.js';

export interface StandInBox {
  user: string;
  password: string;
  host: string;
  port: number;
  home: string;
  hostKeyFingerprint: string;
  dir: string;
  stop(): Promise<void>;
}

/** OpenSSH's fingerprint of a key blob (base64): `SHA256:` and the unpadded base64 of its digest. */
function fingerprintOf(blob: string): string {
  const digest = createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64');
  return `SHA256:${digest.replace(/=+$/, '')}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** A password full of shell characters: whoever puts it in a shell string breaks. */
export function nastyPassword(): string {
  return `p a$s'"\`;&|<>(){}*?!#~\\ ${randomBytes(6).toString('base64url')}`;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, sshd: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (sshd.exitCode !== null) throw new Error(`sshd exited: ${await readFile(logFile, 'utf8').catch(() => '')}`);
    const r = await run('ssh-keyscan', ['-T', '2', '-p', String(port), '127.0.0.1'], { reject: false });
    if (r.stdout.includes('ssh-')) return;
    await new Promise((r2) => setTimeout(r2, 100));
  }
  throw new Error('sshd did not start listening');
}

/** What a test needs to run as root with real sshd, FUSE and loop devices; a reason to skip otherwise. */
export async function e2eUnavailable(): Promise<string | undefined> {
  const reason = await missingForE2e();
  // CI must run every test: there a missing piece is a failure, never a silent skip.
  if (reason && process.env.CI) throw new Error(`end-to-end tests cannot run in CI: ${reason}`);
  return reason;
}

/** The same check, never throwing: the reason, or undefined when everything is there. */
export async function missingForE2e(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (mounts, loop devices, useradd)';
  for (const tool of ['/usr/sbin/sshd', '/usr/bin/sshfs', '/usr/sbin/useradd']) {
    if ((await run('test', ['-x', tool], { reject: false })).exitCode !== 0) return `needs ${tool}`;
  }
  if ((await run('test', ['-c', '/dev/fuse'], { reject: false })).exitCode !== 0) return 'needs /dev/fuse';
  if ((await run('losetup', ['-f'], { reject: false })).exitCode !== 0) return 'needs loop devices';
  return undefined;
}

export interface StartBoxOptions {
  password?: string;
  /**
   * Keep the box in this directory — its home (`home/`), host key, sshd files, and in `box.json` the
   * account's name, password and port — and leave all of it there on stop(). A later
   * startBox({ stateDir }) brings back the same box (same account, files, host key and port), also
   * where /etc/passwd starts afresh (a second boot of the test VM): the account is made again and
   * owns its home (chown -R when it got another uid). Every directory above it must be searchable by others (mkdtemp makes
   * 0700 ones): sshd has to reach the home as the account. Without it the box lives in a temporary directory and /home, and stop()
   * removes everything.
   */
  stateDir?: string;
}

/** What a box kept in a state directory needs to come back as the same box. */
interface SavedBox {
  user: string;
  password: string;
  port: number;
}

async function readSaved(file: string): Promise<SavedBox | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as SavedBox;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function startBox(opts: StartBoxOptions = {}): Promise<StandInBox> {
  const keep = opts.stateDir !== undefined;
  const dir = opts.stateDir ?? (await mkdtemp(join(tmpdir(), 'hbs-box-')));
  // The account must be able to reach its home below it.
  if (keep) await mkdir(dir, { recursive: true, mode: 0o755 });
  const savedFile = join(dir, 'box.json');
  const saved = keep ? await readSaved(savedFile) : undefined;
  const user = saved?.user ?? `u8${randomInt(1_000_000, 9_999_999)}`;
  const password = saved?.password ?? opts.password ?? nastyPassword();
  if (saved) {
    // The same account again, on the home it left. Its old uid may belong to someone else by now (the
    // VM sees the host's live /etc/passwd), so it gets whatever uid is free and takes its files along.
    await run('useradd', ['--no-create-home', '--home-dir', join(dir, 'home'), '--shell', '/bin/sh', user]);
    const uid = (await run('id', ['-u', user])).stdout.trim();
    const gid = (await run('id', ['-g', user])).stdout.trim();
    const home = join(dir, 'home');
    if ((await stat(home)).uid !== Number(uid)) await run('chown', ['-R', `${uid}:${gid}`, home]);
  } else {
    await run('useradd', ['--create-home', ...(keep ? ['--home-dir', join(dir, 'home')] : []), '--shell', '/bin/sh', user]);
  }
  let sshd: ChildProcess | undefined;
  const stop = async (): Promise<void> => {
    if (sshd && sshd.exitCode === null) {
      sshd.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 100));
    }
    // Sessions are separate processes owned by the account: end them too.
    await run('pkill', ['-KILL', '-u', user], { reject: false });
    await new Promise((r) => setTimeout(r, 100));
    if (keep) {
      // The account goes; its home and the state stay for the next startBox({ stateDir }).
      await run('userdel', [user], { reject: false });
      return;
    }
    await run('userdel', ['--remove', user], { reject: false });
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await run('chpasswd', [], { input: `${user}:${password}\n` });
    const entry = (await run('getent', ['passwd', user])).stdout.split(':');
    const home = entry[5] ?? `/home/${user}`;
    await run('chmod', ['0750', home]);
    const hostKey = join(dir, 'host_key');
    if (!saved || !(await exists(hostKey))) await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
    const pub = (await readFile(join(dir, 'host_key.pub'), 'utf8')).trim().split(/\s+/)[1] ?? '';
    const port = saved?.port ?? (await freePort());
    if (keep && !saved) {
      const record: SavedBox = { user, password, port };
      await writeFile(savedFile, JSON.stringify(record, null, 2) + '\n', { mode: 0o600 });
    }
    const config = join(dir, 'sshd_config');
    await writeFile(
      config,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        'PasswordAuthentication yes',
        'KbdInteractiveAuthentication no',
        'PubkeyAuthentication yes',
        'AuthorizedKeysFile .ssh/authorized_keys',
        'UsePAM no',
        'PermitRootLogin no',
        `AllowUsers ${user}`,
        'StrictModes yes',
        'MaxStartups 50',
        // Key exchange without sntrup761 (OpenSSH 9's first choice): under emulation in the test VM it
        // cost ~0.9 s of each connection's ~1.5 s. Nothing hbs does depends on the key exchange.
        'KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group14-sha256',
        'Subsystem sftp internal-sftp',
        '',
      ].join('\n'),
    );
    await run('mkdir', ['-p', '-m', '0755', '/run/sshd']);
    const logFile = join(dir, 'sshd.log');
    sshd = spawn('/usr/sbin/sshd', ['-D', '-f', config, '-E', logFile], { stdio: 'ignore' });
    await waitForPort(port, sshd, logFile);
    return { user, password, host: '127.0.0.1', port, home, hostKeyFingerprint: fingerprintOf(pub), dir, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
