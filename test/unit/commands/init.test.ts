/**
 * `hbs init` of a plain image, driven through initCommand on the fake machine: the machine's state
 * goes in, the commands that ran and the files and state that result come out.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initCommand, type InitCliFlags } from '../../../src/commands/init/index.js';
import { EXIT } from '../../../src/core/errors.js';
import { formatCmd as formatCmdOf, quoteArg } from '../../../src/core/runner.js';
import { TOOLS, type PreflightDeps } from '../../../src/lib/preflight.js';
import type { FakeMachine } from '../../support/fake-machine.js';
import { expectGolden, stableByteCounts } from '../../support/golden.js';
import { block, BOX_PASSWORD, configFile, fakeBox, initFlags, listTree, modeOf, PINNED, plainFstabLines, shownContent, sshfsOptions } from '../../support/init.js';
import {
  BOX_SOURCE,
  FINGERPRINT,
  FIXED_NOW,
  GiB,
  HOST,
  HOSTNAME,
  IMAGE,
  MACHINE_ID,
  makeConfig,
  makeSandbox,
  otherLock,
  OTHER_UUID,
  PID,
  putOnBox,
  readLockFile,
  rejection,
  scriptedPrompter,
  testIo,
  USER,
  UUID,
  writeConfig,
  writeLock,
  type Sandbox,
  type TestIo,
} from '../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
});
afterEach(async () => {
  await sb.cleanup();
});

const init = (flags: InitCliFlags = {}, io: TestIo = testIo(m)) => initCommand(initFlags(sb, flags), io);
const tmp = (lines: readonly string[]) => lines.map((l) => l.split(sb.root).join('<tmp>'));

/** What a finished first run records for the sandbox. */
const recorded = () => makeConfig(sb, { fstab: sb.fstab });

/** The ssh key and the pin a first run leaves, so that a later run needs no password. */
async function keyAndPin(): Promise<void> {
  await mkdir(join(sb.root, 'ssh'), { recursive: true });
  await writeFile(sb.sshKey, 'fake private key\n', { mode: 0o600 });
  await writeFile(`${sb.sshKey}.pub`, m.world.publicKey);
  await mkdir(sb.configDir, { recursive: true });
  await writeFile(sb.knownHosts, PINNED, { mode: 0o600 });
}

/** Another ed25519 public key blob (not the one the box accepts). */
const OTHER_KEY_BLOB = 'AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';

const OTHER_FSTAB = '# /etc/fstab: static file system information.\nUUID=1234-abcd / ext4 errors=remount-ro 0 1\n/swapfile none swap sw 0 0\n';

