/**
 * Shared helpers for the lifecycle unit tests (mount, umount, status, lock): a throw-away directory
 * tree standing in for the box mount, the mount point and the config directory, a hand-built
 * config and context, and canned answers for every command the lifecycle code runs. Expected argv
 * arrays are written out literally (not built with the src helpers), so a changed command line
 * shows up as a failing test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cmd } from '../../../src/core/runner.js';
import type { Expectation, RecordingRunner } from '../../../src/core/recording-runner.js';
import type { Runner } from '../../../src/core/runner.js';
import type { Config } from '../../../src/lib/config.js';
import type { LifecycleContext, LifecycleDeps, LifecycleOptions } from '../../../src/lifecycle/context.js';
import type { Lock } from '../../../src/lifecycle/lock.js';
import { MemoryReporter } from '../../../src/ui/reporter.js';
import { HOST, sshfsOptions, USER } from '../canned.js';
export { exists } from '../../../src/lib/fs-util.js';
export { findmnt, HOST, sftpProbe, USER, type Mounted } from '../canned.js';
import type { Mounted } from '../canned.js';

export const GiB = 1024 ** 3;
export const IMAGE = 'filesystem.img';
/** What sshfs reports as the source of the box mount. */
export const SSHFS_SOURCE = 'u123456@u123456.your-storagebox.de:backup';
export const UUID = '3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b';
export const OTHER_UUID = '9d8c7b6a-5f4e-4d3c-9b2a-1f0e9d8c7b6a';
export const FIXED_NOW = new Date('2025-01-02T03:04:05.678Z');
export const HOSTNAME = 'testhost';
export const MACHINE_ID = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';
export const PID = 31337;
export const LOOP = '/dev/loop3';

/** The paths the lifecycle touches, all inside one temp directory. Only the root exists at first. */
export interface Sandbox {
  root: string;
  boxMount: string;
  mountPoint: string;
  image: string;
  lock: string;
  configDir: string;
  config: string;
  sshKey: string;
  knownHosts: string;
  fstab: string;
  cleanup(): Promise<void>;
}

