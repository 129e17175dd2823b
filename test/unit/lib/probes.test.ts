/**
 * The probes as commands: the exact argv each one runs (written out literally, so a changed command
 * line fails here), how it reads the answer, and that every one of them is read-only.
 */
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readOnly, WriteInProbeError, type Cmd, type CmdResult, type Runner } from '../../../src/core/runner.js';
import { passphraseKey } from '../../../src/lib/luks.js';
import { commandProbes, type Probes } from '../../../src/lib/probes.js';
import type { BoxConn } from '../../../src/lib/ssh.js';
import { RecordingRunner, type Expectation } from '../../support/recording-runner.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'hbs-probes-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A fresh directory for verifyTab, always the same path so the argv can be written out. */
const scratch = (): string => join(root, 'verify');
const mkTempDir = async (): Promise<string> => {
  await mkdir(scratch());
  return scratch();
};

/** Probes over a runner that expects exactly these read-only commands, in order. */
function probesFor(...expected: Expectation[]): { p: Probes; runner: RecordingRunner } {
  const runner = new RecordingRunner(expected.map((e) => ({ write: false, ...e })));
  return { p: commandProbes(runner, mkTempDir), runner };
}

const conn = (over: Partial<BoxConn> = {}): BoxConn => ({
  user: 'u123456',
  host: 'u123456.your-storagebox.de',
  port: 23,
  remotePath: 'backup',
  key: '/etc/hbs/id_ed25519',
  knownHosts: '/etc/hbs/known_hosts',
  ...over,
});

const SSH_OPTS = [
  '-o', 'IdentityFile=/etc/hbs/id_ed25519',
  '-o', 'IdentitiesOnly=yes',
  '-o', 'UserKnownHostsFile=/etc/hbs/known_hosts',
  '-o', 'GlobalKnownHostsFile=/dev/null',
  '-o', 'StrictHostKeyChecking=yes',
  '-o', 'ServerAliveInterval=15',
  '-o', 'ServerAliveCountMax=3',
  '-o', 'BatchMode=yes',
];
const SFTP = ['sftp', '-q', '-b', '-', '-P', '23', '-o', 'ConnectTimeout=20', ...SSH_OPTS, 'u123456@u123456.your-storagebox.de'];
const du = (path: string): string[] => ['ssh', '-p', '23', '-o', 'ConnectTimeout=20', ...SSH_OPTS, 'u123456@u123456.your-storagebox.de', 'du', '-k', path];

describe('mountAt (findmnt --json)', () => {
  const argv = ['findmnt', '--json', '--mountpoint', '/srv/box', '--output', 'TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN'];

  it('reads the mount, and with stacked mounts the one on top', async () => {
    const fs = (source: string, fstype: string) => ({ target: '/srv/box', source, fstype, options: 'rw,relatime' });
    const { p, runner } = probesFor(
      { argv, stdout: JSON.stringify({ filesystems: [fs('sshfs#u1@h:backup', 'fuse.sshfs')] }) },
      { argv, stdout: JSON.stringify({ filesystems: [fs('tmpfs', 'tmpfs'), fs('sshfs#u1@h:backup', 'fuse.sshfs')] }, null, 3) + '\n' },
    );
    expect(await p.mountAt('/srv/box')).toEqual({ target: '/srv/box', source: 'sshfs#u1@h:backup', fstype: 'fuse.sshfs', options: 'rw,relatime' });
    expect((await p.mountAt('/srv/box'))?.fstype).toBe('fuse.sshfs');
    runner.assertDone();
  });

  it('reads the device number (a FUSE mount is 0:N): where its readahead lives', async () => {
    const { p } = probesFor({ argv, stdout: JSON.stringify({ filesystems: [{ target: '/srv/box', source: 'u1@h:', fstype: 'fuse.sshfs', options: 'rw', 'maj:min': '0:58' }] }) });
    expect((await p.mountAt('/srv/box'))?.devno).toBe('0:58');
  });

  it('is undefined when nothing is mounted there (exit 1, no output) or the list is empty', async () => {
    const { p } = probesFor({ argv, exitCode: 1 }, { argv, stdout: '' }, { argv, stdout: '{"filesystems":[]}' });
    expect(await p.mountAt('/srv/box')).toBeUndefined();
    expect(await p.mountAt('/srv/box')).toBeUndefined();
    expect(await p.mountAt('/srv/box')).toBeUndefined();
  });

  it('fills in what findmnt left out', async () => {
    const { p } = probesFor({ argv, stdout: '{"filesystems":[{"source":"/dev/loop0"}]}' });
    expect(await p.mountAt('/srv/box')).toEqual({ target: '/srv/box', source: '/dev/loop0', fstype: '', options: '' });
  });
});

