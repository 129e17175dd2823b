/**
 * A machine for unit tests, described as a table of what exists — mounts, loop devices, files'
 * signatures, mappings, LUKS keys, superblocks — instead of a script of commands in order. Probes
 * answer from the table (so a step may look in any order, as often as it likes); every command a
 * plan runs is recorded in order and changes the table as the real program would (sshfs mounts,
 * mount attaches a loop device, cryptsetup open makes a mapping, …). Tests assert the commands that
 * ran and the state that results. Files the executor writes (config, fstab, the lock) are real files
 * in the test's sandbox directory; `file()` falls back to them.
 */
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { CommandError, formatCmd, isWrite, type Cmd, type CmdResult, type Runner } from '../../src/core/runner.js';
import type { UndoLog } from '../../src/lib/e2undo.js';
import type { Superblock } from '../../src/lib/ext4.js';
import type { Holder } from '../../src/lib/holders.js';
import type { HostKey } from '../../src/lib/host-keys.js';
import type { ActiveMapping, LuksInfo, LuksKey } from '../../src/lib/luks.js';
import type { FileFacts, LoopDevice, MountInfo, Probes } from '../../src/lib/probes.js';
import type { BoxSpace } from '../../src/lib/remote-df.js';

export interface LuksImage {
  info: LuksInfo;
  /** The keys that open a slot, as text (passphrases) or hex (binary key files). */
  keys: string[];
}

export interface World {
  mounts: Map<string, MountInfo>;
  loops: LoopDevice[];
  /** Files the table knows (else the real file system is asked). */
  files: Map<string, FileFacts>;
  signatures: Map<string, Record<string, string>>;
  /** statvfs answers per mount point; an Error means it does not answer (a dead sshfs). */
  space: Map<string, BoxSpace | Error>;
  /** Devices a direct read fails on (a stale sshfs handle under a loop device). */
  unreadable: Set<string>;
  mappings: Map<string, ActiveMapping>;
  luks: Map<string, LuksImage>;
  superblocks: Map<string, Superblock>;
  /** Sizes of block devices (loop devices and mappings), as `blockdev --getsize64` shows them. */
  deviceBytes: Map<string, number>;
  hostKeys: HostKey[];
  keyLogin: boolean;
  remoteAllocated?: number;
  e2fsprogs: [number, number, number];
  holders: Map<string, Holder[]>;
  sshfsPids: Map<string, number[]>;
  canResizeOnline?: boolean;
  /** Whether the kernel honours `losetup --direct-io=on` (else the device stays buffered, without an error). */
  kernelDirectIo: boolean;
  /** The public key ssh-keygen writes (and `ssh-keygen -y` derives). */
  publicKey: string;
  /** Errors `findmnt --verify` finds in any text it is given. */
  verifyErrors: number;
  systemd: boolean;
  /** Kernel log lines about failed writes, per filesystem UUID. */
  kernelErrors: Map<string, string[]>;
  /** What e2undo puts back: the block count a device's ext4 had before the interrupted resize. */
  undoBlocks: Map<string, number>;
  /** The sysfs read_ahead_kb file of each box mount's device (by MAJ:MIN), as a real file. */
  bdi: Map<string, string>;
  /** What `e2undo -h` / `-n` say of an undo file (default: interrupted). */
  undoLogs: Map<string, UndoLog>;
  /** Lines `findmnt --verify` counts as an error each, wherever they are (a target that is not a directory…). */
  badTabLine?: RegExp;
  /** The box account's password (a password mount with another one is refused); undefined: any works. */
  password?: string;
}

const RESIZE2FS_BANNER = 'resize2fs 1.47.0 (5-Feb-2023)\n';

export const BOX_SPACE: BoxSpace = { totalBytes: 1024 ** 4, freeBytes: 900 * 1024 ** 3 };

