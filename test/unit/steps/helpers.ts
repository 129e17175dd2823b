/**
 * Shared helpers for the step tests: a throw-away directory tree standing in for the machine's
 * paths, hand-built options and context, and canned answers for every read-only probe the steps
 * run. Expected argv arrays are written out literally here (not built with the src helpers), so a
 * change to a command line shows up as a failing test.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Cmd } from '../../../src/core/runner.js';
import type { Expectation, RecordingRunner } from '../../../src/core/recording-runner.js';
import type { Runner } from '../../../src/core/runner.js';
import type { Config } from '../../../src/lib/config.js';
import { newState, type Deps, type InitContext, type InitState } from '../../../src/init/context.js';
import type { InitOptions } from '../../../src/init/options.js';
import { MemoryReporter } from '../../../src/ui/reporter.js';
import { HOST, sshfsOptions, USER } from '../canned.js';
export { findmnt, HOST, sftpProbe, sshfsOptions, USER, type Mounted } from '../canned.js';
import type { Mounted } from '../canned.js';

const run = promisify(execFile);

export const GiB = 1024 ** 3;
export const PORT = 23;
export const REMOTE_PATH = 'backup';
export const IMAGE = 'filesystem.img';
/** What sshfs reports as the source of the box mount. */
export const SSHFS_SOURCE = 'u123456@u123456.your-storagebox.de:backup';
export const FIXED_UUID = '3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b';
export const FIXED_NOW = new Date('2025-01-02T03:04:05.678Z');
export const HOSTNAME = 'testhost';
export const MACHINE_ID = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';

/** A real ed25519 public key (made once with ssh-keygen) and its fingerprint as ssh-keygen -l shows it. */
export const FIXTURE_KEY = {
  type: 'ssh-ed25519',
  blob: 'AAAAC3NzaC1lZDI1NTE5AAAAIOUiTSjaTBz44BEeedRSXHHI0WAZuFXeRYWa3+kxYYjo',
  fingerprint: 'SHA256:FCn3TNMO9ntzxlp0QCyvPt8E5fFd7l0aJ4z64DNR9NQ',
} as const;
export const FIXTURE_PUB = `${FIXTURE_KEY.type} ${FIXTURE_KEY.blob} hbs@testhost\n`;

/** The paths init touches, all inside one temp directory. Nothing is created but the root. */
export interface Sandbox {
  root: string;
  boxMount: string;
  mountPoint: string;
  image: string;
  configDir: string;
  config: string;
  knownHosts: string;
  sshDir: string;
  sshKey: string;
  fstab: string;
  /** Every directory deps.mkTempDir handed out, in order. */
  tempDirs: string[];
  /** The path deps.mkTempDir will return for its n-th call (0-based) with this prefix. */
  tempDir(prefix: string, n?: number): string;
  cleanup(): Promise<void>;
}