describe('loops (losetup --json)', () => {
  const argv = ['losetup', '--list', '--json', '--output', 'NAME,BACK-FILE,DIO'];

  it('lists every loop device with its backing file (" (deleted)" stripped) and its direct-I/O flag', async () => {
    const loopdevices = [
      { name: '/dev/loop0', 'back-file': '/var/lib/snapd/snaps/core.snap', dio: false },
      { name: '/dev/loop3', 'back-file': '/srv/box/filesystem.img (deleted)', dio: true },
      { name: '/dev/loop4', 'back-file': null, dio: '0' },
      { name: '/dev/loop5', 'back-file': '/srv/box/x.img', dio: '1' },
      { name: '/dev/loop6', 'back-file': '/srv/box/y.img', dio: 1 },
    ];
    const { p, runner } = probesFor({ argv, stdout: JSON.stringify({ loopdevices }) });
    expect(await p.loops()).toEqual([
      { name: '/dev/loop0', backFile: '/var/lib/snapd/snaps/core.snap', directIo: false },
      { name: '/dev/loop3', backFile: '/srv/box/filesystem.img', directIo: true },
      { name: '/dev/loop4', backFile: null, directIo: false },
      { name: '/dev/loop5', backFile: '/srv/box/x.img', directIo: true },
      { name: '/dev/loop6', backFile: '/srv/box/y.img', directIo: true },
    ]);
    runner.assertDone();
  });

  it('is empty when there are none (no output) or losetup fails', async () => {
    const { p } = probesFor({ argv, stdout: '' }, { argv, exitCode: 1, stderr: 'losetup: cannot find' });
    expect(await p.loops()).toEqual([]);
    expect(await p.loops()).toEqual([]);
  });
});

describe('file (stat)', () => {
  const argv = ['stat', '--format=%s %b %B', '/srv/box/filesystem.img'];

  it('reads the apparent size and the allocated bytes (blocks × block unit)', async () => {
    const { p } = probesFor({ argv, stdout: '10737418240 2048 512\n' });
    expect(await p.file('/srv/box/filesystem.img')).toEqual({ sizeBytes: 10737418240, allocatedBytes: 2048 * 512 });
  });

  it('is undefined when there is no such file', async () => {
    const { p } = probesFor({ argv, exitCode: 1, stderr: "stat: cannot statx '/srv/box/filesystem.img': No such file or directory" });
    expect(await p.file('/srv/box/filesystem.img')).toBeUndefined();
  });
});

describe('signature (blkid export)', () => {
  const argv = ['blkid', '--probe', '--output', 'export', '/srv/box/filesystem.img'];

  it('reads every KEY=value line; a value may contain "="', async () => {
    const { p } = probesFor({ argv, stdout: 'DEVNAME=/srv/box/filesystem.img\nUUID=3f1c2a4e\nLABEL=a=b\nTYPE=ext4\n\n' });
    expect(await p.signature('/srv/box/filesystem.img')).toEqual({ DEVNAME: '/srv/box/filesystem.img', UUID: '3f1c2a4e', LABEL: 'a=b', TYPE: 'ext4' });
  });

  it('is {} when blkid recognises nothing (exit 2)', async () => {
    const { p } = probesFor({ argv, exitCode: 2 });
    expect(await p.signature('/srv/box/filesystem.img')).toEqual({});
  });
});