export function emptyWorld(): World {
  return {
    mounts: new Map(),
    loops: [],
    files: new Map(),
    signatures: new Map(),
    space: new Map(),
    unreadable: new Set(),
    mappings: new Map(),
    luks: new Map(),
    superblocks: new Map(),
    deviceBytes: new Map(),
    hostKeys: [],
    keyLogin: true,
    e2fsprogs: [1, 47, 0],
    holders: new Map(),
    sshfsPids: new Map(),
    canResizeOnline: true,
    kernelDirectIo: true,
    publicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample hbs@test\n',
    verifyErrors: 0,
    systemd: false,
    kernelErrors: new Map(),
    undoBlocks: new Map(),
    undoLogs: new Map(),
    bdi: new Map(),
  };
}

const keyText = (k: LuksKey): string => {
  const text = Buffer.from(k.bytes).toString('utf8');
  return Buffer.from(text, 'utf8').equals(Buffer.from(k.bytes)) ? text : Buffer.from(k.bytes).toString('hex');
};

/** A failure to inject: the next command whose argv starts with `prefix` answers this way. */
interface Injected {
  prefix: readonly string[];
  result: Partial<CmdResult>;
  times: number;
  /** Whether the command still does what it does (an answer with exit 0, unless told otherwise). */
  effect?: boolean;
}

export class FakeMachine implements Runner {
  readonly world: World = emptyWorld();
  /**
   * Box mount points and the directory that holds each box's files. Mounting the box moves that
   * directory onto the (empty) mount point, unmounting moves it back: like sshfs, the box's files
   * are only there while it is mounted.
   */
  readonly boxes = new Map<string, string>();
  /**
   * The account's home directory on the box (set with `account`): a password mount (sshfs -o
   * password_stdin, as init's key upload does) shows it, and key login works once its
   * .ssh/authorized_keys holds the public key — or when `world.keyLogin` says so anyway.
   */
  private accountHome?: string;
  /** Called with each changing command's line before it takes effect (to look at the machine then). */
  onRun?: (line: string) => void | Promise<void>;
  /** Every changing command that ran, in order. */
  readonly commands: Cmd[] = [];
  private readonly injected: Injected[] = [];
  private nextLoop = 0;
  /** Loop devices attached without autoclear (by hand, or by cryptsetup): an unmount leaves them attached. */
  private readonly manual = new Set<string>();
  /** Filesystems e2fsck -f checked since they were last mounted (resize2fs wants that before an offline resize). */
  private readonly checked = new Set<string>();

  /** The argv of every changing command, as one line each (for assertions). */
  get ran(): string[] {
    return this.commands.map((c) => formatCmd(c));
  }

  /**
   * The next `times` commands starting with `prefix` answer with `result`: a failure (the default)
   * changes nothing; an answer with exit 0 does what the command does, with the given output.
   */
  failNext(prefix: readonly string[], result: Partial<CmdResult>, times = 1): this {
    this.injected.push({ prefix, result, times });
    return this;
  }

  /** The next command starting with `prefix` exits 0 but changes nothing (a program that did not do its job). */
  doNothingNext(prefix: readonly string[]): this {
    this.injected.push({ prefix, result: { exitCode: 0 }, times: 1, effect: false });
    return this;
  }

  // --- the table, as tests describe it --------------------------------------------------------

  /** Registers a box: its files live in `home` while it is not mounted at `target`. */
  box(target: string, home: string): this {
    this.boxes.set(target, home);
    return this;
  }

  /** The account's home on the box while it is not mounted (see `accountHome`), and its password. */
  account(home: string, password?: string): this {
    this.accountHome = home;
    this.world.password = password;
    return this;
  }

  /** Whether the account's authorized_keys holds the public key (key login works). */
  async keyAuthorized(): Promise<boolean> {
    if (this.world.keyLogin) return true;
    if (!this.accountHome) return false;
    const text = await readFile(`${this.accountHome}/.ssh/authorized_keys`, 'utf8').catch(() => '');
    const blob = this.world.publicKey.trim().split(/\s+/)[1] ?? '';
    return blob !== '' && text.split('\n').some((l) => l.trim().split(/\s+/).includes(blob));
  }