export async function makeSandbox(): Promise<Sandbox> {
  // realpath: /proc/PID/cwd shows resolved paths, and holdersOf compares against them.
  const root = await realpath(await mkdtemp(join(tmpdir(), 'hbs-life-unit-')));
  const configDir = join(root, 'etc', 'hbs');
  const boxMount = join(root, 'box');
  return {
    root,
    boxMount,
    mountPoint: join(root, 'mnt'),
    image: join(boxMount, IMAGE),
    lock: join(boxMount, `${IMAGE}.hbs-lock`),
    configDir,
    config: join(configDir, 'config.json'),
    sshKey: join(root, 'ssh', 'hbs_ed25519'),
    knownHosts: join(configDir, 'known_hosts'),
    fstab: join(root, 'fstab'),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

export function makeConfig(sb: Sandbox, over: Partial<Config> = {}): Config {
  return {
    version: 1,
    box: { user: USER, host: HOST, port: 23, remotePath: 'backup' },
    ssh: { key: sb.sshKey, knownHosts: sb.knownHosts, hostKeyFingerprint: 'SHA256:FCn3TNMO9ntzxlp0QCyvPt8E5fFd7l0aJ4z64DNR9NQ' },
    boxMount: sb.boxMount,
    image: { name: IMAGE, sizeBytes: 10 * GiB, uuid: UUID, label: 'hbs' },
    filesystem: { mountPoint: sb.mountPoint, mountOptions: ['noatime', 'nodev'] },
    fstab: null,
    ...over,
  };
}

export function makeDeps(over: Partial<LifecycleDeps> = {}): LifecycleDeps {
  return {
    now: () => FIXED_NOW,
    hostname: () => HOSTNAME,
    machineId: () => Promise.resolve(MACHINE_ID),
    pid: PID,
    ...over,
  };
}

export type TestContext = LifecycleContext & { reporter: MemoryReporter };

export function makeCtx(sb: Sandbox, runner: Runner, opts: Partial<LifecycleOptions> = {}, cfg: Config = makeConfig(sb)): TestContext {
  return {
    cfg,
    configPath: sb.config,
    runner,
    reporter: new MemoryReporter(),
    deps: makeDeps(),
    opts: { force: false, stealLock: false, verbose: false, ...opts },
  };
}

// ---------------------------------------------------------------------------------------------
// Locks
// ---------------------------------------------------------------------------------------------

export const otherLock: Lock = {
  hostname: 'other-host',
  machineId: 'a1b2c3d4e5f60718293a4b5c6d7e8f90',
  pid: 4242,
  time: '2025-01-01T00:00:00.000Z',
  config: '/etc/hbs/config.json',
};

export function ourLock(sb: Sandbox, over: Partial<Lock> = {}): Lock {
  return { hostname: HOSTNAME, machineId: MACHINE_ID, pid: 111, time: '2024-12-31T23:00:00.000Z', config: sb.config, ...over };
}

/** The lock as hbs writes it for this machine at FIXED_NOW. */
export function freshLock(sb: Sandbox): Lock {
  return { hostname: HOSTNAME, machineId: MACHINE_ID, pid: PID, time: FIXED_NOW.toISOString(), config: sb.config };
}

export const lockText = (lock: Lock): string => JSON.stringify(lock, null, 2) + '\n';

export async function readJson(path: string): Promise<unknown> {
  return JSON.parse(await readFile(path, 'utf8')) as unknown;
}


// ---------------------------------------------------------------------------------------------
// Canned commands (literal argv)
// ---------------------------------------------------------------------------------------------



export const boxMounted: Mounted = { source: SSHFS_SOURCE, fstype: 'fuse.sshfs', options: 'rw,nosuid,nodev,relatime,user_id=0,group_id=0' };
export const loopMounted = (dev = LOOP, options = 'rw,nodev,noatime'): Mounted => ({ source: dev, fstype: 'ext4', options });

/** `stat --file-system` on the box mount: fragment size, blocks, available blocks. */
export const BOX_STATFS = '4096 26214400 13107200\n'; // 100 GiB, 50 GiB free
export function statFs(path: string, stdout = BOX_STATFS): Expectation {
  return { argv: ['stat', '--file-system', '--format=%S %b %a', path], write: false, stdout };
}

/** What `stat -f` says on a dead sshfs mount. */
export function statFsDead(path: string): Expectation {
  return {
    argv: ['stat', '--file-system', '--format=%S %b %a', path],
    write: false,
    exitCode: 1,
    stderr: `stat: cannot read file system information for '${path}': Transport endpoint is not connected\n`,
  };
}

/** `losetup --list --json`: every loop device with its backing file; no output when there is none. */
export function loopList(...devices: [name: string, backFile: string | null][]): Expectation {
  const argv = ['losetup', '--list', '--json', '--output', 'NAME,BACK-FILE'];
  if (devices.length === 0) return { argv, write: false, stdout: '' };
  const loopdevices = devices.map(([name, back]) => ({ name, 'back-file': back }));
  return { argv, write: false, stdout: JSON.stringify({ loopdevices }, null, 3) + '\n' };
}

/** `losetup --list --noheadings --output BACK-FILE DEV`. */
export function backing(device: string, backFile: string | undefined): Expectation {
  const argv = ['losetup', '--list', '--noheadings', '--output', 'BACK-FILE', device];
  return backFile === undefined ? { argv, write: false, exitCode: 1 } : { argv, write: false, stdout: `${backFile}\n` };
}

/** The direct-I/O read of one block from the loop device. */
export function dd(device: string, exitCode = 0, stderr = ''): Expectation {
  return { argv: ['dd', `if=${device}`, 'of=/dev/null', 'bs=4096', 'count=1', 'iflag=direct', 'status=none'], write: false, exitCode, stderr };
}

/** `stat` of the image: exit 1 when it does not exist. */
export function statImage(path: string, facts?: { size: number; blocks: number }): Expectation {
  const argv = ['stat', '--format=%s %b %B', path];
  return facts
    ? { argv, write: false, stdout: `${facts.size} ${facts.blocks} 512\n` }
    : { argv, write: false, exitCode: 1, stderr: `stat: cannot statx '${path}': No such file or directory\n` };
}
export const IMAGE_FACTS = { size: 10 * GiB, blocks: 2097152 }; // 10 GiB apparent, 1 GiB allocated

/** `blkid --probe --output export`: exit 2 when nothing is recognised. */
export function blkid(path: string, sig?: Record<string, string>): Expectation {
  const argv = ['blkid', '--probe', '--output', 'export', path];
  if (!sig) return { argv, write: false, exitCode: 2 };
  return { argv, write: false, stdout: Object.entries({ DEVNAME: path, ...sig }).map(([k, v]) => `${k}=${v}`).join('\n') + '\n' };
}
export const EXT4_SIG = { LABEL: 'hbs', UUID, BLOCK_SIZE: '4096', TYPE: 'ext4' };

export function sshfs(sb: Sandbox, result: Partial<Expectation> = {}): Expectation {
  return { argv: ['sshfs', '-o', sshfsOptions(sb), SSHFS_SOURCE, sb.boxMount], write: true, ...result };
}

export function mountImage(sb: Sandbox, result: Partial<Expectation> = {}): Expectation {
  return { argv: ['mount', '-t', 'ext4', '-o', 'loop,noatime,nodev', sb.image, sb.mountPoint], write: true, ...result };
}

export function write(argv: string[], result: Partial<Expectation> = {}): Expectation {
  return { argv, write: true, ...result };
}


/** `ssh … du -k PATH` on the box (port 23), for the allocated size of the image. */
export function remoteDu(sb: Sandbox, path: string, stdout: string, exitCode = 0): Expectation {
  return {
    argv: [
      'ssh', '-p', '23', '-o', 'ConnectTimeout=20',
      '-o', `IdentityFile=${sb.sshKey}`,
      '-o', 'IdentitiesOnly=yes',
      '-o', `UserKnownHostsFile=${sb.knownHosts}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', 'ServerAliveInterval=15',
      '-o', 'ServerAliveCountMax=3',
      '-o', 'BatchMode=yes',
      `${USER}@${HOST}`, 'du', '-k', path,
    ],
    write: false,
    stdout,
    exitCode,
  };
}

// ---------------------------------------------------------------------------------------------
// Assertions and processes
// ---------------------------------------------------------------------------------------------

/** Commands that were run as (or would count as) changes. */
export function writeCalls(runner: RecordingRunner): Cmd[] {
  return runner.calls.filter((c) => c.write !== false);
}

export const argvs = (cmds: readonly Cmd[]): string[][] => cmds.map((c) => [...c.argv]);

/** Awaits a promise that must reject, and returns what it rejected with. */
export async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    if (err instanceof Error) return err;
    throw new Error(`rejected with a non-Error: ${String(err)}`);
  }
  throw new Error('expected a rejection, but the promise resolved');
}

/** Starts a process (in its own process group) and resolves once it has exec'd. */
export async function startProcess(file: string, args: string[], opts: { cwd?: string; argv0?: string } = {}): Promise<ChildProcess> {
  const child = spawn(file, args, { ...opts, stdio: 'ignore', detached: true });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', reject);
  });
  return child;
}

/** Ends a process started by startProcess, and everything in its process group. */
export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    return;
  }
  await gone;
}
