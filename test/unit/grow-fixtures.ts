/**
 * A machine for the `hbs grow` unit tests: a config in a temp directory, and canned answers for
 * every read-only probe grow runs, in the order it runs them. Argv arrays are written out
 * literally, so a changed command line shows up as a failing test.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { HbsError } from '../../src/core/errors.js';
import { RecordingRunner, type Expectation } from '../../src/core/recording-runner.js';
import { growCommand, type GrowCliFlags } from '../../src/commands/grow.js';
import type { Config } from '../../src/lib/config.js';
import type { GrowDeps } from '../../src/grow/context.js';
import type { Prompter } from '../../src/init/prompter.js';
import { MemoryReporter } from '../../src/ui/reporter.js';

export const GiB = 1024 ** 3;
export const UUID = '3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b';
export const DEV = '/dev/loop3';
export const MACHINE_ID = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';
export const SSHFS_SOURCE = 'u123456@u123456.your-storagebox.de:backup';

export interface GrowSandbox {
  root: string;
  boxMount: string;
  mountPoint: string;
  image: string;
  config: string;
  cfg: Config;
  cleanup(): Promise<void>;
}

export async function makeGrowSandbox(recordedBytes = GiB): Promise<GrowSandbox> {
  const root = await mkdtemp(join(tmpdir(), 'hbs-grow-'));
  const boxMount = join(root, 'box');
  const mountPoint = join(root, 'mnt');
  const config = join(root, 'etc', 'config.json');
  const cfg: Config = {
    version: 1,
    box: { user: 'u123456', host: 'u123456.your-storagebox.de', port: 23, remotePath: 'backup' },
    ssh: { key: '/root/.ssh/hbs_ed25519', knownHosts: '/etc/hbs/known_hosts', hostKeyFingerprint: 'SHA256:FCn3TNMO9ntzxlp0QCyvPt8E5fFd7l0aJ4z64DNR9NQ' },
    boxMount,
    image: { name: 'filesystem.img', sizeBytes: recordedBytes, uuid: UUID, label: 'hbs-backup' },
    filesystem: { mountPoint, mountOptions: ['noatime'] },
    fstab: null,
  };
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(config, JSON.stringify(cfg, null, 2) + '\n', { mode: 0o600 });
  return { root, boxMount, mountPoint, image: join(boxMount, 'filesystem.img'), config, cfg, cleanup: () => rm(root, { recursive: true, force: true }) };
}

export async function recordedSize(sb: GrowSandbox): Promise<number> {
  return (JSON.parse(await readFile(sb.config, 'utf8')) as Config).image.sizeBytes;
}

export interface MachineState {
  fileBytes: number;
  /** Bytes the box's du reports; undefined: no shell (port 22). */
  allocatedBytes?: number;
  fsBlocks: number;
  mounted: boolean;
  /** Free bytes on the box. */
  freeBytes?: number;
  totalBytes?: number;
  /** Loop devices attached to the image besides the mounted one. */
  extraLoops?: string[];
}

const dumpe2fs = (blocks: number): string =>
  `Filesystem volume name:   hbs-backup\nBlock count:              ${blocks}\nBlock size:               4096\nBlocks per group:         32768\nInodes per group:         8192\nInode size:               256\n`;

export const statImage = (sb: GrowSandbox, size: number): Expectation => ({ argv: ['stat', '--format=%s %b %B', sb.image], write: false, stdout: `${size} ${Math.ceil(size / 512)} 512\n` });

export const findmntMp = (sb: GrowSandbox, mounted: boolean): Expectation => {
  const argv = ['findmnt', '--json', '--mountpoint', sb.mountPoint, '--output', 'TARGET,SOURCE,FSTYPE,OPTIONS'];
  return mounted
    ? { argv, write: false, stdout: JSON.stringify({ filesystems: [{ target: sb.mountPoint, source: DEV, fstype: 'ext4', options: 'rw,noatime' }] }) }
    : { argv, write: false, exitCode: 1 };
};