  async mountBox(target: string, source: string): Promise<this> {
    const home = this.boxes.get(target);
    if (home) {
      await rm(target, { recursive: false, force: true }).catch(() => undefined);
      await mkdir(home, { recursive: true });
      await rename(home, target);
    }
    // Its readahead setting as the kernel shows it (sysfs), in a file next to the box's home.
    const devno = `0:${60 + this.world.bdi.size}`;
    if (home) {
      const path = `${home}.bdi-read_ahead_kb`;
      await writeFile(path, '128\n');
      this.world.bdi.set(devno, path);
    }
    this.world.mounts.set(target, { target, source, fstype: 'fuse.sshfs', options: 'rw,nosuid,nodev,relatime,user_id=0,group_id=0', devno });
    this.world.space.set(target, BOX_SPACE);
    return this;
  }

  private async unmountBox(target: string): Promise<void> {
    const home = this.boxes.get(target);
    if (this.world.mounts.get(target)?.fstype === 'fuse.sshfs' && home) {
      await rename(target, home);
      await mkdir(target);
    }
    this.world.mounts.delete(target);
    this.world.space.delete(target);
  }

  /**
   * Attaches a loop device to `file`; it takes the file's size (when the table knows it) until
   * refreshed. `autoclear` (as `mount -o loop` sets it, the default here): it goes with the unmount.
   */
  attach(file: string, o: { directIo?: boolean; autoclear?: boolean } = {}): string {
    const name = `/dev/loop${this.nextLoop++}`;
    this.world.loops.push({ name, backFile: file, directIo: o.directIo ?? false });
    if (o.autoclear === false) this.manual.add(name);
    const size = this.world.files.get(file)?.sizeBytes;
    if (size !== undefined) this.world.deviceBytes.set(name, size);
    return name;
  }

  /** Sets a file's apparent size in the table (a sparse image: `allocated` of it taken on the box). */
  fileSize(path: string, sizeBytes: number, allocatedBytes = 0): this {
    this.world.files.set(path, { sizeBytes, allocatedBytes });
    return this;
  }

  /** What a path shows to blkid and dumpe2fs: a loop device shows its backing file. */
  private content(path: string): string {
    return this.world.loops.find((l) => l.name === path)?.backFile ?? path;
  }

  mountFs(mountPoint: string, source: string, options = 'rw,noatime'): this {
    this.world.mounts.set(mountPoint, { target: mountPoint, source, fstype: 'ext4', options });
    return this;
  }

  /** Opens a mapping on `image` (through a new loop device); its size is the loop device's minus the LUKS2 header. */
  openMapping(name: string, image: string, o: { directIo?: boolean; keyLocation?: string } = {}): string {
    const loop = this.attach(image, { ...o, autoclear: false });
    this.world.mappings.set(name, { loop, backing: image, cipher: 'aes-xts-plain64', keyLocation: o.keyLocation ?? 'keyring' });
    this.sizeMapping(name);
    return loop;
  }

  /** The mapping takes its loop device's size, minus the header (cryptsetup open, cryptsetup resize). */
  private sizeMapping(name: string): void {
    const m = this.world.mappings.get(name);
    const loopBytes = m?.loop ? this.world.deviceBytes.get(m.loop) : undefined;
    const offset = m?.backing ? (this.world.luks.get(m.backing)?.info.dataOffset ?? 0) : 0;
    if (loopBytes !== undefined) this.world.deviceBytes.set(`/dev/mapper/${name}`, loopBytes - offset);
  }

  ext4(device: string, uuid: string, geometry: Partial<Superblock> = {}): this {
    this.world.signatures.set(device, { TYPE: 'ext4', UUID: uuid });
    this.world.superblocks.set(device, { blockCount: 262144, blockSize: 4096, blocksPerGroup: 32768, inodesPerGroup: 8192, inodeSize: 256, uuid, state: 'clean', errorCount: 0, needsRecovery: false, ...geometry });
    return this;
  }