describe('hbs init: a first run', () => {
  it('pins the host key, makes the key, mounts the box, creates and formats the image, writes config, lock and fstab, mounts it', async () => {
    const io = testIo(m, { stdin: 'box password\n' });
    await init({ passwordStdin: true }, io);

    expect(m.ran).toEqual([
      `ssh-keygen -q -t ed25519 -N '' -C hbs@testhost -f ${sb.sshKey}`,
      `sshfs -o '${sshfsOptions(sb)}' ${USER}@${HOST}:backup ${sb.boxMount}`,
      `truncate '--size=>10737418240' ${sb.image}`,
      `mkfs.ext4 -q -L hbs-backup -U ${UUID} -m 0 -e remount-ro -O 'meta_bg,^resize_inode' -E assume_storage_prezeroed=1,nodiscard ${sb.image}`,
      `mount -t ext4 -o loop,noatime,noinit_itable ${sb.image} ${sb.mountPoint}`,
    ]);
    // The files it wrote, with their modes.
    expect(await readFile(sb.knownHosts, 'utf8')).toBe(PINNED);
    expect(await modeOf(sb.knownHosts)).toBe(0o600);
    expect(await modeOf(sb.configDir)).toBe(0o700);
    // The key pair hbs made is recorded as its own (hbs uninstall may remove it).
    const made = recorded();
    expect(await readFile(sb.config, 'utf8')).toBe(JSON.stringify({ ...made, ssh: { ...made.ssh, generated: true } }, null, 2) + '\n');
    expect(await modeOf(sb.config)).toBe(0o600);
    expect(await readLockFile(sb)).toEqual({ hostname: HOSTNAME, machineId: MACHINE_ID, pid: PID, time: FIXED_NOW.toISOString(), config: sb.config });
    expect(await modeOf(sb.lock)).toBe(0o600);
    expect(await readFile(sb.fstab, 'utf8')).toBe(block(sb, plainFstabLines(sb)));
    expect(await modeOf(sb.fstab)).toBe(0o644);
    // The image: created empty (0600) by this run, then sized and formatted.
    expect(await modeOf(sb.image)).toBe(0o600);
    expect(m.world.files.get(sb.image)?.sizeBytes).toBe(10 * GiB);
    expect(m.world.signatures.get(sb.image)).toEqual({ TYPE: 'ext4', UUID });
    // The stack is up: box, then the image through a buffered loop device.
    expect(m.world.mounts.get(sb.boxMount)).toMatchObject({ fstype: 'fuse.sshfs', source: BOX_SOURCE });
    expect(m.world.mounts.get(sb.mountPoint)).toMatchObject({ fstype: 'ext4', source: '/dev/loop0' });
    expect(m.loopOf(sb.image)?.directIo).toBe(false);
    const out = tmp(io.reporter.lines);
    expect(out).toContain('The image <tmp>/box/filesystem.img (10 GiB, ext4) is mounted at <tmp>/mnt.');
    expect(out).toContain('\nBack up into <tmp>/mnt/snapshots with owners, groups, modes, hard links, ACLs and xattrs intact (docs/backup.md):');
    expect(out).toContain(`  hbs --config ${quoteArg(sb.config).replace(sb.root, '<tmp>')} backup --source /etc --source /home --keep-daily 7 --keep-weekly 4`);
  });

  it('the box password reaches sshfs only on stdin, and nothing logs it', async () => {
    const password = 'S3cr3t pw,with=odd"chars';
    m.world.keyLogin = false;
    const home = join(sb.root, 'account-home');
    m.account(home, password);
    const io = testIo(m, { stdin: `${password}\n` });
    await init({ passwordStdin: true }, io);
    const withPassword = m.commands.filter((c) => c.stdin !== undefined && Buffer.from(c.stdin).toString().includes(password));
    expect(withPassword.map((c) => c.argv[0])).toEqual(['sshfs']);
    expect(withPassword[0]?.stdin).toBe(`${password}\n`);
    expect(withPassword[0]?.secrets).toEqual([password]);
    for (const c of m.commands) expect(c.argv.join(' ')).not.toContain(password);
    expect(io.reporter.lines.join('\n')).not.toContain(password);
    expect(await readFile(sb.config, 'utf8')).not.toContain(password);
  });

  it('without a key and without the password (no terminal): exit 2 before anything changes', async () => {
    const err = await rejection(init());
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`no box password given, and ${sb.sshKey} does not exist yet: the new key has to be installed on the box once with the password`);
    expect(err.hint).toContain('--password-stdin');
    expect(m.ran).toEqual([]);
    expect(await listTree(sb.root)).toEqual([]);
  });

  it('merges into an existing fstab: every other byte and the mode kept, a backup first', async () => {
    await keyAndPin();
    await writeFile(sb.fstab, OTHER_FSTAB.trimEnd()); // no final newline
    await chmod(sb.fstab, 0o640);
    const io = testIo(m);
    await init({}, io);
    const text = await readFile(sb.fstab, 'utf8');
    // hbs adds the missing newline and says so in its marker, so removing the block gives the file back.
    expect(text).toBe(
      OTHER_FSTAB +
        block(sb, plainFstabLines(sb)).replace('edit with hbs, not by hand', 'edit with hbs, not by hand; hbs added the newline above'),
    );
    expect(await modeOf(sb.fstab)).toBe(0o640);
    const backup = `${sb.fstab}.hbs-backup-20250102T030405Z`;
    expect(await readFile(backup, 'utf8')).toBe(OTHER_FSTAB.trimEnd());
    expect(io.reporter.lines).toContain(`  backup: ${backup}`);
  });

  it('replaces an outdated hbs block in place, keeping the lines before and after it', async () => {
    await keyAndPin();
    const old = block(sb, plainFstabLines(sb, 'noatime'));
    const after = '# mine\n/dev/sdb1 /data xfs defaults 0 2\n';
    await writeFile(sb.fstab, OTHER_FSTAB + old + after);
    await init();
    expect(await readFile(sb.fstab, 'utf8')).toBe(OTHER_FSTAB + block(sb, plainFstabLines(sb)) + after);
  });

  it('findmnt --verify finding new errors with the block: fstab left as it was (no backup), the run stops there', async () => {
    await keyAndPin();
    await writeFile(sb.fstab, OTHER_FSTAB);
    // The image's line is what findmnt objects to (as if the mount point were not a directory).
    m.world.badTabLine = new RegExp(` ${sb.mountPoint} ext4 `);
    const err = await rejection(init());
    expect(err.message).toBe(`findmnt --verify rejects the fstab lines hbs would add; ${sb.fstab} was not changed`);
    expect(await readFile(sb.fstab, 'utf8')).toBe(OTHER_FSTAB);
    expect((await listTree(sb.root)).filter((p) => p.includes('hbs-backup'))).toEqual([]);
  });

  it('errors fstab had before do not block the block: only new ones do', async () => {
    await keyAndPin();
    const broken = '/dev/sdz9 /nowhere ext4 defaults 0 2\n';
    await writeFile(sb.fstab, OTHER_FSTAB + broken);
    m.world.badTabLine = /\/nowhere/;
    await init();
    expect(await readFile(sb.fstab, 'utf8')).toBe(OTHER_FSTAB + broken + block(sb, plainFstabLines(sb)));
  });

  it('--no-fstab: fstab is not touched and the config says so', async () => {
    await keyAndPin();
    await writeFile(sb.fstab, OTHER_FSTAB);
    const io = testIo(m);
    await init({ fstab: false }, io);
    expect(await readFile(sb.fstab, 'utf8')).toBe(OTHER_FSTAB);
    expect((await configFile(sb))).toMatchObject({ fstab: null });
    expect(io.reporter.lines).toContain('• fstab entries — skipped (--no-fstab)');
  });
});