export const backFile = (sb: GrowSandbox, dev = DEV): Expectation => ({ argv: ['losetup', '--list', '--noheadings', '--output', 'BACK-FILE', dev], write: false, stdout: `${sb.image}\n` });

export const loops = (sb: GrowSandbox, devs: string[]): Expectation => ({
  argv: ['losetup', '--list', '--json', '--output', 'NAME,BACK-FILE'],
  write: false,
  stdout: JSON.stringify({ loopdevices: [...devs.map((name) => ({ name, 'back-file': sb.image })), { name: '/dev/loop9', 'back-file': '/elsewhere.img' }] }),
});

export const geometry = (device: string, blocks: number): Expectation => ({ argv: ['dumpe2fs', '-h', device], write: false, stdout: dumpe2fs(blocks) });

/** Every read-only probe `gatherFacts` runs, in order. */
export function probes(sb: GrowSandbox, m: MachineState): Expectation[] {
  const free = m.freeBytes ?? 100 * GiB;
  const total = m.totalBytes ?? 1000 * GiB;
  const box: Expectation[] = [
    {
      argv: ['findmnt', '--json', '--mountpoint', sb.boxMount, '--output', 'TARGET,SOURCE,FSTYPE,OPTIONS'],
      write: false,
      stdout: JSON.stringify({ filesystems: [{ target: sb.boxMount, source: SSHFS_SOURCE, fstype: 'fuse.sshfs', options: 'rw' }] }),
    },
    { argv: ['stat', '--file-system', '--format=%S %b %a', sb.boxMount], write: false, stdout: `4096 ${total / 4096} ${free / 4096}\n` },
    statImage(sb, m.fileBytes),
    { argv: ['blkid', '--probe', '--output', 'export', sb.image], write: false, stdout: `DEVNAME=${sb.image}\nUUID=${UUID}\nTYPE=ext4\n` },
    findmntMp(sb, m.mounted),
  ];
  const fs: Expectation[] = m.mounted
    ? [backFile(sb), { argv: ['dd', `if=${DEV}`, 'of=/dev/null', 'bs=4096', 'count=1', 'iflag=direct', 'status=none'], write: false }]
    : [];
  return [
    ...box,
    ...fs,
    loops(sb, [...(m.mounted ? [DEV] : []), ...(m.extraLoops ?? [])]),
    geometry(m.mounted ? DEV : sb.image, m.fsBlocks),
    remoteDu(m.allocatedBytes),
  ];
}

export function remoteDu(allocatedBytes: number | undefined): Expectation {
  const argv = [
    'ssh', '-p', '23', '-o', 'ConnectTimeout=20',
    '-o', 'IdentityFile=/root/.ssh/hbs_ed25519',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'UserKnownHostsFile=/etc/hbs/known_hosts',
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'ServerAliveInterval=15',
    '-o', 'ServerAliveCountMax=3',
    '-o', 'BatchMode=yes',
    'u123456@u123456.your-storagebox.de', 'du', '-k', 'backup/filesystem.img',
  ];
  return allocatedBytes === undefined
    ? { argv, write: false, exitCode: 1, stderr: 'This service allows sftp connections only.\n' }
    : { argv, write: false, stdout: `${allocatedBytes / 1024}\tbackup/filesystem.img\n` };
}

export function makeDeps(over: Partial<GrowDeps> = {}): GrowDeps {
  let t = Date.parse('2025-01-02T03:04:05.000Z');
  return {
    now: () => new Date((t += 250)),
    sleep: () => Promise.resolve(),
    machineId: () => Promise.resolve(MACHINE_ID),
    canResizeOnline: () => Promise.resolve(true),
    missingTools: () => Promise.resolve([]),
    ...over,
  };
}