  luksImage(image: string, keys: string[], uuid = '11111111-2222-4333-8444-555555555555'): this {
    this.world.signatures.set(image, { TYPE: 'crypto_LUKS', UUID: uuid, VERSION: '2' });
    this.world.luks.set(image, { info: { cipher: 'aes-xts-plain64', keySlots: keys.map((_, i) => String(i)), dataOffset: 16 * 1024 * 1024, sectorSize: 4096 }, keys });
    return this;
  }

  loopOf(file: string): LoopDevice | undefined {
    return this.world.loops.find((l) => l.backFile === file);
  }

  // --- probes -----------------------------------------------------------------------------------

  readonly probes: Probes = {
    mountAt: (path) => Promise.resolve(this.world.mounts.get(path)),
    loops: () => Promise.resolve(this.world.loops.map((l) => ({ ...l }))),
    file: async (path) => {
      const known = this.world.files.get(path);
      if (known) return known;
      try {
        const st = await stat(path);
        return st.isFile() ? { sizeBytes: st.size, allocatedBytes: st.blocks * 512 } : undefined;
      } catch {
        return undefined;
      }
    },
    signature: (path) => Promise.resolve({ ...(this.world.signatures.get(path) ?? this.world.signatures.get(this.content(path)) ?? {}) }),
    space: (path) => {
      const s = this.world.space.get(path);
      if (s instanceof Error) return Promise.reject(s);
      return s ? Promise.resolve(s) : Promise.reject(new Error(`cannot read the free space of ${path}`));
    },
    usage: (mp) => Promise.resolve(this.world.mounts.has(mp) ? { size: 10 * 1024 ** 3, used: 1024 ** 3, free: 9 * 1024 ** 3 } : undefined),
    readsBack: (device) => Promise.resolve(this.world.unreadable.has(device) ? { ok: false as const, why: 'Input/output error' } : { ok: true as const }),
    deviceBytes: (device) => Promise.resolve(this.world.deviceBytes.get(device)),
    mapping: (name) => Promise.resolve(this.world.mappings.get(name)),
    luksInfo: (image) => {
      const l = this.world.luks.get(image);
      return l ? Promise.resolve(l.info) : Promise.reject(new Error(`cryptsetup luksDump ${image}: not a LUKS device`));
    },
    testKey: (image, key) => {
      const l = this.world.luks.get(image);
      if (!l) return Promise.reject(new Error(`cryptsetup could not test the key on ${image} (exit 1): not a LUKS device`));
      return Promise.resolve(l.keys.includes(keyText(key)) ? 'ok' : 'wrong');
    },
    superblock: (device) => {
      const sb = this.world.superblocks.get(device) ?? this.world.superblocks.get(this.content(device));
      return sb ? Promise.resolve({ ...sb }) : Promise.reject(new Error(`cannot read the ext4 superblock of ${device} (dumpe2fs -h): Bad magic number`));
    },
    // An undo file on disk without a state set here is one resize2fs was killed writing.
    undoLog: (file) => Promise.resolve(this.world.undoLogs.get(file) ?? { state: 'interrupted' as const }),
    hostKeys: () => Promise.resolve(this.world.hostKeys),
    keyLogin: async () => {
      const ok = await this.keyAuthorized();
      return { ok, stderr: ok ? '' : 'Permission denied (publickey)' };
    },
    boxSpaceOverSftp: async () => ((await this.keyAuthorized()) ? { login: true, space: BOX_SPACE } : { login: false }),
    remoteAllocated: () => Promise.resolve(this.world.remoteAllocated),
    e2fsprogsVersion: () => Promise.resolve(this.world.e2fsprogs),
    verifyTab: (text) => {
      const bad = this.world.badTabLine;
      const lines = bad ? text.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#') && bad.test(l)) : [];
      const errors = this.world.verifyErrors + lines.length;
      return Promise.resolve({ parse: 0, errors, report: [...lines.map((l) => `${l}\n   [E] target is not a directory`), ...(this.world.verifyErrors ? ['[E] bad line'] : [])].join('\n') });
    },
    publicKeyOf: () => Promise.resolve(this.world.publicKey),
    holders: (mount) => Promise.resolve(this.world.holders.get(mount) ?? []),
    readAhead: async (devno) => {
      const path = this.world.bdi.get(devno);
      return path ? { path, kb: Number((await readFile(path, 'utf8')).trim()) } : undefined;
    },
    deviceUsers: (device) => Promise.resolve(this.world.holders.get(device) ?? []),
    sshfsPids: (target) => Promise.resolve(this.world.sshfsPids.get(target) ?? []),
    canResizeOnline: () => Promise.resolve(this.world.canResizeOnline),
    systemdRunning: () => Promise.resolve(this.world.systemd),
    kernelErrors: (_devices, uuid) => Promise.resolve(this.world.kernelErrors.get(uuid) ?? []),
    calendar: (spec) => Promise.resolve(/^(daily|weekly|hourly|\*-\*-\* \d\d:\d\d(:\d\d)?)$/.test(spec) ? { ok: true as const, normalized: spec } : { ok: false as const, why: `Failed to parse calendar specification '${spec}'` }),
  };