describe('space (stat -f)', () => {
  const argv = ['stat', '--file-system', '--format=%S %b %a', '/srv/box'];

  it('reads total and free bytes: fragment size × blocks', async () => {
    const { p } = probesFor({ argv, stdout: '4096 26214400 13107200\n' });
    expect(await p.space('/srv/box')).toEqual({ totalBytes: 100 * 1024 ** 3, freeBytes: 50 * 1024 ** 3 });
  });

  it('rejects with the reason when the mount does not answer (a dead sshfs: ENOTCONN)', async () => {
    const said = "stat: cannot read file system information for '/srv/box': Transport endpoint is not connected";
    const { p } = probesFor({ argv, exitCode: 1, stderr: `${said}\n` });
    await expect(p.space('/srv/box')).rejects.toThrow(said);
  });

  it('rejects when the answer is not three numbers', async () => {
    const { p } = probesFor({ argv, stdout: '4096 ?\n' }, { argv, stdout: '4096 1 x\n' });
    await expect(p.space('/srv/box')).rejects.toThrow('cannot read the free space of /srv/box');
    await expect(p.space('/srv/box')).rejects.toThrow('cannot read the free space of /srv/box');
  });
});

describe('usage (df)', () => {
  const argv = ['df', '--block-size=1', '--output=size,used,avail', '/srv/backup'];

  it('reads size, used and free bytes from the line under the header', async () => {
    const { p } = probesFor({ argv, stdout: '    1B-blocks       Used      Avail\n10464022528 1073741824 8853979136\n' });
    expect(await p.usage('/srv/backup')).toEqual({ size: 10464022528, used: 1073741824, free: 8853979136 });
  });

  it('is undefined when df fails or prints no figures', async () => {
    const { p } = probesFor({ argv, exitCode: 1, stderr: 'df: /srv/backup: Transport endpoint is not connected' }, { argv, stdout: '    1B-blocks       Used      Avail\n' });
    expect(await p.usage('/srv/backup')).toBeUndefined();
    expect(await p.usage('/srv/backup')).toBeUndefined();
  });
});

describe('readsBack (dd iflag=direct)', () => {
  const argv = ['dd', 'if=/dev/loop3', 'of=/dev/null', 'bs=4096', 'count=1', 'iflag=direct', 'status=none'];

  it('is ok when one direct read works, and names why when it does not', async () => {
    const { p } = probesFor({ argv }, { argv, exitCode: 1, stderr: "dd: error reading '/dev/loop3': Input/output error\n" }, { argv, exitCode: 124 });
    expect(await p.readsBack('/dev/loop3')).toEqual({ ok: true });
    expect(await p.readsBack('/dev/loop3')).toEqual({ ok: false, why: "dd: error reading '/dev/loop3': Input/output error" });
    // Killed by the probe's timeout: nothing on stderr.
    expect(await p.readsBack('/dev/loop3')).toEqual({ ok: false, why: 'timeout' });
  });
});

describe('deviceBytes (blockdev)', () => {
  const argv = ['blockdev', '--getsize64', '/dev/mapper/hbs-x'];

  it('reads the size in bytes; undefined when it cannot', async () => {
    const { p } = probesFor({ argv, stdout: '3204448256\n' }, { argv, exitCode: 1 }, { argv, stdout: 'nope\n' });
    expect(await p.deviceBytes('/dev/mapper/hbs-x')).toBe(3204448256);
    expect(await p.deviceBytes('/dev/mapper/hbs-x')).toBeUndefined();
    expect(await p.deviceBytes('/dev/mapper/hbs-x')).toBeUndefined();
  });
});