export async function makeSandbox(): Promise<Sandbox> {
  const root = await mkdtemp(join(tmpdir(), 'hbs-steps-'));
  const configDir = join(root, 'etc', 'hbs');
  const sshDir = join(root, 'ssh');
  return {
    root,
    boxMount: join(root, 'box'),
    mountPoint: join(root, 'mnt'),
    image: join(root, 'box', IMAGE),
    configDir,
    config: join(configDir, 'config.json'),
    knownHosts: join(configDir, 'known_hosts'),
    sshDir,
    sshKey: join(sshDir, 'hbs_ed25519'),
    fstab: join(root, 'fstab'),
    tempDirs: [],
    tempDir: (prefix, n = 0) => join(root, 'tmp', `${prefix}${n}`),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

export function makeOpts(sb: Sandbox, over: Partial<InitOptions> = {}): InitOptions {
  return {
    user: USER,
    host: HOST,
    port: PORT,
    remotePath: REMOTE_PATH,
    image: IMAGE,
    size: 100 * GiB,
    boxMount: sb.boxMount,
    mountPoint: sb.mountPoint,
    sshKey: sb.sshKey,
    hostKeyFingerprint: undefined,
    fstab: sb.fstab,
    config: sb.config,
    force: false,
    adopt: false,
    forceFormat: false,
    formatConfirmed: false,
    sizeGiven: true,
    stealLock: false,
    dryRun: false,
    verbose: false,
    yes: true,
    ...over,
  };
}

/** Fixed uuid/now/hostname; temp dirs are numbered per prefix so tests know their paths beforehand. */
export function makeDeps(sb: Sandbox): Deps {
  const counts = new Map<string, number>();
  return {
    uid: () => 0,
    uuid: () => FIXED_UUID,
    now: () => FIXED_NOW,
    hostname: () => HOSTNAME,
    machineId: () => Promise.resolve(MACHINE_ID),
    mkTempDir: async (prefix) => {
      const n = counts.get(prefix) ?? 0;
      counts.set(prefix, n + 1);
      const dir = sb.tempDir(prefix, n);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      sb.tempDirs.push(dir);
      return dir;
    },
  };
}

export interface CtxParts {
  runner: Runner;
  opts?: Partial<InitOptions>;
  password?: string;
  state?: Partial<InitState>;
}

export function makeCtx(sb: Sandbox, p: CtxParts): InitContext & { reporter: MemoryReporter } {
  return {
    opts: makeOpts(sb, p.opts),
    runner: p.runner,
    reporter: new MemoryReporter(),
    deps: makeDeps(sb),
    password: p.password,
    state: { ...newState(), ...p.state },
  };
}

/** The config a finished first run records for the sandbox (mount options ['noatime'] unless given). */
export function recordedConfig(sb: Sandbox, over: { image?: Partial<Config['image']>; mountOptions?: string[]; boxMount?: string } = {}): Config {
  return {
    version: 1,
    box: { user: USER, host: HOST, port: PORT, remotePath: REMOTE_PATH },
    ssh: { key: sb.sshKey, knownHosts: sb.knownHosts, hostKeyFingerprint: FIXTURE_KEY.fingerprint },
    boxMount: over.boxMount ?? sb.boxMount,
    image: { name: IMAGE, sizeBytes: 100 * GiB, uuid: FIXED_UUID, label: 'hbs-backup', ...over.image },
    filesystem: { mountPoint: sb.mountPoint, mountOptions: over.mountOptions ?? ['noatime'] },
    fstab: sb.fstab,
  };
}

/** The fstab block hbs must write for the sandbox, spelled out. */
export function fstabBlock(sb: Sandbox, mountOptions = 'noatime'): string {
  return [
    `# BEGIN hbs managed block (${sb.config}): edit with hbs, not by hand`,
    `sshfs#${SSHFS_SOURCE} ${sb.boxMount} fuse _netdev,nofail,noatime,${sshfsOptions(sb)} 0 0`,
    `${sb.image} ${sb.mountPoint} ext4 loop,_netdev,nofail,${mountOptions},x-systemd.requires-mounts-for=${sb.boxMount} 0 0`,
    `# END hbs managed block (${sb.config})`,
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Canned probes (literal argv)
// ---------------------------------------------------------------------------------------------



export const boxMounted: Mounted = { source: SSHFS_SOURCE, fstype: 'fuse.sshfs', options: 'rw,nosuid,nodev,relatime,user_id=0,group_id=0' };
export const loopMounted = (dev = '/dev/loop3'): Mounted => ({ source: dev, fstype: 'ext4', options: 'rw,noatime' });

export function losetup(device: string, backFile: string | undefined): Expectation {
  const argv = ['losetup', '--list', '--noheadings', '--output', 'BACK-FILE', device];
  return backFile === undefined ? { argv, write: false, exitCode: 1 } : { argv, write: false, stdout: `${backFile}\n` };
}

export function keyscan(stdout: string, exitCode = 0): Expectation {
  return { argv: ['ssh-keyscan', '-T', '10', '-p', String(PORT), '-t', 'ed25519,ecdsa,rsa', HOST], write: false, stdout, exitCode };
}


/** `stat --file-system` on the box mount: fragment size, blocks, available blocks. */
export function statFs(path: string, stdout: string): Expectation {
  return { argv: ['stat', '--file-system', '--format=%S %b %a', path], write: false, stdout };
}

/** `stat` of the image: exit 1 when it does not exist. */
export function statImage(path: string, facts?: { size: number; blocks: number }): Expectation {
  const argv = ['stat', '--format=%s %b %B', path];
  return facts ? { argv, write: false, stdout: `${facts.size} ${facts.blocks} 512\n` } : { argv, write: false, exitCode: 1, stderr: `stat: cannot statx '${path}': No such file or directory\n` };
}

/** `blkid --probe`: exit 2 when nothing is recognised. */
export function blkid(path: string, sig?: Record<string, string>): Expectation {
  const argv = ['blkid', '--probe', '--output', 'export', path];
  if (!sig) return { argv, write: false, exitCode: 2 };
  return { argv, write: false, stdout: Object.entries({ DEVNAME: path, ...sig }).map(([k, v]) => `${k}=${v}`).join('\n') + '\n' };
}

export function mke2fsVersion(version: string): Expectation {
  return { argv: ['mke2fs', '-V'], write: false, stderr: `mke2fs ${version} (5-Feb-2023)\n\tUsing EXT2FS Library version ${version}\n` };
}

/** `findmnt --verify --tab-file FILE`; exits 1 when it found errors, as findmnt does. */
export function verifyTab(file: string, out: { stderr?: string; stdout?: string; exitCode?: number }): Expectation {
  const text = (out.stderr ?? '') + (out.stdout ?? '');
  const clean = /Success, no errors/.test(text) || /\b0 parse errors, 0 errors\b/.test(text);
  return { argv: ['findmnt', '--verify', '--tab-file', file], write: false, stderr: out.stderr ?? '', stdout: out.stdout ?? '', exitCode: out.exitCode ?? (clean ? 0 : 1) };
}


// ---------------------------------------------------------------------------------------------
// Assertions and file helpers
// ---------------------------------------------------------------------------------------------

/** Commands that were run as (or would count as) changes. */
export function writeCalls(runner: RecordingRunner): Cmd[] {
  return runner.calls.filter((c) => c.write !== false);
}

/** Every file and directory under `dir` (relative paths, sorted); [] when it does not exist. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(e.isDirectory() ? `${r}/` : r);
      if (e.isDirectory()) await walk(join(d, e.name), r);
    }
  };
  await walk(dir, '');
  return out.sort();
}

export async function modeOf(path: string): Promise<number> {
  return (await stat(path)).mode & 0o7777;
}

export async function readText(path: string): Promise<string> {
  return readFile(path, 'utf8');
}

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

export interface GeneratedKey {
  type: string;
  blob: string;
  fingerprint: string;
}

/** A fresh key made by ssh-keygen, with the fingerprint ssh-keygen itself reports for it. */
export async function generateKey(dir: string, name: string, type: 'ed25519' | 'ecdsa' = 'ed25519'): Promise<GeneratedKey> {
  const file = join(dir, name);
  await run('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', name, '-f', file]);
  const [keyType = '', blob = ''] = (await readFile(`${file}.pub`, 'utf8')).trim().split(/\s+/);
  const { stdout } = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${file}.pub`]);
  const fingerprint = stdout.split(/\s+/)[1] ?? '';
  if (!fingerprint.startsWith('SHA256:')) throw new Error(`unexpected ssh-keygen -l output: ${stdout}`);
  return { type: keyType, blob, fingerprint };
}

/** ssh-keyscan's stdout for these keys, as it prints them for a non-22 port. */
export function keyscanOutput(...keys: GeneratedKey[]): string {
  return keys.map((k) => `[${HOST}]:${PORT} ${k.type} ${k.blob}\n`).join('');
}