describe('hbs init: again', () => {
  it('a re-run where everything is in place: every step is already done, nothing runs, no file changes (the lock too)', async () => {
    await init({ passwordStdin: true }, testIo(m, { stdin: 'pw' }));
    const ran = m.ran.length;
    const files = async () => Promise.all([sb.config, sb.knownHosts, sb.fstab, sb.sshKey, `${sb.sshKey}.pub`, sb.lock].map((p) => readFile(p, 'utf8')));
    const before = await files();
    const tree = await listTree(sb.root);
    const io = testIo(m, { deps: { pid: 4242, now: () => new Date('2025-02-03T04:05:06.000Z') } });

    await init({}, io);

    expect(m.ran.length).toBe(ran);
    expect(await files()).toEqual(before);
    expect(await listTree(sb.root)).toEqual(tree); // no backups, nothing new
    expect(tmp(io.reporter.lines.filter((l) => /^[•✔✖]/.test(l)))).toEqual([
      '• Clean up after an interrupted run — nothing left behind',
      '• Mount points are free — <tmp>/box, <tmp>/mnt',
      `• Pin the box host key — ${FINGERPRINT} already pinned in <tmp>/etc/hbs/known_hosts`,
      '• SSH key for the box — using <tmp>/ssh/hbs_ed25519',
      `• Key login to the box — ${USER}@${HOST} accepts <tmp>/ssh/hbs_ed25519`,
      `• Mount the box with sshfs — already mounted: ${USER}@${HOST}:backup at <tmp>/box`,
      '• Readahead of the box mount — 4096 KiB',
      '• Nobody else uses the image — this machine holds the lock',
      '• Space on the box — 900 GiB free of 1 TiB',
      `• Sparse image file on the box — <tmp>/box/filesystem.img is the image recorded in <tmp>/etc/hbs/config.json (10 GiB, UUID ${UUID})`,
      `• ext4 filesystem in the image — already ext4, UUID ${UUID}`,
      '• Write the config — <tmp>/etc/hbs/config.json is up to date',
      '• Forget what was about to be created — nothing left',
      '• Take the lock — held by this machine since 2025-01-02T03:04:05.678Z',
      '• Check the filesystem (e2fsck -p) — mounted: not checked',
      '• Mount the filesystem — already mounted: <tmp>/box/filesystem.img at <tmp>/mnt (/dev/loop0)',
      '• Loop device buffered — buffered (/dev/loop0)',
      '• fstab entries — <tmp>/fstab already has the hbs block',
      '• systemd unit (brings the stack up at boot, with the lock) — skipped (--no-systemd: fstab mounts it at boot, without the lock)',
    ]);
  });

  it('in a terminal, a re-run of a finished setup says so and asks nothing to confirm', async () => {
    await init({ passwordStdin: true }, testIo(m, { stdin: 'pw' }));
    const ran = m.ran.length;
    const p = scriptedPrompter([]);
    const io = testIo(m, { prompter: p });
    await init({ yes: false }, io);
    expect(io.reporter.lines).toContain('Everything is set up already: nothing to change.');
    expect(p.asked).toEqual([]);
    expect(m.ran.length).toBe(ran);
  });

  it('a lock of this machine (for this config) left by a run that stopped is kept as it is', async () => {
    await keyAndPin();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await writeLock(sb, { hostname: HOSTNAME, machineId: MACHINE_ID, pid: 111, time: '2024-12-31T23:00:00.000Z', config: sb.config });
    await init();
    expect(await readLockFile(sb)).toMatchObject({ pid: 111 });
  });

  it('an interrupted run resumes: the config was written right after mkfs, so the next run takes the image as its own', async () => {
    m.failNext(['mount'], { exitCode: 32, stderr: 'mount: /mnt: wrong fs type, bad option, bad superblock on /dev/loop0\n' });
    const err = await rejection(init({ passwordStdin: true }, testIo(m, { stdin: 'pw' })));
    expect(err.message).toMatch(/^Mount the filesystem: command failed \(exit 32\): mount -t ext4/);
    expect(err.hint).toContain('re-run `hbs init` with the same answers');
    expect((await configFile(sb))).toMatchObject({ image: { uuid: UUID } });
    const ran = m.ran.length;

    await init();

    // No second truncate or mkfs: only the mount.
    expect(m.ran.slice(ran)).toEqual([`mount -t ext4 -o loop,noatime,noinit_itable ${sb.image} ${sb.mountPoint}`]);
  });

  it('keeps the recorded size on a re-run with another --size (growing is `hbs grow`), and a full box does not refuse it', async () => {
    await init({ passwordStdin: true }, testIo(m, { stdin: 'pw' }));
    m.world.space.set(sb.boxMount, { totalBytes: 1024 * GiB, freeBytes: GiB });
    await init({ size: '300G' });
    expect((await configFile(sb))).toMatchObject({ image: { sizeBytes: 10 * GiB } });
    expect(m.ran.filter((l) => l.startsWith('truncate'))).toHaveLength(1);
  });

  it('a config that describes another box or image is not overwritten: exit 2 before anything changes', async () => {
    await keyAndPin();
    await writeConfig(sb, makeConfig(sb, { image: { name: 'other.img', sizeBytes: 10 * GiB, uuid: OTHER_UUID, label: 'hbs-backup' } }));
    const before = await readFile(sb.config, 'utf8');
    const err = await rejection(init());
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${sb.config} already describes another setup (${USER}@${HOST}, image ${sb.boxMount}/other.img); it was left as it is`);
    expect(await readFile(sb.config, 'utf8')).toBe(before);
    expect(m.ran).toEqual([]);
  });
});

describe('hbs init: what is already there', () => {
  /** The box mounted already, with `content` as the image file on it. */
  async function boxUp(content?: string): Promise<void> {
    await keyAndPin();
    if (content !== undefined) await putOnBox(sb, IMAGE, content);
    await m.mountBox(sb.boxMount, BOX_SOURCE);
  }

  it('refuses the space the box does not have, with the figures; --force lets it pass', async () => {
    await keyAndPin();
    const err = await rejection(init({ size: '1000G' }));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe('image size 1000 GiB is larger than the space left on the box (900 GiB free of 1 TiB)');
    expect(err.hint).toContain('--force');
    expect(m.ran.filter((l) => !l.startsWith('sshfs'))).toEqual([]);
    await init({ size: '1000G', force: true });
    expect(m.world.files.get(sb.image)?.sizeBytes).toBe(1000 * GiB);
  });

  it('an ext4 image that is not the recorded one is left untouched (exit 1); the hint says --adopt', async () => {
    await boxUp('precious');
    m.ext4(sb.image, OTHER_UUID);
    m.world.files.set(sb.image, { sizeBytes: 100 * GiB, allocatedBytes: GiB });
    const err = await rejection(init());
    expect(err.exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(`${sb.image} already exists on the box (100 GiB, ext4, UUID ${OTHER_UUID}) and is not the image recorded in ${sb.config}; hbs left it untouched`);
    expect(err.hint).toContain('--adopt');
    expect(m.ran).toEqual([]);
    expect(await readFile(sb.image, 'utf8')).toBe('precious');
    expect(await listTree(sb.configDir)).toEqual(['known_hosts']);
  });

  it('a file without a filesystem is never adopted nor formatted; the hint names --image', async () => {
    await boxUp('not an image');
    const err = await rejection(init({ adopt: true }));
    expect(err.message).toBe(`${sb.image} already exists on the box (12 B, no filesystem recognised) and is not the image recorded in ${sb.config}; hbs left it untouched`);
    expect(err.hint).toContain('--image');
    expect(m.ran).toEqual([]);
    expect(await readFile(sb.image, 'utf8')).toBe('not an image');
  });

  it('an ext4 image at another path than the recorded one does not count as recorded', async () => {
    await boxUp('');
    await writeConfig(sb, makeConfig(sb, { fstab: sb.fstab, boxMount: join(sb.root, 'elsewhere') }));
    m.ext4(sb.image, UUID);
    const err = await rejection(init());
    expect(err.message).toContain('already describes another setup');
  });

  it('--force-format needs a typed confirmation, which no terminal (or --yes) can give: exit 2, nothing changed', async () => {
    await boxUp('precious');
    m.ext4(sb.image, OTHER_UUID);
    const err = await rejection(init({ forceFormat: true }));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toMatch(/^--force-format erases an existing image: it needs its name typed at a prompt/);
    expect(m.ran).toEqual([]);
    expect(await readFile(sb.image, 'utf8')).toBe('precious');
  });

  it('--force-format in a terminal: the image name typed, the old file goes and a new image is created and formatted', async () => {
    await boxUp('old contents');
    m.ext4(sb.image, OTHER_UUID);
    const p = scriptedPrompter([IMAGE, true]);
    await init({ forceFormat: true, yes: false }, testIo(m, { prompter: p }));
    expect(p.asked[0]).toContain('This ERASES it. Type the image name (filesystem.img) to format it anew');
    expect(p.asked[1]).toBe('Make these changes?');
    expect(await readFile(sb.image, 'utf8')).toBe(''); // a new sparse file, not the old one
    expect(m.ran.slice(0, 2)).toEqual([`truncate '--size=>10737418240' ${sb.image}`, expect.stringMatching(new RegExp(`^mkfs.ext4 .* -U ${UUID} .* ${sb.image}$`))]);
    expect(m.world.signatures.get(sb.image)).toEqual({ TYPE: 'ext4', UUID });
  });

  it('--force-format with the wrong name typed: stopped (exit 130), nothing erased', async () => {
    await boxUp('old contents');
    m.ext4(sb.image, OTHER_UUID);
    const err = await rejection(init({ forceFormat: true, yes: false }, testIo(m, { prompter: scriptedPrompter(['filesystem']) })));
    expect(err.exitCode).toBe(EXIT.aborted);
    expect(err.message).toBe('"filesystem" is not "filesystem.img"; nothing was erased');
    expect(await readFile(sb.image, 'utf8')).toBe('old contents');
    expect(m.ran).toEqual([]);
  });

  it('in a terminal, an ext4 image found on the box is offered for adoption; yes adopts it (no mkfs)', async () => {
    await boxUp('');
    m.ext4(sb.image, OTHER_UUID);
    m.world.files.set(sb.image, { sizeBytes: 50 * GiB, allocatedBytes: GiB });
    const p = scriptedPrompter([true, true]);
    await init({ yes: false }, testIo(m, { prompter: p }));
    expect(p.asked[0]).toMatch(/already exists on the box .*\nAdopt it as it is \(no mkfs, the data stays\)\?$/s);
    expect(m.ran.some((l) => /^(mkfs|truncate)/.test(l))).toBe(false);
    expect((await configFile(sb))).toMatchObject({ image: { uuid: OTHER_UUID, sizeBytes: 50 * GiB } });
  });

  it('"no" to the adoption: nothing changed (exit 130)', async () => {
    await boxUp('');
    m.ext4(sb.image, OTHER_UUID);
    const err = await rejection(init({ yes: false }, testIo(m, { prompter: scriptedPrompter([false]) })));
    expect(err.exitCode).toBe(EXIT.aborted);
    expect(m.ran).toEqual([]);
    expect(await listTree(sb.configDir)).toEqual(['known_hosts']);
  });
});

describe('hbs init: the mount points', () => {
  it('a box mount holding something else: exit 2 before anything changes', async () => {
    m.world.mounts.set(sb.boxMount, { target: sb.boxMount, source: 'tmpfs', fstype: 'tmpfs', options: 'rw' });
    const err = await rejection(init({ passwordStdin: true }, testIo(m, { stdin: 'pw' })));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${sb.boxMount} holds tmpfs (tmpfs), not ${USER}@${HOST}:backup; hbs will not mount over it`);
    expect(err.hint).toContain('--box-mount');
    expect(m.ran).toEqual([]);
    expect(await listTree(sb.root)).toEqual([]);
  });

  it('an sshfs mount of another directory of the box is something else too', async () => {
    m.world.mounts.set(sb.boxMount, { target: sb.boxMount, source: `sshfs#${USER}@${HOST}:other`, fstype: 'fuse.sshfs', options: 'rw' });
    const err = await rejection(init({ passwordStdin: true }, testIo(m, { stdin: 'pw' })));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toContain(`holds sshfs#${USER}@${HOST}:other (fuse.sshfs)`);
  });

  it('a mount point with files in it, or holding another image: exit 2 before anything changes', async () => {
    await mkdir(sb.mountPoint, { recursive: true });
    await writeFile(join(sb.mountPoint, 'precious.txt'), 'data');
    let err = await rejection(init({ passwordStdin: true }, testIo(m, { stdin: 'pw' })));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`mount point ${sb.mountPoint} is a directory with files in it; hbs will not mount over them`);
    m.mountFs(sb.mountPoint, m.attach('/srv/x.img'));
    err = await rejection(init({ passwordStdin: true }, testIo(m, { stdin: 'pw' })));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toContain(`${sb.mountPoint} holds /srv/x.img (ext4), not ${sb.image}`);
    expect(m.ran).toEqual([]);
  });

  it('a box mount directory with files in it (nothing mounted there) is refused', async () => {
    await mkdir(sb.boxMount, { recursive: true });
    await writeFile(join(sb.boxMount, 'precious.txt'), 'data');
    const err = await rejection(init({ passwordStdin: true }, testIo(m, { stdin: 'pw' })));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`box mount ${sb.boxMount} is a directory with files in it; hbs will not mount over them`);
  });
});