describe('cryptsetup: status, luksDump, --test-passphrase', () => {
  const status = ['cryptsetup', 'status', 'hbs-x'];

  it('status: the loop device, its file, the cipher and where the volume key is; undefined when not active', async () => {
    const out =
      '/dev/mapper/hbs-x is active and is in use.\n  type:    LUKS2\n  cipher:  aes-xts-plain64\n  keysize: 512 bits\n  key location: keyring\n' +
      '  device:  /dev/loop5\n  loop:    /srv/box/x.img\n  sector size:  4096\n  offset:  32768 sectors\n  size:    2064384 sectors\n  mode:    read/write\n';
    const { p } = probesFor({ argv: status, stdout: out }, { argv: status, exitCode: 4, stderr: '/dev/mapper/hbs-x is inactive.' });
    expect(await p.mapping('hbs-x')).toEqual({ loop: '/dev/loop5', backing: '/srv/box/x.img', cipher: 'aes-xts-plain64', keyLocation: 'keyring' });
    expect(await p.mapping('hbs-x')).toBeUndefined();
  });

  it('luksDump: cipher, key slots in order, data offset and sector size from the JSON metadata; rejects without a header', async () => {
    const argv = ['cryptsetup', 'luksDump', '--dump-json-metadata', '/srv/box/x.img'];
    const json = JSON.stringify({
      keyslots: { '10': { type: 'luks2' }, '0': { type: 'luks2' }, '2': { type: 'luks2' } },
      segments: { '0': { type: 'crypt', offset: '16777216', size: 'dynamic', encryption: 'aes-xts-plain64', sector_size: 4096 } },
    });
    const { p } = probesFor({ argv, stdout: json }, { argv, exitCode: 1, stderr: 'Device /srv/box/x.img is not a valid LUKS device.\n' });
    expect(await p.luksInfo('/srv/box/x.img')).toEqual({ cipher: 'aes-xts-plain64', keySlots: ['0', '2', '10'], dataOffset: 16777216, sectorSize: 4096 });
    await expect(p.luksInfo('/srv/box/x.img')).rejects.toThrow('cryptsetup luksDump /srv/box/x.img: Device /srv/box/x.img is not a valid LUKS device.');
  });

  it('--test-passphrase: the key on stdin (a secret), exit 0 opens, exit 2 is a wrong key, anything else rejects', async () => {
    const argv = ['cryptsetup', 'open', '--test-passphrase', '--type', 'luks2', '--key-file', '-', '/srv/box/x.img'];
    const { p, runner } = probesFor(
      { argv, stdin: 'right' },
      { argv, stdin: 'wrong', exitCode: 2, stderr: 'No key available with this passphrase.' },
      { argv, stdin: 'right', exitCode: 1, stderr: 'Device /srv/box/x.img does not exist or access denied.' },
    );
    expect(await p.testKey('/srv/box/x.img', passphraseKey('right'))).toBe('ok');
    expect(await p.testKey('/srv/box/x.img', passphraseKey('wrong'))).toBe('wrong');
    await expect(p.testKey('/srv/box/x.img', passphraseKey('right'))).rejects.toThrow(/could not test the key on \/srv\/box\/x\.img \(exit 1\): Device .* access denied/);
    expect(runner.calls[0]?.secrets).toEqual(['right']);
    expect(runner.calls.every((c) => !c.argv.includes('right') && !c.argv.includes('wrong'))).toBe(true);
  });
});