  // --- commands ---------------------------------------------------------------------------------

  async run(cmd: Cmd): Promise<CmdResult> {
    if (!isWrite(cmd)) throw new Error(`a probe ran through the runner: ${formatCmd(cmd)} (probes answer from the table)`);
    this.commands.push(cmd);
    await this.onRun?.(formatCmd(cmd));
    const inj = this.injected.find((i) => i.times > 0 && i.prefix.every((a, k) => cmd.argv[k] === a));
    let result: CmdResult;
    if (inj) {
      inj.times--;
      result = { exitCode: inj.result.exitCode ?? 1, stdout: inj.result.stdout ?? '', stderr: inj.result.stderr ?? '' };
      if (result.exitCode === 0 && inj.effect !== false) await this.effect(cmd);
    } else {
      result = await this.effect(cmd);
    }
    if (cmd.onStdoutLine && result.stdout) for (const line of result.stdout.replace(/\n$/, '').split('\n')) cmd.onStdoutLine(line);
    if (result.exitCode !== 0 && !cmd.allowFail) throw new CommandError(formatCmd(cmd), result);
    return result;
  }

  private async effect(cmd: Cmd): Promise<CmdResult> {
    const ok: CmdResult = { exitCode: 0, stdout: '', stderr: '' };
    const a = cmd.argv;
    const last = a.at(-1) ?? '';
    const w = this.world;
    switch (a[0]) {
      case 'sshfs': {
        const opts = (a[2] ?? '').split(',');
        if (opts.includes('password_stdin')) {
          // The account's home with the password (init's key upload), on a directory of its own.
          if (w.password !== undefined && cmd.stdin !== `${w.password}\n`) return { exitCode: 1, stdout: '', stderr: 'read: Connection reset by peer\nPermission denied, please try again.' };
          if (this.accountHome) this.boxes.set(last, this.accountHome);
          await this.mountBox(last, a[3] ?? '');
          return ok;
        }
        // With the key, the account's home (`user@host:`, as uninstall's --remove-box-key mounts it), on a directory of its own.
        if ((a[3] ?? '').endsWith(':') && this.accountHome && !this.boxes.has(last)) {
          if (!(await this.keyAuthorized())) return { exitCode: 1, stdout: '', stderr: 'Permission denied (publickey).' };
          this.boxes.set(last, this.accountHome);
        }
        const fsname = opts.find((o) => o.startsWith('fsname='))?.slice('fsname='.length);
        await this.mountBox(last, fsname ?? a[3] ?? '');
        return ok;
      }
      case 'ssh-keygen': {
        // ssh-keygen -q -t TYPE -N '' -C COMMENT -f KEY: a new key pair; an existing key is never overwritten.
        const key = a[a.indexOf('-f') + 1] ?? '';
        if (await exists(key)) return { exitCode: 1, stdout: '', stderr: `${key} already exists.` };
        const [type = '', blob = ''] = w.publicKey.trim().split(/\s+/);
        const comment = a.includes('-C') ? ` ${a[a.indexOf('-C') + 1] ?? ''}` : '';
        await writeFile(key, 'fake private key\n', { mode: 0o600, flag: 'wx' });
        await writeFile(`${key}.pub`, `${type} ${blob}${comment}\n`, { mode: 0o644 });
        return ok;
      }
      case 'chmod':
        await chmod(last, parseInt(a[1] ?? '', 8));
        return ok;
      case 'fusermount3':
        await this.unmountBox(last);
        return ok;
      case 'mount': {
        const [device, mp] = [a.at(-2) ?? '', last];
        const opts = a[a.indexOf('-o') + 1] ?? '';
        let source = device;
        if (opts.split(',').includes('loop')) source = this.loopOf(device)?.name ?? this.attach(device);
        this.mountFs(mp, source, `rw,${opts.split(',').filter((o) => o !== 'loop').join(',')}`);
        this.checked.delete(this.content(source));
        return ok;
      }
      case 'umount': {
        const m = w.mounts.get(last);
        if (m?.fstype === 'fuse.sshfs') {
          await this.unmountBox(last);
          return ok;
        }
        w.mounts.delete(last);
        // mount -o loop sets autoclear: the loop device goes with the unmount.
        if (m?.source.startsWith('/dev/loop') && !this.manual.has(m.source)) w.loops = w.loops.filter((l) => l.name !== m.source);
        return ok;
      }
      case 'losetup':
        if (a[1] === '--detach') w.loops = w.loops.filter((l) => l.name !== last);
        if (a[1] === '--set-capacity') {
          const l = w.loops.find((x) => x.name === last);
          const size = l?.backFile ? w.files.get(l.backFile)?.sizeBytes : undefined;
          if (!l) return { exitCode: 1, stdout: '', stderr: `losetup: ${last}: set capacity failed: No such device or address` };
          if (size !== undefined) w.deviceBytes.set(last, size);
        }
        if (a[1] === '--direct-io=on' || a[1] === '--direct-io=off') {
          const l = w.loops.find((x) => x.name === last);
          if (!l) return { exitCode: 1, stdout: '', stderr: `losetup: ${last}: failed to set direct io: No such device` };
          l.directIo = a[1] === '--direct-io=on' && w.kernelDirectIo;
        }
        return ok;
      case 'cryptsetup':
        return this.cryptsetup(cmd);
      case 'truncate': {
        const size = Number((a[1] ?? '').replace('--size=>', ''));
        const f = w.files.get(last);
        w.files.set(last, { sizeBytes: Math.max(size, f?.sizeBytes ?? 0), allocatedBytes: f?.allocatedBytes ?? 0 });
        return ok;
      }
      case 'mkfs.ext4':
        this.ext4(last, a[a.indexOf('-U') + 1] ?? '');
        return ok;
      case 'e2fsck':
        if (a.includes('-f')) this.checked.add(this.content(last));
        return ok;
      case 'mv':
        await rename(a.at(-2) ?? '', last);
        return ok;
      case 'e2undo': {
        const sb = w.superblocks.get(last);
        const before = w.undoBlocks.get(last);
        if (sb && before !== undefined) sb.blockCount = before;
        return ok;
      }
      case 'resize2fs': {
        // To the end of its device: a block device as big as it is now, a file as big as it is.
        const sb = w.superblocks.get(last) ?? w.superblocks.get(this.content(last));
        const size = w.deviceBytes.get(last) ?? w.files.get(last)?.sizeBytes;
        if (!sb) return { exitCode: 1, stdout: '', stderr: `resize2fs: Bad magic number in super-block while trying to open ${last}` };
        const mounted = [...w.mounts.values()].some((mt) => mt.source === last);
        // Online, the kernel grows it, and only with CAP_SYS_RESOURCE; offline, resize2fs wants a fresh e2fsck -f.
        if (mounted && w.canResizeOnline === false) return { exitCode: 1, stdout: '', stderr: `${RESIZE2FS_BANNER}resize2fs: Permission denied to resize filesystem\n` };
        if (!mounted && !this.checked.has(this.content(last))) return { exitCode: 1, stdout: '', stderr: `${RESIZE2FS_BANNER}Please run 'e2fsck -f ${last}' first.\n` };
        if (size !== undefined) sb.blockCount = Math.max(sb.blockCount, Math.floor(size / sb.blockSize));
        return ok;
      }
      default:
        return ok;
    }
  }