/** A prompter that answers confirm() from a list and records every question. */
export function answering(...answers: boolean[]): Prompter & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    input: () => Promise.reject(new Error('no input() expected')),
    password: () => Promise.reject(new Error('no password() expected')),
    confirm: (q) => {
      asked.push(q.message);
      const a = answers.shift();
      return a === undefined ? Promise.reject(new Error(`unexpected question: ${q.message}`)) : Promise.resolve(a);
    },
  };
}

export class ProgressReporter extends MemoryReporter {
  readonly progressed: string[] = [];
  progress(text: string): void {
    this.progressed.push(text);
  }
}

// --- encrypted (LUKS2) images ---------------------------------------------------------------------

export const NAME = 'hbs-filesystem';
export const MAPPER = `/dev/mapper/${NAME}`;
export const CRYPT_LOOP = '/dev/loop5';
/** cryptsetup's LUKS2 data offset for a file: 16 MiB of header before the ext4. */
export const OFFSET = 16 * 2 ** 20;

/** An encrypted config: the mapping's name, and noinit_itable as init records it. */
export async function makeLuksSandbox(recordedBytes = GiB): Promise<GrowSandbox> {
  const sb = await makeGrowSandbox(recordedBytes);
  sb.cfg = {
    ...sb.cfg,
    filesystem: { ...sb.cfg.filesystem, mountOptions: ['noatime', 'noinit_itable'] },
    encryption: { type: 'luks2', mapperName: NAME, keys: ['passphrase'], headerBackup: join(sb.root, 'etc', `${NAME}.luks-header`), unattendedKeyFile: null },
  };
  await writeFile(sb.config, JSON.stringify(sb.cfg, null, 2) + '\n', { mode: 0o600 });
  return sb;
}

export interface LuksState {
  fileBytes: number;
  allocatedBytes?: number;
  /** ext4's block count inside the mapping (read only when the mapping is open). */
  fsBlocks: number;
  mounted: boolean;
  /** The mapping is open (always when mounted). */
  open?: boolean;
  /** The open mapping's size; defaults to the file minus the header. */
  mapperBytes?: number;
  keyLocation?: 'keyring' | 'dm-crypt';
}

export const cryptStatus = (sb: GrowSandbox, open: boolean, keyLocation = 'keyring', mapperBytes = 0): Expectation => ({
  argv: ['cryptsetup', 'status', NAME],
  write: false,
  ...(open
    ? {
        stdout:
          `${MAPPER} is active and is in use.\n  type:    LUKS2\n  cipher:  aes-xts-plain64\n  keysize: 512 bits\n  key location: ${keyLocation}\n` +
          `  device:  ${CRYPT_LOOP}\n  loop:    ${sb.image}\n  sector size:  4096\n  offset:  32768 sectors\n  size:    ${mapperBytes / 512} sectors\n  mode:    read/write\n`,
      }
    : { exitCode: 4 }),
});

export const findmntMapper = (sb: GrowSandbox, mounted: boolean): Expectation => {
  const argv = ['findmnt', '--json', '--mountpoint', sb.mountPoint, '--output', 'TARGET,SOURCE,FSTYPE,OPTIONS'];
  return mounted
    ? { argv, write: false, stdout: JSON.stringify({ filesystems: [{ target: sb.mountPoint, source: MAPPER, fstype: 'ext4', options: 'rw,noatime' }] }) }
    : { argv, write: false, exitCode: 1 };
};

export const luksDump = (sb: GrowSandbox): Expectation => ({
  argv: ['cryptsetup', 'luksDump', '--dump-json-metadata', sb.image],
  write: false,
  stdout: JSON.stringify({
    keyslots: { '0': { type: 'luks2' } },
    segments: { '0': { type: 'crypt', offset: String(OFFSET), size: 'dynamic', iv_tweak: '0', encryption: 'aes-xts-plain64', sector_size: 4096 } },
  }),
});

export const mapperSize = (bytes: number): Expectation => ({ argv: ['blockdev', '--getsize64', MAPPER], write: false, stdout: `${bytes}\n` });

