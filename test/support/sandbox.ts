/**
 * A throw-away directory tree standing in for a machine's paths (box mount, mount point, config
 * directory, fstab), a config for it, fixed machine identity, and the io a command gets — with the
 * fake machine as runner and probes. For unit tests of commands and steps.
 */
import { mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryReporter } from '../../src/core/reporter.js';
import type { Prompter } from '../../src/core/prompter.js';
import type { CommandIo } from '../../src/commands/shared.js';
import { serializeConfig, type Config } from '../../src/lib/config.js';
import { lockText, type Lock } from '../../src/lib/lock.js';
import type { PreflightDeps } from '../../src/lib/preflight.js';
import type { Deps } from '../../src/steps/context.js';
import type { FakeMachine } from './fake-machine.js';

export const GiB = 1024 ** 3;
export const USER = 'u123456';
export const HOST = 'u123456.your-storagebox.de';
export const IMAGE = 'filesystem.img';
export const UUID = '3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b';
export const OTHER_UUID = '9d8c7b6a-5f4e-4d3c-9b2a-1f0e9d8c7b6a';
export const FIXED_NOW = new Date('2025-01-02T03:04:05.678Z');
export const HOSTNAME = 'testhost';
export const MACHINE_ID = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';
export const PID = 31337;
export const FINGERPRINT = 'SHA256:FCn3TNMO9ntzxlp0QCyvPt8E5fFd7l0aJ4z64DNR9NQ';
/** What sshfs shows as the source of this box's mount (fsname=). */
export const BOX_SOURCE = `sshfs#${USER}@${HOST}:backup`;
export const PASSPHRASE = 'correct horse battery staple';

export interface Sandbox {
  root: string;
  /** Where the box's files are while it is not mounted (see FakeMachine.box). */
  boxHome: string;
  boxMount: string;
  mountPoint: string;
  image: string;
  lock: string;
  configDir: string;
  config: string;
  sshKey: string;
  knownHosts: string;
  fstab: string;
  crypttab: string;
  cleanup(): Promise<void>;
}

export async function makeSandbox(): Promise<Sandbox> {
  // realpath: /proc/PID/cwd shows resolved paths.
  const root = await realpath(await mkdtemp(join(tmpdir(), 'hbs-unit-')));
  const configDir = join(root, 'etc', 'hbs');
  const boxMount = join(root, 'box');
  return {
    root,
    boxHome: join(root, 'box-home'),
    boxMount,
    mountPoint: join(root, 'mnt'),
    image: join(boxMount, IMAGE),
    lock: join(boxMount, `${IMAGE}.hbs-lock`),
    configDir,
    config: join(configDir, 'config.json'),
    sshKey: join(root, 'ssh', 'hbs_ed25519'),
    knownHosts: join(configDir, 'known_hosts'),
    fstab: join(root, 'fstab'),
    crypttab: join(root, 'crypttab'),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

export function makeConfig(sb: Sandbox, over: Partial<Config> = {}): Config {
  return {
    version: 1,
    box: { user: USER, host: HOST, port: 23, remotePath: 'backup' },
    ssh: { key: sb.sshKey, knownHosts: sb.knownHosts, hostKeyFingerprint: FINGERPRINT },
    boxMount: sb.boxMount,
    image: { name: IMAGE, sizeBytes: 10 * GiB, uuid: UUID, label: 'hbs-backup' },
    filesystem: { mountPoint: sb.mountPoint, mountOptions: ['noatime', 'noinit_itable'] },
    fstab: null,
    systemd: null,
    ...over,
  };
}

/** The config of an encrypted stack (LUKS2 with an unattended key unless told otherwise). */
export function encryptedConfig(sb: Sandbox, o: { unattended?: boolean } = {}): Config {
  return makeConfig(sb, {
    encryption: {
      type: 'luks2',
      mapperName: 'hbs-filesystem',
      keys: ['passphrase'],
      headerBackup: join(sb.configDir, 'hbs-filesystem.luks-header'),
      unattendedKeyFile: o.unattended ? join(sb.configDir, 'hbs-filesystem.key') : null,
    },
  });
}

export async function writeConfig(sb: Sandbox, cfg: Config): Promise<void> {
  await mkdir(sb.configDir, { recursive: true, mode: 0o700 });
  await writeFile(sb.config, serializeConfig(cfg), { mode: 0o600 });
}

export function makeDeps(over: Partial<Deps> = {}): Deps {
  return {
    now: () => FIXED_NOW,
    hostname: () => HOSTNAME,
    machineId: () => Promise.resolve(MACHINE_ID),
    pid: PID,
    uuid: () => UUID,
    mkTempDir: (prefix) => mkdtemp(join(tmpdir(), prefix)),
    sleep: () => Promise.resolve(),
    ...over,
  };
}

export const READY: PreflightDeps = { uid: () => 0, pathEnv: '/usr/bin:/usr/sbin:/bin:/sbin', exists: () => Promise.resolve(true) };

export type TestIo = CommandIo & { reporter: MemoryReporter };

/** What a command gets in a unit test: the fake machine, fixed identity, no terminal unless a prompter is given. */
export function testIo(m: FakeMachine, o: { prompter?: Prompter; stdin?: string | Buffer; env?: NodeJS.ProcessEnv; deps?: Partial<Deps> } = {}): TestIo {
  const stdin = o.stdin ?? '';
  return {
    reporter: new MemoryReporter(),
    prompter: o.prompter ? () => Promise.resolve(o.prompter!) : undefined,
    readStdin: () => Promise.resolve(String(stdin)),
    readStdinBytes: () => Promise.resolve(Buffer.from(stdin)),
    env: o.env ?? {},
    runner: m,
    probes: m.probes,
    deps: makeDeps(o.deps),
    preflight: READY,
  };
}

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

/** Writes the lock next to the image (the box must be mounted). */
export async function writeLock(sb: Sandbox, lock: Lock): Promise<void> {
  await writeFile(sb.lock, lockText(lock));
}

/** Writes a file on the box (it appears under the box mount once the box is mounted). */
export async function putOnBox(sb: Sandbox, name: string, content: string | Buffer = ''): Promise<string> {
  await mkdir(sb.boxHome, { recursive: true });
  await writeFile(join(sb.boxHome, name), content);
  return join(sb.boxMount, name);
}

/** The lock, wherever the box's files are now (mounted or not). */
export async function readLockFile(sb: Sandbox): Promise<Lock | undefined> {
  for (const path of [sb.lock, join(sb.boxHome, `${IMAGE}.hbs-lock`)]) {
    try {
      return JSON.parse(await readFile(path, 'utf8')) as Lock;
    } catch {
      // not there
    }
  }
  return undefined;
}

/** What a promise rejects with (fails the test when it resolves). */
export async function rejection(p: Promise<unknown>): Promise<Error & { exitCode?: number; hint?: string; details?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the promise to reject');
}

/** A prompter answering from a list, in order; records the questions. */
export function scriptedPrompter(answers: (string | boolean)[]): Prompter & { asked: string[] } {
  const queue = [...answers];
  const asked: string[] = [];
  const next = (message: string): string | boolean => {
    asked.push(message);
    if (queue.length === 0) throw new Error(`unexpected question: ${message}`);
    return queue.shift()!;
  };
  return {
    asked,
    input: (q) => Promise.resolve(String(next(q.message))),
    password: (q) => Promise.resolve(String(next(q.message))),
    confirm: (q) => Promise.resolve(Boolean(next(q.message))),
  };
}