  private async cryptsetup(cmd: Cmd): Promise<CmdResult> {
    const a = cmd.argv;
    const w = this.world;
    const ok: CmdResult = { exitCode: 0, stdout: '', stderr: '' };
    if (a[1] === 'open') {
      const [image, name] = [a.at(-2) ?? '', a.at(-1) ?? ''];
      const l = w.luks.get(image);
      const key = cmd.stdin === undefined ? '' : keyText({ kind: 'keyfile', bytes: Buffer.from(cmd.stdin), label: '' });
      if (!l || !l.keys.includes(key)) return { exitCode: 2, stdout: '', stderr: 'No key available with this passphrase.' };
      this.openMapping(name, image);
      return ok;
    }
    if (a[1] === 'close') {
      const m = w.mappings.get(a[2] ?? '');
      w.mappings.delete(a[2] ?? '');
      if (m) w.loops = w.loops.filter((x) => x.name !== m.loop);
      return ok;
    }
    if (a[1] === 'resize') {
      // LUKS2 with its volume key in the kernel keyring unlocks a key slot again: the key on stdin.
      const name = a.at(-1) ?? '';
      const m = w.mappings.get(name);
      if (!m) return { exitCode: 4, stdout: '', stderr: `Device ${name} is not active.` };
      const l = m.backing ? w.luks.get(m.backing) : undefined;
      const key = cmd.stdin === undefined ? undefined : keyText({ kind: 'keyfile', bytes: Buffer.from(cmd.stdin), label: '' });
      if (m.keyLocation !== 'dm-crypt' && (key === undefined || !l?.keys.includes(key))) return { exitCode: 2, stdout: '', stderr: 'No key available with this passphrase.' };
      this.sizeMapping(name);
      return ok;
    }
    if (a[1] === 'luksFormat') {
      const image = a.at(-1) ?? '';
      this.luksImage(image, [keyText({ kind: 'keyfile', bytes: Buffer.from(cmd.stdin ?? ''), label: '' })]);
      return ok;
    }
    if (a[1] === 'luksAddKey') {
      // luksAddKey … --key-file - IMAGE NEWKEYFILE: an existing key (stdin) authorises the new one.
      const [image, file] = [a.at(-2) ?? '', a.at(-1) ?? ''];
      const l = w.luks.get(image);
      if (!l) return { exitCode: 1, stdout: '', stderr: `Device ${image} is not a valid LUKS device.` };
      if (!l.keys.includes(keyText({ kind: 'keyfile', bytes: Buffer.from(cmd.stdin ?? ''), label: '' }))) return { exitCode: 2, stdout: '', stderr: 'No key available with this passphrase.' };
      l.keys.push(keyText({ kind: 'keyfile', bytes: await readFile(file), label: '' }));
      l.info.keySlots.push(String(l.info.keySlots.length));
      return ok;
    }
    if (a[1] === 'luksHeaderBackup') {
      // luksHeaderBackup IMAGE --header-backup-file FILE: a new file (0400) holding the image's header.
      const [image, file] = [a[2] ?? '', a.at(-1) ?? ''];
      if (!w.luks.has(image)) return { exitCode: 1, stdout: '', stderr: `Device ${image} is not a valid LUKS device.` };
      if (await exists(file)) return { exitCode: 1, stdout: '', stderr: `Requested header backup file ${file} already exists.` };
      await writeFile(file, 'fake LUKS2 header\n', { mode: 0o400, flag: 'wx' });
      await chmod(file, 0o400);
      w.signatures.set(file, { ...(w.signatures.get(image) ?? {}) });
      return ok;
    }
    return ok;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