describe('superblock (dumpe2fs -h)', () => {
  const argv = ['dumpe2fs', '-h', '/dev/loop3'];
  const head = (extra: string): string =>
    'dumpe2fs 1.47.0 (5-Feb-2023)\nFilesystem volume name:   hbs-backup\nFilesystem UUID:          3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b\n' +
    'Block count:              786432\nBlock size:               4096\nBlocks per group:         32768\nInodes per group:         8192\nInode size:               256\n' +
    extra;

  it('reads the geometry and the health: state, the error count, needs_recovery', async () => {
    const { p } = probesFor(
      { argv, stdout: head('Filesystem state:         clean\nFilesystem features:      has_journal ext_attr resize_inode dir_index filetype extent 64bit\n') },
      {
        argv,
        stdout: head('Filesystem state:         clean with errors\nFS Error count:           3\nFilesystem features:      has_journal ext_attr needs_recovery extent 64bit\n'),
      },
    );
    expect(await p.superblock('/dev/loop3')).toEqual({
      blockCount: 786432,
      blockSize: 4096,
      blocksPerGroup: 32768,
      inodesPerGroup: 8192,
      inodeSize: 256,
      uuid: '3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b',
      state: 'clean',
      errorCount: 0,
      needsRecovery: false,
    });
    expect(await p.superblock('/dev/loop3')).toMatchObject({ state: 'clean with errors', errorCount: 3, needsRecovery: true });
  });

  it('rejects with the last line dumpe2fs said, or when a size field is missing', async () => {
    const { p } = probesFor(
      { argv, exitCode: 1, stderr: 'dumpe2fs 1.47.0 (5-Feb-2023)\ndumpe2fs: Bad magic number in super-block while trying to open /dev/loop3\n' },
      { argv, stdout: 'Block count: 12\n' },
    );
    await expect(p.superblock('/dev/loop3')).rejects.toThrow('cannot read the ext4 superblock of /dev/loop3 (dumpe2fs -h): dumpe2fs: Bad magic number in super-block while trying to open /dev/loop3');
    await expect(p.superblock('/dev/loop3')).rejects.toThrow(/cannot read the ext4 superblock of \/dev\/loop3 .*exit 0/);
  });
});

describe('the box: ssh-keyscan, sftp, du over ssh', () => {
  const ED = 'AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
  const RSA = 'AAAAB3NzaC1yc2EAAAADAQABAAABAQC7';

  it('ssh-keyscan: the port and key types asked for; keys most preferred type first, comments and doubles dropped', async () => {
    const argv = ['ssh-keyscan', '-T', '10', '-p', '23', '-t', 'ed25519,ecdsa,rsa', 'u123456.your-storagebox.de'];
    const out = `# u123456.your-storagebox.de:23 SSH-2.0-OpenSSH_9.2\n[u123456.your-storagebox.de]:23 ssh-rsa ${RSA}\n[u123456.your-storagebox.de]:23 ssh-ed25519 ${ED}\n[u123456.your-storagebox.de]:23 ssh-ed25519 ${ED}\n`;
    const { p } = probesFor({ argv, stdout: out }, { argv, exitCode: 1 });
    const keys = await p.hostKeys('u123456.your-storagebox.de', 23);
    expect(keys.map((k) => k.type)).toEqual(['ssh-ed25519', 'ssh-rsa']);
    expect(keys[0]?.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]+$/);
    expect(await p.hostKeys('u123456.your-storagebox.de', 23)).toEqual([]);
  });

  it('key login: an sftp batch of `pwd` with only our key and the pinned host key', async () => {
    const { p } = probesFor({ argv: SFTP, stdin: 'pwd\n' }, { argv: SFTP, stdin: 'pwd\n', exitCode: 255, stderr: 'Permission denied (publickey).\n' });
    expect(await p.keyLogin(conn())).toEqual({ ok: true, stderr: '' });
    expect(await p.keyLogin(conn())).toEqual({ ok: false, stderr: 'Permission denied (publickey).' });
  });

  it('box space over sftp: `-df` in the same batch (a server without statvfs still logs in)', async () => {
    const df = 'sftp> -df\n        Size         Used        Avail       (root)    %Capacity\n  1073741824    536870912    536870912    536870912          50%\n';
    const { p } = probesFor({ argv: SFTP, stdin: '-df\n', stdout: df }, { argv: SFTP, stdin: '-df\n', stdout: '' }, { argv: SFTP, stdin: '-df\n', exitCode: 255 });
    expect(await p.boxSpaceOverSftp(conn())).toEqual({ login: true, space: { totalBytes: 1024 ** 4, freeBytes: 512 * 1024 ** 3 } });
    expect(await p.boxSpaceOverSftp(conn())).toEqual({ login: true, space: undefined });
    expect(await p.boxSpaceOverSftp(conn())).toEqual({ login: false });
  });

  it('remote du: asks `du -k` on the box, KiB to bytes; trailing slashes dropped; the bare name in the home directory', async () => {
    const { p, runner } = probesFor({ argv: du('backup/filesystem.img'), stdout: '2048\tbackup/filesystem.img\n' }, { argv: du('filesystem.img'), stdout: '4\tfilesystem.img\n' });
    expect(await p.remoteAllocated(conn({ remotePath: 'backup//' }), 'filesystem.img')).toBe(2048 * 1024);
    expect(await p.remoteAllocated(conn({ remotePath: '' }), 'filesystem.img')).toBe(4096);
    runner.assertDone();
  });

  it('remote du: a path the remote shell would interpret is not sent at all', async () => {
    const { p, runner } = probesFor();
    expect(await p.remoteAllocated(conn({ remotePath: 'my backups' }), 'filesystem.img')).toBeUndefined();
    expect(await p.remoteAllocated(conn(), 'a;rm -rf ~')).toBeUndefined();
    expect(await p.remoteAllocated(conn(), '$(id).img')).toBeUndefined();
    expect(runner.calls).toEqual([]);
  });

  it('remote du: undefined when du fails (port 22 offers no shell) or prints no number', async () => {
    const { p } = probesFor(
      { argv: du('backup/x.img'), exitCode: 1, stderr: 'This service allows sftp connections only.\n' },
      { argv: du('backup/x.img'), stdout: 'du: cannot access\n' },
    );
    expect(await p.remoteAllocated(conn(), 'x.img')).toBeUndefined();
    expect(await p.remoteAllocated(conn(), 'x.img')).toBeUndefined();
  });
});