describe('hbs init: the box mount', () => {
  it('the right source under another filesystem type is something else', async () => {
    m.world.mounts.set(sb.boxMount, { target: sb.boxMount, source: BOX_SOURCE, fstype: 'fuse.rclone', options: 'rw' });
    const err = await rejection(init({ passwordStdin: true }, testIo(m, { stdin: 'pw' })));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toContain(`holds ${BOX_SOURCE} (fuse.rclone)`);
  });

  it('a mount point holding a filesystem that is not a loop device of the image is refused', async () => {
    m.world.mounts.set(sb.mountPoint, { target: sb.mountPoint, source: '/dev/sdb1', fstype: 'xfs', options: 'rw' });
    const err = await rejection(init({ passwordStdin: true }, testIo(m, { stdin: 'pw' })));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${sb.mountPoint} holds /dev/sdb1 (xfs), not ${sb.image}; hbs will not mount over it`);
  });

  it('the account home (remote path ""): sshfs of `user@host:`; an existing empty directory is used as it is', async () => {
    await keyAndPin();
    await mkdir(sb.boxMount);
    await init({ remotePath: '' });
    expect(m.ran[0]).toBe(`sshfs -o '${sshfsOptions(sb, '')}' ${USER}@${HOST}: ${sb.boxMount}`);
  });

  it('sshfs that exits 0 without mounting: the run stops before anything is written under the box mount', async () => {
    await keyAndPin();
    m.doNothingNext(['sshfs']);
    const err = await rejection(init());
    expect(err.message).toBe(`the box did not come up at ${sb.boxMount}: ${sb.boxMount}: not mounted`);
    expect(await listTree(sb.boxMount)).toEqual([]);
    expect(m.ran).toHaveLength(1);
  });
});

describe('hbs init: the lock of another machine', () => {
  async function lockedBox(lock = otherLock): Promise<void> {
    await keyAndPin();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await writeLock(sb, lock);
  }

  it('refuses, naming the holder, before anything is written on the box', async () => {
    await lockedBox();
    const err = await rejection(init());
    expect(err.message).toContain('in use by another machine: other-host (machine-id a1b2c3d4e5f6…, pid 4242, config /etc/hbs/config.json)');
    expect(err.hint).toContain('--steal-lock');
    expect(m.ran).toEqual([]);
    expect(await readLockFile(sb)).toEqual(otherLock);
    expect(await listTree(sb.boxMount)).toEqual([`${IMAGE}.hbs-lock`]);
  });

  it("this machine's lock taken through another config is refused too", async () => {
    await lockedBox({ ...otherLock, machineId: MACHINE_ID, config: '/etc/hbs/other.json' });
    const err = await rejection(init());
    expect(err.message).toContain('config /etc/hbs/other.json');
    expect(m.ran).toEqual([]);
  });

  it('--steal-lock needs a yes: without a terminal and --yes it is a usage error; in a terminal "no" stops', async () => {
    await lockedBox();
    expect((await rejection(init({ stealLock: true, yes: false }))).exitCode).toBe(EXIT.usage);
    const no = scriptedPrompter([false]);
    const err = await rejection(init({ stealLock: true, yes: false }, testIo(m, { prompter: no })));
    expect(err.exitCode).toBe(EXIT.aborted);
    expect(no.asked[0]).toMatch(/^other-host .* holds the lock\. Take it over\?/);
    expect(await readLockFile(sb)).toEqual(otherLock);
    expect(m.ran).toEqual([]);
  });

  it('--steal-lock --yes takes it over and says whose it was', async () => {
    await lockedBox();
    const io = testIo(m);
    await init({ stealLock: true }, io);
    expect(await readLockFile(sb)).toMatchObject({ hostname: HOSTNAME, machineId: MACHINE_ID, pid: PID, config: sb.config });
    expect(io.reporter.lines).toContain('! taking over the lock held by other-host (machine-id a1b2c3d4e5f6…, pid 4242, config /etc/hbs/config.json) since 2025-01-01T00:00:00.000Z');
    expect(m.world.mounts.get(sb.mountPoint)?.fstype).toBe('ext4');
  });
});

describe('hbs init: a failing command', () => {
  it('a usage error from a step comes through as it is, and later steps do not run', async () => {
    const io = testIo(m, { stdin: 'pw' });
    const err = await rejection(init({ passwordStdin: true, hostKeyFingerprint: undefined }, io));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`--host-key-fingerprint is missing: the box offers ${FINGERPRINT} (ssh-ed25519)`);
    expect(io.reporter.lines.at(-1)).toBe('✖ Pin the box host key');
    expect(m.ran).toEqual([]);
    expect(await listTree(sb.root)).toEqual([]);
  });

  it('becomes an error naming the step, the command and the tail of its stderr, with the re-run hint; later steps do not run', async () => {
    m.failNext(['ssh-keygen'], { exitCode: 1, stderr: 'Saving key failed: Permission denied\n' });
    const io = testIo(m, { stdin: 'pw' });
    const err = await rejection(init({ passwordStdin: true }, io));
    expect(err.exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(`SSH key for the box: command failed (exit 1): ssh-keygen -q -t ed25519 -N '' -C hbs@testhost -f ${sb.sshKey}`);
    expect(err.details).toBe('Saving key failed: Permission denied');
    expect(err.hint).toBe('re-run `hbs init` with the same answers: finished steps are skipped');
    expect(io.reporter.lines.at(-1)).toBe('✖ SSH key for the box');
    expect(m.ran).toHaveLength(1);
  });
});

describe('hbs init --dry-run', () => {
  it('a first run: prints every change and makes none (golden)', async () => {
    const io = testIo(m);
    await init({ dryRun: true }, io);
    expect(m.ran).toEqual([]);
    expect(await listTree(sb.root)).toEqual([]);
    await expectGolden('init-dry-run.txt', stableByteCounts(io.reporter.lines, sb.root), sb.root);
  });

  it('shows exactly the known_hosts, config, lock and fstab lines a real run then writes', async () => {
    const dry = testIo(m);
    await init({ dryRun: true }, dry);
    const lines = dry.reporter.lines;
    await init({ passwordStdin: true }, testIo(m, { stdin: 'pw' }));
    const text = async (path: string) => (await readFile(path, 'utf8')).replace(/\n$/, '').split('\n');

    expect(shownContent(lines, new RegExp(`^ {2}! write ${sb.knownHosts} \\(the box's host key\\) \\(mode 0600, 113 bytes, atomic\\)$`))).toEqual(await text(sb.knownHosts));
    const config = shownContent(lines, new RegExp(`^ {2}! write ${sb.config} \\(mode 0600, \\d+ bytes, atomic\\)$`));
    expect(config).toEqual(await text(sb.config));
    expect(config.join('\n')).toContain(`"uuid": "${UUID}"`);
    expect(shownContent(lines, new RegExp(`^ {2}! write ${sb.lock} \\(this machine's lock\\) \\(mode 0600, \\d+ bytes, only if it does not exist\\)$`))).toEqual(await text(sb.lock));
    const fstab = shownContent(lines, new RegExp(`^ {2}! back up ${sb.fstab} \\(if it exists\\), then write its hbs block \\(${sb.config}\\)`));
    expect(fstab).toEqual(plainFstabLines(sb));
    expect(lines).toContain(`  ! findmnt --verify the hbs block, and ${sb.fstab} with it (no new errors allowed; else it is left as it is)`);
    // The byte counts are the real ones.
    const configBytes = Number(/\(mode 0600, (\d+) bytes, atomic\)$/.exec(lines.find((l) => l.startsWith(`  ! write ${sb.config} `))!)?.[1]);
    expect(configBytes).toBe(Buffer.byteLength(await readFile(sb.config)));
  });

  it('after a reboot (recorded, stack down): only the mounts and the lock, never a create, mkfs or config write', async () => {
    await keyAndPin();
    await writeConfig(sb, makeConfig(sb, { fstab: sb.fstab, image: { name: IMAGE, sizeBytes: 10 * GiB, uuid: OTHER_UUID, label: 'hbs-backup' } }));
    await writeFile(sb.fstab, block(sb, plainFstabLines(sb)));
    const io = testIo(m);
    await init({ dryRun: true }, io);
    expect(m.ran).toEqual([]);
    expect(tmp(io.reporter.lines.filter((l) => l.startsWith('  ! ') && !l.startsWith('  !   | ')))).toEqual([
      '  ! mkdir -p -m 0755 <tmp>/box',
      `  ! sshfs -o '${sshfsOptions(sb).split(sb.root).join('<tmp>')}' ${USER}@${HOST}:backup <tmp>/box`,
      '  ! write /sys/class/bdi/<the device of <tmp>/box>/read_ahead_kb (a kernel setting) (mode 0644, 5 bytes, in place)',
      expect.stringMatching(/^ {2}! write <tmp>\/box\/filesystem\.img\.hbs-lock \(this machine's lock\)/),
      '  ! mkdir -p -m 0755 <tmp>/mnt',
      '  ! mount -t ext4 -o loop,noatime,noinit_itable <tmp>/box/filesystem.img <tmp>/mnt',
    ]);
    expect(tmp(io.reporter.lines)).toContain('• Sparse image file on the box — <tmp>/box/filesystem.img is recorded in <tmp>/etc/hbs/config.json; it is checked once the box is mounted');
    expect(io.reporter.lines).toContain(`• ext4 filesystem in the image — already ext4, UUID ${OTHER_UUID}`);
  });

  it('--steal-lock shows what a confirmed takeover does, and takes nothing over', async () => {
    await keyAndPin();
    await m.mountBox(sb.boxMount, BOX_SOURCE);
    await writeLock(sb, otherLock);
    const io = testIo(m);
    await init({ dryRun: true, stealLock: true, yes: false }, io);
    expect(io.reporter.lines).toContain('! taking over the lock held by other-host (machine-id a1b2c3d4e5f6…, pid 4242, config /etc/hbs/config.json) since 2025-01-01T00:00:00.000Z');
    expect(io.reporter.lines.some((l) => l.startsWith(`  ! write ${sb.lock} (this machine's lock) (mode 0600, `) && l.endsWith('replacing it)'))).toBe(true);
    expect(await readLockFile(sb)).toEqual(otherLock);
    expect(m.ran).toEqual([]);
  });
});

describe('hbs init: the key upload with the box password', () => {
  const home = () => join(sb.root, 'account-home');

  it('mounts the account home with the password on stdin, puts the key there in both formats, unmounts, proves key login', async () => {
    m.world.keyLogin = false;
    m.account(home(), BOX_PASSWORD);
    const io = testIo(m, { stdin: `${BOX_PASSWORD}\n` });
    await init({ passwordStdin: true }, io);
    const [type, blob] = m.world.publicKey.trim().split(' ');
    const rfc4716 = ['---- BEGIN SSH2 PUBLIC KEY ----', blob!.slice(0, 70), blob!.slice(70), '---- END SSH2 PUBLIC KEY ----'].filter(Boolean).join('\n') + '\n';
    expect(await readFile(join(home(), '.ssh', 'authorized_keys'), 'utf8')).toBe(`${rfc4716}${type} ${blob} hbs@testhost\n`);
    expect(await modeOf(join(home(), '.ssh'))).toBe(0o700);
    expect(await modeOf(join(home(), '.ssh', 'authorized_keys'))).toBe(0o600);
    expect(io.reporter.lines).toContain('  added the key in RFC4716 and OpenSSH format');
    const mount = m.commands.find((c) => c.argv.includes('password_stdin') || (c.argv[2] ?? '').startsWith('password_stdin'))!;
    expect(mount.argv.slice(0, 2)).toEqual(['sshfs', '-o']);
    expect(mount.argv[2]).toBe(
      `password_stdin,port=23,PubkeyAuthentication=no,NumberOfPasswordPrompts=1,UserKnownHostsFile=${sb.knownHosts},GlobalKnownHostsFile=/dev/null,StrictHostKeyChecking=yes,ServerAliveInterval=15,ServerAliveCountMax=3`,
    );
    expect(mount.argv[3]).toBe(`${USER}@${HOST}:`);
    const dir = mount.argv[4]!;
    expect(m.ran[m.ran.indexOf(formatCmdOf(mount)) + 1]).toBe(`fusermount3 -u ${dir}`);
    await expect(readFile(dir)).rejects.toMatchObject({ code: 'ENOENT' }); // the temporary mount point is gone again
    // Key login works from now on: the box mount came next, with the key.
    expect(m.world.mounts.get(sb.boxMount)?.fstype).toBe('fuse.sshfs');
  });

  it('a rejected password: exit 1 with the reason, before the box is mounted; the password is in no message', async () => {
    m.world.keyLogin = false;
    m.account(home(), BOX_PASSWORD);
    const err = await rejection(init({ passwordStdin: true }, testIo(m, { stdin: 'wrong password\n' })));
    expect(err.exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(`logging in to ${USER}@${HOST} port 23 with the password failed`);
    expect(err.details).toBe('read: Connection reset by peer\nPermission denied, please try again.');
    expect(err.hint).toContain('check the password');
    expect(`${err.message}${err.details}${err.hint}`).not.toContain('wrong password');
    expect(m.ran.filter((l) => l.startsWith('fusermount3') || l.includes('reconnect'))).toEqual([]);
    expect(m.world.mounts.size).toBe(0);
  });

  it('the key is on the box but key login still fails: said so, with what ssh said', async () => {
    m.world.keyLogin = false;
    m.account(home(), BOX_PASSWORD);
    // The key pair on disk is not the one the box would accept.
    await mkdir(join(sb.root, 'ssh'), { recursive: true });
    await writeFile(sb.sshKey, 'fake private key\n', { mode: 0o600 });
    await writeFile(`${sb.sshKey}.pub`, `ssh-ed25519 ${OTHER_KEY_BLOB} other@host\n`);
    const err = await rejection(init({ passwordStdin: true }, testIo(m, { stdin: `${BOX_PASSWORD}\n` })));
    expect(err.message).toBe(`the key is on the box, but key login to ${USER}@${HOST} still fails`);
    expect(err.details).toBe('Permission denied (publickey)');
  });
});

describe('hbs init: what this machine lacks', () => {
  /** A PATH with every program init needs but sshfs; `apt-get install` brings the missing one. */
  async function withoutSshfs(): Promise<PreflightDeps> {
    const bin = join(sb.root, 'bin');
    await mkdir(bin, { recursive: true });
    for (const { tool } of [...TOOLS.init, { tool: 'cryptsetup' }]) if (tool !== 'sshfs') await writeFile(join(bin, tool), '#!/bin/sh\n', { mode: 0o755 });
    const run = m.run.bind(m);
    m.run = async (cmd) => {
      if (cmd.argv[0] === 'apt-get') await writeFile(join(bin, 'sshfs'), '#!/bin/sh\n', { mode: 0o755 });
      return run(cmd);
    };
    return { uid: () => 0, pathEnv: bin, exists: () => Promise.resolve(true) };
  }

  it('--dry-run never installs: it names what it would install, and asks nothing (exit 3)', async () => {
    const p = scriptedPrompter([]);
    const io: TestIo = { ...testIo(m, { prompter: p }), preflight: await withoutSshfs() };
    const err = await rejection(init({ dryRun: true, yes: false }, io));
    expect(err.exitCode).toBe(EXIT.preflight);
    expect(err.message).toBe('this machine is not ready for hbs init:\n  - the program sshfs (Debian package: sshfs)');
    expect(err.hint).toBe('a real run offers to install them in a terminal; or run apt-get install sshfs');
    expect(p.asked).toEqual([]);
    expect(m.ran).toEqual([]);
  });

  it('a real run in a terminal (as root) offers the install, runs `apt-get install -y` on a yes, checks again and goes on', async () => {
    await keyAndPin();
    const p = scriptedPrompter([true, false]);
    const io: TestIo = { ...testIo(m, { prompter: p }), preflight: await withoutSshfs() };
    const err = await rejection(init({ yes: false }, io));
    expect(p.asked[0]).toBe('Install them now with: apt-get install -y sshfs?');
    expect(io.reporter.lines).toContain('! missing on this machine:\n  - the program sshfs (Debian package: sshfs)');
    expect(m.ran).toEqual(['apt-get install -y sshfs']);
    // Ready now: the wizard went on to its summary (answered no here).
    expect(p.asked[1]).toBe('Make these changes?');
    expect(err.exitCode).toBe(EXIT.aborted);
  });

  it('"no" to the install, or no terminal, or not root: nothing installed, exit 3 with the apt-get line', async () => {
    for (const [io, yes] of [
      [{ ...testIo(m, { prompter: scriptedPrompter([false]) }), preflight: await withoutSshfs() }, false],
      [{ ...testIo(m), preflight: await withoutSshfs() }, true],
    ] as [TestIo, boolean][]) {
      const err = await rejection(init({ yes }, io));
      expect(err.exitCode).toBe(EXIT.preflight);
      expect(err.hint).toBe('apt-get install sshfs');
    }
    const notRoot: TestIo = { ...testIo(m, { prompter: scriptedPrompter([]) }), preflight: { ...(await withoutSshfs()), uid: () => 1000 } };
    const err = await rejection(init({ yes: false }, notRoot));
    expect(err.message).toContain("root privileges (the box mount, loop devices and mounts are root's) — run hbs as root, e.g. with sudo");
    expect(m.ran).toEqual([]);
  });
});

describe('hbs init in a terminal: the summary', () => {
  it('shows every answer and the very plan --dry-run prints; the filesystem then gets the UUID the plan showed', async () => {
    const uuids = ['11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222', '33333333-3333-4333-8333-333333333333'];
    const dry = testIo(m, { deps: { uuid: () => uuids[0]! } });
    await init({ dryRun: true }, dry);
    const plan = dry.reporter.lines.slice(1, -1); // without the dry-run's intro and closing lines
    expect(plan[0]).toMatch(/^• Clean up after an interrupted run/);
    expect(plan[1]).toMatch(/^• Mount points are free/);

    let next = 0;
    const p = scriptedPrompter([BOX_PASSWORD, true]);
    const io = testIo(m, { prompter: p, deps: { uuid: () => uuids[next++]! } });
    await init({ yes: false }, io);
    expect(p.asked[0]).toBe(`Password of ${USER} (used once, to put the key on the box; not stored)`);
    expect(p.asked[1]).toBe('Make these changes?');
    const lines = io.reporter.lines;
    const start = lines.indexOf('The plan, as `hbs init --dry-run` prints it (• already so, ! a change to be made):');
    expect(lines.slice(start + 1, start + 1 + plan.length)).toEqual(plan);
    const summary = tmp(lines.slice(lines.indexOf('Summary: nothing has been changed yet.'), start)).join('\n');
    for (const v of [`Storage Box account    ${USER}`, `${HOST}, port 23`, `${FINGERPRINT} (ssh-ed25519; from --host-key-fingerprint)`, 'backup', 'filesystem.img, 10 GiB', '<tmp>/box', '<tmp>/mnt', '<tmp>/ssh/hbs_ed25519 (made now)', 'set up once with the password you gave', '<tmp>/fstab (one hbs block; the rest stays as it is)', '<tmp>/etc/hbs/config.json']) {
      expect(summary).toContain(v);
    }
    expect(m.ran).toContain(`mkfs.ext4 -q -L hbs-backup -U ${uuids[0]} -m 0 -e remount-ro -O 'meta_bg,^resize_inode' -E assume_storage_prezeroed=1,nodiscard ${sb.image}`);
    expect((await configFile(sb)).image.uuid).toBe(uuids[0]);
    expect(lines.join('\n')).not.toContain(BOX_PASSWORD);
  });

  it('what stops the plan stops the run before the summary: nothing of the plan is shown, nothing changed', async () => {
    await keyAndPin();
    m.world.mounts.set(sb.boxMount, { target: sb.boxMount, source: 'tmpfs', fstype: 'tmpfs', options: 'rw' });
    const p = scriptedPrompter([]);
    const io = testIo(m, { prompter: p });
    const err = await rejection(init({ yes: false }, io));
    expect(err.message).toContain('hbs will not mount over it');
    expect(io.reporter.lines.filter((l) => /^[•✔✖]|^ {2}!/.test(l))).toEqual([]);
    expect(p.asked).toEqual([]);
    expect(m.ran).toEqual([]);
  });

  it('"no" at the summary changes nothing (exit 130)', async () => {
    await keyAndPin();
    const before = await listTree(sb.root);
    const err = await rejection(init({ yes: false }, testIo(m, { prompter: scriptedPrompter([false]) })));
    expect(err.exitCode).toBe(EXIT.aborted);
    expect(err.message).toBe('answered no at the summary; nothing was changed');
    expect(m.ran).toEqual([]);
    expect(await listTree(sb.root)).toEqual(before);
  });
});