/** Every read-only probe `gatherFacts` runs for an encrypted image, in order. */
export function luksProbes(sb: GrowSandbox, m: LuksState): Expectation[] {
  const open = m.mounted || Boolean(m.open);
  const mapperBytes = m.mapperBytes ?? m.fileBytes - OFFSET;
  const loc = m.keyLocation ?? 'keyring';
  return [
    {
      argv: ['findmnt', '--json', '--mountpoint', sb.boxMount, '--output', 'TARGET,SOURCE,FSTYPE,OPTIONS'],
      write: false,
      stdout: JSON.stringify({ filesystems: [{ target: sb.boxMount, source: SSHFS_SOURCE, fstype: 'fuse.sshfs', options: 'rw' }] }),
    },
    { argv: ['stat', '--file-system', '--format=%S %b %a', sb.boxMount], write: false, stdout: `4096 ${(1000 * GiB) / 4096} ${(100 * GiB) / 4096}\n` },
    statImage(sb, m.fileBytes),
    { argv: ['blkid', '--probe', '--output', 'export', sb.image], write: false, stdout: `DEVNAME=${sb.image}\nUUID=0d9a-luks\nTYPE=crypto_LUKS\nVERSION=2\n` },
    findmntMapper(sb, m.mounted),
    ...(m.mounted
      ? [cryptStatus(sb, true, loc, mapperBytes), { argv: ['dd', `if=${MAPPER}`, 'of=/dev/null', 'bs=4096', 'count=1', 'iflag=direct', 'status=none'], write: false }]
      : []),
    cryptStatus(sb, open, loc, mapperBytes),
    ...(open ? [{ argv: ['blkid', '--probe', '--output', 'export', MAPPER], write: false, stdout: `DEVNAME=${MAPPER}\nUUID=${UUID}\nTYPE=ext4\n` }, mapperSize(mapperBytes)] : []),
    loops(sb, open ? [CRYPT_LOOP] : []),
    luksDump(sb),
    ...(open ? [geometry(MAPPER, m.fsBlocks)] : []),
    remoteDu(m.allocatedBytes),
  ];
}

/** One `hbs grow` run: the recording runner, what was shown, how often --luks-key-stdin read stdin. */
export interface GrowRun {
  runner: RecordingRunner;
  reporter: MemoryReporter;
  stdinReads: number;
}

export function setupRun(expectations: Expectation[], dryRun = false): GrowRun {
  return { runner: new RecordingRunner(expectations, dryRun), reporter: new ProgressReporter(), stdinReads: 0 };
}

export interface GrowRunOptions {
  /** A terminal to ask in; without one the run is as with --yes. */
  prompter?: Prompter;
  /** Whether the kernel would allow an online resize (CAP_SYS_RESOURCE). */
  cap?: boolean;
  uid?: number;
  /** What --luks-key-stdin reads. */
  stdin?: string;
}

/** growCommand on the sandbox's config, as the CLI calls it. */
export function runGrow(sb: GrowSandbox, run: GrowRun, flags: GrowCliFlags, o: GrowRunOptions = {}): ReturnType<typeof growCommand> {
  return growCommand(
    { config: sb.config, yes: o.prompter === undefined, ...flags },
    {
      reporter: run.reporter,
      runner: run.runner,
      uid: () => o.uid ?? 0,
      prompter: o.prompter ? () => Promise.resolve(o.prompter as Prompter) : undefined,
      readStdinBytes: () => {
        run.stdinReads++;
        return Promise.resolve(Buffer.from(o.stdin ?? ''));
      },
    },
    makeDeps({ canResizeOnline: () => Promise.resolve(o.cap ?? true) }),
  );
}

export async function rejection(p: Promise<unknown>): Promise<HbsError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(HbsError);
    return err as HbsError;
  }
  throw new Error('expected a rejection');
}

/** The commands that changed something, as command lines. */
export const writes = (r: RecordingRunner): string[] => r.calls.filter((c) => c.write !== false).map((c) => c.argv.join(' '));
export const text = (r: MemoryReporter): string => r.lines.join('\n');