describe('e2fsprogsVersion (mke2fs -V)', () => {
  const argv = ['mke2fs', '-V'];

  it('reads the version from what mke2fs prints (on stderr), a missing patch level as 0', async () => {
    const { p } = probesFor(
      { argv, stderr: 'mke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0\n' },
      { argv, stdout: 'mke2fs 1.46 (1-Jan-2021)\n' },
      { argv, exitCode: 127, stderr: 'mke2fs: not found' },
    );
    expect(await p.e2fsprogsVersion()).toEqual([1, 47, 0]);
    expect(await p.e2fsprogsVersion()).toEqual([1, 46, 0]);
    expect(await p.e2fsprogsVersion()).toBeUndefined();
  });
});

describe('verifyTab (findmnt --verify)', () => {
  const argv = (): string[] => ['findmnt', '--verify', '--tab-file', join(scratch(), 'fstab')];
  const TEXT = 'sshfs#u1@h:backup /srv/box fuse.sshfs reconnect,nofail 0 0\n';

  /** A runner that also records what the would-be fstab said when findmnt read it. */
  function seeing(answer: Partial<CmdResult>): Runner & { seen: string[] } {
    const seen: string[] = [];
    const inner = new RecordingRunner([{ argv: argv(), write: false, ...answer }]);
    return {
      seen,
      run: async (cmd: Cmd) => {
        seen.push(await readFile(cmd.argv.at(-1)!, 'utf8'));
        return inner.run(cmd);
      },
    };
  }

  it('checks the text in a private scratch file, counts nothing on success, and removes the scratch directory', async () => {
    const runner = seeing({ stdout: 'Success, no errors or warnings detected\n' });
    expect(await commandProbes(runner, mkTempDir).verifyTab(TEXT)).toEqual({ parse: 0, errors: 0, report: 'Success, no errors or warnings detected' });
    expect(runner.seen).toEqual([TEXT]);
    await expect(stat(scratch())).rejects.toThrow(/ENOENT/);
  });

  it('counts parse errors and errors from the summary line, whatever the exit code', async () => {
    const report = '   [E] unreachable on boot required target: No such file or directory\n\n0 parse errors, 1 error, 0 warnings\n';
    const runner = seeing({ stdout: report, exitCode: 1 });
    expect(await commandProbes(runner, mkTempDir).verifyTab(TEXT)).toEqual({ parse: 0, errors: 1, report: report.trim() });
    await expect(stat(scratch())).rejects.toThrow(/ENOENT/);
  });

  it('rejects an answer it cannot read, and still removes the scratch directory', async () => {
    const runner = seeing({ stdout: 'something else\n', exitCode: 1 });
    await expect(commandProbes(runner, mkTempDir).verifyTab(TEXT)).rejects.toThrow('unexpected findmnt --verify output: something else');
    await expect(stat(scratch())).rejects.toThrow(/ENOENT/);
  });
});

