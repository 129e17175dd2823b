import { realpath, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { readOnly, type Runner } from '../core/runner.js';
import { canResizeOnline } from './capability.js';
import { parseUndoHeader, type UndoLog } from './e2undo.js';
import { parseDumpe2fs, type Superblock } from './ext4.js';
import { deviceUsers, holdersOf, sshfsPidsFor, type Holder } from './holders.js';
import { parseKeyscan, type HostKey } from './host-keys.js';
import { luksTestKeyCmd, parseLuksJson, parseStatus, type ActiveMapping, type LuksInfo, type LuksKey } from './luks.js';
import { parseSftpDf, type BoxSpace } from './remote-df.js';
import { sftpBatchArgv, sshOptionPairs, type BoxConn } from './ssh.js';

/**
 * Every question hbs asks the machine or the box, in one place. All of them are read-only: the
 * commands go through a read-only view of the runner, which refuses anything marked as a write.
 * Steps see the machine only through this interface, so tests can answer from a table of what
 * exists (test/support/fake-machine.ts) instead of scripting the order of commands.
 */
export interface Probes {
  /** What is mounted exactly at `path` (the top of a stack of mounts), or undefined. */
  mountAt(path: string): Promise<MountInfo | undefined>;
  /** Every loop device, with its backing file and whether it does direct I/O. */
  loops(): Promise<LoopDevice[]>;
  /** Size and allocated bytes of a file (undefined when there is none). */
  file(path: string): Promise<FileFacts | undefined>;
  /** What blkid recognises in a file or device (TYPE, UUID, LABEL…); {} when nothing. */
  signature(path: string): Promise<Record<string, string>>;
  /** Total and free bytes of the filesystem at `path` (statvfs; on sshfs the box's quota). Rejects with the reason when it does not answer. */
  space(path: string): Promise<BoxSpace>;
  /** Size, used and free bytes of a mounted filesystem (df), undefined when it cannot be read. */
  usage(mountPoint: string): Promise<{ size: number; used: number; free: number } | undefined>;
  /** Whether a direct read of one block of the device works (a stale sshfs handle fails here). */
  readsBack(device: string): Promise<{ ok: true } | { ok: false; why: string }>;
  /** Size of a block device in bytes, undefined when it cannot be read. */
  deviceBytes(device: string): Promise<number | undefined>;
  /** `cryptsetup status NAME`: undefined when the mapping is not active. */
  mapping(name: string): Promise<ActiveMapping | undefined>;
  /** The LUKS2 metadata of a container (no key needed). Rejects when there is none. */
  luksInfo(image: string): Promise<LuksInfo>;
  /** Whether a key opens a key slot (`open --test-passphrase`); rejects when cryptsetup could not tell. */
  testKey(image: string, key: LuksKey): Promise<'ok' | 'wrong'>;
  /** The ext4 superblock (dumpe2fs -h). Rejects with the reason when it cannot be read. */
  superblock(device: string): Promise<Superblock>;
  /** The host keys an SSH server offers, most preferred type first; [] when none came. */
  hostKeys(host: string, port: number): Promise<HostKey[]>;
  /** What a resize2fs undo file says of the resize that wrote it (lib/e2undo.ts). */
  undoLog(file: string, device: string): Promise<UndoLog>;
  /** Whether key login works, over SFTP (port 22 of a real box offers no shell). */
  keyLogin(c: BoxConn): Promise<{ ok: boolean; stderr: string }>;
  /** Key login and, if it works, the box's space, in one sftp batch (mounts nothing). */
  boxSpaceOverSftp(c: BoxConn): Promise<{ login: boolean; space?: BoxSpace }>;
  /** Bytes a file really occupies on the box (its `du` over ssh; port 23 only), undefined when it cannot tell. */
  remoteAllocated(c: BoxConn, name: string): Promise<number | undefined>;
  /** e2fsprogs' version from `mke2fs -V`; undefined when it cannot tell. */
  e2fsprogsVersion(): Promise<[number, number, number] | undefined>;
  /** `findmnt --verify` on a would-be fstab text: its counts of parse errors and errors, and what it said. */
  verifyTab(text: string): Promise<{ parse: number; errors: number; report: string }>;
  /** The public key (OpenSSH line) of a private key file. */
  publicKeyOf(privateKey: string): Promise<string>;
  /** Processes that keep a mount busy (like `fuser -vm`). */
  holders(mount: string): Promise<Holder[]>;
  /** The readahead of a mount's backing device (its bdi in sysfs, by MAJ:MIN); undefined when the kernel has none. */
  readAhead(devno: string): Promise<{ path: string; kb: number } | undefined>;
  /** What keeps a block device in use: processes with it open, other mount namespaces that mount it. */
  deviceUsers(device: string): Promise<Holder[]>;
  /** PIDs of sshfs processes serving the mount at `target`. */
  sshfsPids(target: string): Promise<number[]>;
  /** Whether programs started here can hold CAP_SYS_RESOURCE (online resize); undefined: cannot tell. */
  canResizeOnline(): Promise<boolean | undefined>;
  /** Whether systemd runs this machine (sd_booted: /run/systemd/system exists). */
  systemdRunning(): Promise<boolean>;
  /**
   * What the kernel logged about failed writes to the filesystem with this UUID since it was last
   * mounted from `devices` (its device, and for LUKS the loop device under it): I/O errors, an
   * aborted journal, ext4 errors. The superblock learns of them only later (or never, when writing
   * it fails too); the kernel log has them at once.
   */
  kernelErrors(devices: readonly string[], uuid: string): Promise<string[]>;
  /** Whether systemd takes an OnCalendar= spec (`systemd-analyze calendar`): its normalised form, or why not; undefined when systemd-analyze is missing. */
  calendar(spec: string): Promise<{ ok: true; normalized: string } | { ok: false; why: string } | undefined>;
}

export interface MountInfo {
  target: string;
  source: string;
  fstype: string;
  options: string;
  /** The device number (MAJ:MIN; a FUSE mount's is 0:N), where findmnt gave it. */
  devno?: string;
}

export interface LoopDevice {
  name: string;
  /** The file behind it (" (deleted)" stripped), or null. */
  backFile: string | null;
  directIo: boolean;
}

export interface FileFacts {
  sizeBytes: number;
  allocatedBytes: number;
}

const PROBE_TIMEOUT = 30_000;
/** dumpe2fs's times in one zone, whatever the machine's: they are compared across runs. */
const UTC = { TZ: 'UTC', LC_ALL: 'C' };

/** The kernel's lines about failed writes to one of `names` (loop0, dm-1), after the filesystem `uuid` was last mounted from the first. */
export function kernelErrorsIn(log: string, names: readonly string[], uuid: string): string[] {
  const lines = log.split('\n');
  const [fsDev] = names;
  const mounted = lines.findLastIndex((l) => fsDev !== undefined && l.includes(`EXT4-fs (${fsDev}): mounted filesystem ${uuid}`));
  if (mounted < 0) return [];
  const about = (l: string): boolean =>
    names.some((n) => l.includes(`dev ${n},`) || l.includes(`dev ${n} `) || l.includes(`(device ${n})`) || l.includes(`(${n})`) || l.includes(`device ${n}-`) || l.includes(`for ${n}-`));
  const bad = /I\/O error|Aborting journal|EXT4-fs error|lost sync page write|potential data loss|Remounting filesystem read-only|Detected aborted journal/;
  return lines.slice(mounted + 1).filter((l) => about(l) && bad.test(l)).map((l) => l.replace(/^\[\s*[\d.]+\]\s*/, ''));
}

/** The probes, answered by running read-only commands. */
export function commandProbes(runner: Runner, mkTempDir: (prefix: string) => Promise<string>): Probes {
  const ro = readOnly(runner);
  const run = (argv: string[], extra: { stdin?: string | Uint8Array; timeoutMs?: number; env?: Record<string, string> } = {}) =>
    ro.run({
      argv,
      write: false,
      allowFail: true,
      timeoutMs: extra.timeoutMs ?? PROBE_TIMEOUT,
      ...(extra.stdin !== undefined ? { stdin: extra.stdin } : {}),
      ...(extra.env ? { env: extra.env } : {}),
    });

  return {
    async mountAt(path) {
      const r = await run(['findmnt', '--json', '--mountpoint', path, '--output', 'TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN']);
      if (r.exitCode !== 0 || !r.stdout.trim()) return undefined;
      const parsed = JSON.parse(r.stdout) as { filesystems?: (Partial<MountInfo> & { 'maj:min'?: string })[] };
      // With stacked mounts findmnt lists each; the last one is on top and the one that counts.
      const fs = parsed.filesystems?.at(-1);
      if (!fs) return undefined;
      return { target: fs.target ?? path, source: fs.source ?? '', fstype: fs.fstype ?? '', options: fs.options ?? '', ...(fs['maj:min'] ? { devno: fs['maj:min'] } : {}) };
    },
    async loops() {
      const r = await run(['losetup', '--list', '--json', '--output', 'NAME,BACK-FILE,DIO']);
      if (r.exitCode !== 0 || !r.stdout.trim()) return [];
      const devs = (JSON.parse(r.stdout) as { loopdevices?: { name: string; 'back-file': string | null; dio: boolean | string | number }[] }).loopdevices ?? [];
      return devs.map((d) => ({
        name: d.name,
        backFile: d['back-file'] === null ? null : d['back-file'].replace(/ \(deleted\)$/, ''),
        directIo: d.dio === true || d.dio === '1' || d.dio === 1,
      }));
    },
    async file(path) {
      const r = await run(['stat', '--format=%s %b %B', path]);
      if (r.exitCode !== 0) return undefined;
      const [size = NaN, blocks = NaN, unit = NaN] = r.stdout.trim().split(/\s+/).map(Number);
      return { sizeBytes: size, allocatedBytes: blocks * unit };
    },
    async signature(path) {
      const r = await run(['blkid', '--probe', '--output', 'export', path]);
      const out: Record<string, string> = {};
      if (r.exitCode !== 0) return out;
      for (const line of r.stdout.split('\n')) {
        const eq = line.indexOf('=');
        if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
      }
      return out;
    },
    async space(path) {
      const r = await run(['stat', '--file-system', '--format=%S %b %a', path]);
      const [frag, blocks, avail] = r.stdout.trim().split(/\s+/).map(Number);
      if (r.exitCode !== 0 || frag === undefined || blocks === undefined || avail === undefined || [frag, blocks, avail].some((n) => !Number.isFinite(n))) {
        // The reason ("Transport endpoint is not connected") is in stat's stderr.
        throw new Error(r.stderr.trim().split('\n').pop() || `cannot read the free space of ${path}`);
      }
      return { totalBytes: frag * blocks, freeBytes: frag * avail };
    },
    async usage(mp) {
      const r = await run(['df', '--block-size=1', '--output=size,used,avail', mp]);
      const nums = r.stdout.trim().split('\n')[1]?.trim().split(/\s+/).map(Number);
      if (r.exitCode !== 0 || !nums || nums.length < 3 || nums.some((n) => !Number.isFinite(n))) return undefined;
      return { size: nums[0]!, used: nums[1]!, free: nums[2]! };
    },
    async readsBack(device) {
      const r = await run(['dd', `if=${device}`, 'of=/dev/null', 'bs=4096', 'count=1', 'iflag=direct', 'status=none']);
      return r.exitCode === 0 ? { ok: true } : { ok: false, why: r.stderr.trim() || 'timeout' };
    },
    async deviceBytes(device) {
      const r = await run(['blockdev', '--getsize64', device]);
      const n = Number(r.stdout.trim());
      return r.exitCode === 0 && Number.isSafeInteger(n) ? n : undefined;
    },
    async mapping(name) {
      const r = await run(['cryptsetup', 'status', name]);
      return r.exitCode === 0 ? parseStatus(r.stdout) : undefined;
    },
    async luksInfo(image) {
      const r = await run(['cryptsetup', 'luksDump', '--dump-json-metadata', image]);
      if (r.exitCode !== 0) throw new Error(`cryptsetup luksDump ${image}: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
      return parseLuksJson(r.stdout);
    },
    async testKey(image, key) {
      const r = await ro.run(luksTestKeyCmd(image, key));
      if (r.exitCode === 0) return 'ok';
      if (r.exitCode === 2) return 'wrong';
      throw new Error(`cryptsetup could not test the key on ${image} (exit ${r.exitCode}): ${r.stderr.trim()}`);
    },
    async superblock(device) {
      const r = await run(['dumpe2fs', '-h', device], { timeoutMs: 120_000, env: UTC });
      const sb = r.exitCode === 0 ? parseDumpe2fs(r.stdout) : undefined;
      if (!sb) throw new Error(`cannot read the ext4 superblock of ${device} (dumpe2fs -h): ${(r.stderr.trim().split('\n').at(-1) ?? '') || `exit ${r.exitCode}`}`);
      return sb;
    },
    async undoLog(file, device) {
      // -h prints the header and exits 1 whatever it finds; -n checks the file against the filesystem and changes nothing.
      const state = parseUndoHeader((await run(['e2undo', '-h', file, device])).stdout);
      if (!state) return { state: 'blank' };
      if (state === 'interrupted') return { state };
      return { state, matches: (await run(['e2undo', '-n', file, device], { timeoutMs: 120_000 })).exitCode === 0 };
    },
    async hostKeys(host, port) {
      const r = await run(['ssh-keyscan', '-T', '10', '-p', String(port), '-t', 'ed25519,ecdsa,rsa', host], { timeoutMs: 60_000 });
      return parseKeyscan(r.stdout);
    },
    async keyLogin(c) {
      const r = await run(sftpBatchArgv(c), { stdin: 'pwd\n', timeoutMs: 60_000 });
      return { ok: r.exitCode === 0, stderr: r.stderr.trim() };
    },
    async boxSpaceOverSftp(c) {
      // The leading `-` keeps a server without statvfs from failing the login test.
      const r = await run(sftpBatchArgv(c), { stdin: '-df\n', timeoutMs: 60_000 });
      return r.exitCode === 0 ? { login: true, space: parseSftpDf(r.stdout) } : { login: false };
    },
    async remoteAllocated(c, name) {
      const path = c.remotePath ? `${c.remotePath.replace(/\/+$/, '')}/${name}` : name;
      // The remote side parses this as a command line: only plain names are sent (validation allows
      // more, so anything else is simply not measured). SFTP has no block counts (sshfs fakes
      // st_blocks from the size): the box's own `du` is the only way to see what the image takes.
      if (!/^[A-Za-z0-9._/+-]+$/.test(path)) return undefined;
      const argv = ['ssh', '-p', String(c.port), '-o', 'ConnectTimeout=20'];
      for (const o of sshOptionPairs(c, { batch: true })) argv.push('-o', o);
      // Plain ssh takes an IPv6 address without brackets (sftp and sshfs want them).
      argv.push(`${c.user}@${c.host}`, 'du', '-k', path);
      const r = await run(argv, { timeoutMs: 60_000 });
      const kib = Number(r.stdout.trim().split(/\s+/)[0]);
      return r.exitCode === 0 && Number.isFinite(kib) ? kib * 1024 : undefined;
    },
    async e2fsprogsVersion() {
      const r = await run(['mke2fs', '-V']);
      const m = /mke2fs (\d+)\.(\d+)(?:\.(\d+))?/.exec(r.stderr + r.stdout);
      return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
    },
    async verifyTab(text) {
      const dir = await mkTempDir('hbs-verify-');
      try {
        const file = join(dir, 'fstab');
        await writeFile(file, text, { mode: 0o600 });
        const r = await run(['findmnt', '--verify', '--tab-file', file]);
        const said = (r.stderr + r.stdout).trim();
        if (r.exitCode === 0 && /Success, no errors/.test(said)) return { parse: 0, errors: 0, report: r.stdout.trim() };
        const m = /(\d+) parse errors?, (\d+) errors?/.exec(said);
        if (!m) throw new Error(`unexpected findmnt --verify output: ${said}`);
        return { parse: Number(m[1]), errors: Number(m[2]), report: r.stdout.trim() };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
    async publicKeyOf(key) {
      const r = await ro.run({ argv: ['ssh-keygen', '-y', '-f', key], write: false });
      return r.stdout.endsWith('\n') ? r.stdout : r.stdout + '\n';
    },
    holders: (mount) => holdersOf(mount),
    deviceUsers: (device) => deviceUsers(device),
    async readAhead(devno) {
      const path = `/sys/class/bdi/${devno}/read_ahead_kb`;
      const r = await run(['cat', path]);
      const kb = Number(r.stdout.trim());
      return r.exitCode === 0 && Number.isSafeInteger(kb) ? { path, kb } : undefined;
    },
    sshfsPids: (target) => sshfsPidsFor(target),
    canResizeOnline,
    systemdRunning: () => stat('/run/systemd/system').then((s) => s.isDirectory(), () => false),
    async kernelErrors(devices, uuid) {
      const names = await Promise.all(devices.map(async (d) => basename(await realpath(d).catch(() => d))));
      const r = await run(['dmesg']);
      return r.exitCode === 0 ? kernelErrorsIn(r.stdout, names, uuid) : [];
    },
    async calendar(spec) {
      const r = await run(['systemd-analyze', 'calendar', spec]);
      if (r.exitCode !== 0 && /ENOENT|not found/i.test(r.stderr) && !r.stdout) return undefined;
      if (r.exitCode !== 0) return { ok: false, why: r.stderr.trim().split('\n').at(-1) ?? `exit ${r.exitCode}` };
      return { ok: true, normalized: /Normalized form: (.*)/.exec(r.stdout)?.[1]?.trim() ?? spec };
    },
  };
}