describe('publicKeyOf (ssh-keygen -y)', () => {
  it('reads the public key of a private key file, ending in a newline', async () => {
    const argv = ['ssh-keygen', '-y', '-f', '/etc/hbs/id_ed25519'];
    const { p } = probesFor({ argv, stdout: 'ssh-ed25519 AAAA hbs' }, { argv, stdout: 'ssh-ed25519 BBBB hbs\n' });
    expect(await p.publicKeyOf('/etc/hbs/id_ed25519')).toBe('ssh-ed25519 AAAA hbs\n');
    expect(await p.publicKeyOf('/etc/hbs/id_ed25519')).toBe('ssh-ed25519 BBBB hbs\n');
  });
});

describe('read-only', () => {
  it('readOnly() refuses a command not marked read-only, before the runner sees it', async () => {
    const inner = new RecordingRunner();
    const ro = readOnly(inner);
    await expect(ro.run({ argv: ['rm', '-rf', '/srv/box'] })).rejects.toBeInstanceOf(WriteInProbeError);
    await expect(ro.run({ argv: ['losetup', '--detach', '/dev/loop3'], write: true })).rejects.toThrow('a read-only probe tried to run a changing command: losetup --detach /dev/loop3');
    expect(inner.calls).toEqual([]);
  });

  it('readOnly() passes read-only commands through', async () => {
    const ro = readOnly(new RecordingRunner([{ argv: ['findmnt'], write: false, stdout: 'x' }]));
    await expect(ro.run({ argv: ['findmnt'], write: false })).resolves.toMatchObject({ stdout: 'x' });
  });

  it('every probe runs only commands marked read-only', async () => {
    const seen: Cmd[] = [];
    const anything: Runner = {
      run: (cmd) => {
        seen.push(cmd);
        return Promise.resolve({ exitCode: 0, stdout: cmd.argv[0] === 'findmnt' && cmd.argv[1] === '--verify' ? 'Success, no errors or warnings detected' : '', stderr: '' });
      },
    };
    const p = commandProbes(anything, mkTempDir);
    const key = passphraseKey('k');
    const all: Promise<unknown>[] = [
      p.mountAt('/m'),
      p.loops(),
      p.file('/f'),
      p.signature('/f'),
      p.space('/m'),
      p.usage('/m'),
      p.readsBack('/dev/loop0'),
      p.deviceBytes('/dev/loop0'),
      p.mapping('x'),
      p.luksInfo('/f'),
      p.testKey('/f', key),
      p.superblock('/dev/loop0'),
      p.hostKeys('h', 23),
      p.keyLogin(conn()),
      p.boxSpaceOverSftp(conn()),
      p.remoteAllocated(conn(), 'x.img'),
      p.e2fsprogsVersion(),
      p.verifyTab('x\n'),
      p.publicKeyOf('/k'),
    ];
    await Promise.allSettled(all);
    // One command per probe (remoteAllocated sends a safe name), none of them a write.
    expect(seen).toHaveLength(all.length);
    expect(seen.filter((c) => c.write !== false).map((c) => c.argv.join(' '))).toEqual([]);
  });
});
