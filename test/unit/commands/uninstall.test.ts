import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { uninstallCommand } from '../../../src/commands/uninstall.js';
import { mergeBlock } from '../../../src/core/block.js';
import { EXIT } from '../../../src/core/errors.js';
import { serializeConfig, type Config } from '../../../src/lib/config.js';
import { mergeAuthorizedKeys, parseOpenSshPublicKey } from '../../../src/lib/rfc4716.js';
import { backupLockPath, lastBackupPath } from '../../../src/lib/backup.js';
import { backupUnitNames, configUnitName, escapePath, templateText, unitName } from '../../../src/lib/systemd.js';
import { Executor } from '../../../src/core/executor.js';
import { loadStack, stepCtx } from '../../../src/commands/shared.js';
import { unitsRemoveStep, type UninstallCtx } from '../../../src/steps/uninstall.js';
import { FakeMachine } from '../../support/fake-machine.js';
import { expectGolden, stableByteCounts } from '../../support/golden.js';
import { HOST_KEY, PINNED } from '../../support/init.js';
import {
  BOX_SOURCE,
  encryptedConfig,
  HOST,
  IMAGE,
  makeConfig,
  makeDeps,
  makeSandbox,
  ourLock,
  putOnBox,
  readLockFile,
  rejection,
  scriptedPrompter,
  testIo,
  USER,
  UUID,
  writeLock,
  type Sandbox,
} from '../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
let units: string;
beforeEach(async () => {
  sb = await makeSandbox();
  m = new FakeMachine().box(sb.boxMount, sb.boxHome);
  units = join(sb.root, 'systemd');
});
afterEach(async () => {
  await sb.cleanup();
});

/** A hand-kept fstab without a final newline. */
const ORIGINAL_FSTAB = '# /etc/fstab: static file system information.\nUUID=1234-abcd / ext4 errors=remount-ro 0 1\n/swapfile none swap sw 0 0';
const OTHER_HOST_LINE = '[u999.your-storagebox.de]:23 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n';

/** The config of a stack init set up with every part: fstab, systemd unit, known_hosts, a key pair it made. */
function fullConfig(over: Partial<Config> = {}): Config {
  const c = makeConfig(sb, { fstab: sb.fstab, systemd: { dir: units }, ...over });
  return { ...c, ssh: { ...c.ssh, generated: true } };
}

/** What init leaves on this machine for `cfg` (the config at `path`), and the stack up. */
async function installed(cfg: Config, o: { path?: string; up?: boolean } = {}): Promise<void> {
  const path = o.path ?? sb.config;
  await mkdir(sb.configDir, { recursive: true });
  await writeFile(path, serializeConfig(cfg), { mode: 0o600 });
  const fstab = await readFile(sb.fstab, 'utf8').catch(() => ORIGINAL_FSTAB);
  await writeFile(sb.fstab, mergeBlock(fstab, path, [`line of ${path}`]));
  await writeFile(sb.knownHosts, PINNED + OTHER_HOST_LINE, { mode: 0o600 });
  await mkdir(join(sb.root, 'ssh'), { recursive: true });
  await writeFile(sb.sshKey, 'fake private key\n', { mode: 0o600 });
  await writeFile(`${sb.sshKey}.pub`, m.world.publicKey);
  await mkdir(join(units, 'multi-user.target.wants'), { recursive: true });
  await writeFile(join(units, 'hbs-mount@.service'), templateText(['/usr/bin/node', '/opt/hbs/bin/hbs']));
  const link = join(units, 'multi-user.target.wants', unitName(path));
  await symlink(join(units, 'hbs-mount@.service'), link).catch(() => undefined);
  if (o.up === false) return;
  await putOnBox(sb, IMAGE, 'the data');
  await m.mountBox(sb.boxMount, BOX_SOURCE);
  await writeLock(sb, ourLock(sb, { config: path }));
  if (cfg.encryption) {
    m.openMapping(cfg.encryption.mapperName, sb.image);
    m.mountFs(sb.mountPoint, `/dev/mapper/${cfg.encryption.mapperName}`);
  } else {
    m.ext4(sb.image, UUID);
    m.mountFs(sb.mountPoint, m.attach(sb.image));
  }
}

const uninstall = (flags: Record<string, unknown> = {}, io = testIo(m)) => uninstallCommand({ config: sb.config, ...flags }, io);
const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

/** Every file under the sandbox with its content (what a dry-run must leave exactly as it was). */
async function snapshot(dir = sb.root): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const p = join(e.parentPath, e.name);
    out[p] = e.isFile() ? await readFile(p, 'utf8') : e.isSymbolicLink() ? 'link' : 'dir';
  }
  return out;
}

describe('hbs uninstall', () => {
  it('takes the stack down, then removes the units, the fstab block (file byte for byte as before), the host key line, the key pair hbs made, the config; the image stays', async () => {
    await installed(fullConfig());
    const io = testIo(m);
    await uninstall({ yes: true }, io);
    expect(m.ran).toEqual([`sync --file-system ${sb.mountPoint}`, `umount ${sb.mountPoint}`, `fusermount3 -u ${sb.boxMount}`]);
    expect(m.world.mounts.size).toBe(0);
    expect(await readFile(sb.fstab, 'utf8')).toBe(ORIGINAL_FSTAB);
    expect(await readdir(units, { recursive: true })).toEqual(['multi-user.target.wants']);
    expect(await readFile(sb.knownHosts, 'utf8')).toBe(OTHER_HOST_LINE);
    for (const p of [sb.sshKey, `${sb.sshKey}.pub`, sb.config, sb.mountPoint, sb.boxMount]) expect(await exists(p), p).toBe(false);
    // The image and its data on the box stay; the lock was released.
    expect(await readFile(join(sb.boxHome, IMAGE), 'utf8')).toBe('the data');
    expect(await readLockFile(sb)).toBeUndefined();
    expect(io.reporter.lines).toContain(`  the image and its data on the box: ${USER}@${HOST}:backup/${IMAGE}`);
    expect(io.reporter.lines.at(-1)).toContain('hbs init --adopt');
  });

  it('a backup timer kept elsewhere (--install-timer --systemd-dir) goes too, with the backup record and lock beside the config; other files there stay', async () => {
    const timerDir = join(sb.root, 'timers');
    const cfg = fullConfig({ backup: { sources: ['/srv/data'], excludes: [], excludeFrom: null, keep: null, timer: { dir: timerDir, onCalendar: 'daily' } } });
    await installed(cfg);
    const names = backupUnitNames(sb.config);
    await mkdir(join(timerDir, 'timers.target.wants'), { recursive: true });
    await writeFile(join(timerDir, names.service), '[Service]\n');
    await writeFile(join(timerDir, names.timer), '[Timer]\n');
    await symlink(join(timerDir, names.timer), join(timerDir, 'timers.target.wants', names.timer));
    await writeFile(join(timerDir, 'someone-else.timer'), '[Timer]\n');
    await writeFile(lastBackupPath(sb.config), '{}');
    await writeFile(backupLockPath(sb.config), '');
    await uninstall({ yes: true });
    expect((await readdir(timerDir, { recursive: true })).sort()).toEqual(['someone-else.timer', 'timers.target.wants']);
    for (const p of [lastBackupPath(sb.config), backupLockPath(sb.config), sb.config]) expect(await exists(p), p).toBe(false);
  });

  it('--dry-run prints the list and changes nothing (golden); the list shown before the question is the same plan', async () => {
    await installed(fullConfig());
    const before = await snapshot();
    const dry = testIo(m);
    await uninstall({ dryRun: true }, dry);
    expect(m.ran).toEqual([]);
    expect(await snapshot()).toEqual(before);
    // The unit names hold the sandbox's path escaped as systemd does.
    const lines = stableByteCounts(dry.reporter.lines, sb.root).map((l) => l.split(escapePath(sb.root)).join('<tmp-escaped>'));
    await expectGolden('uninstall-dry-run.txt', lines, sb.root);
    // Answered no: the same `!` lines were shown, nothing changed.
    const asked = testIo(m, { prompter: scriptedPrompter([false]) });
    const err = await rejection(uninstall({}, asked));
    expect(err.exitCode).toBe(EXIT.aborted);
    const bangs = (l: readonly string[]): string[] => l.filter((x) => x.startsWith('  ! '));
    expect(bangs(asked.reporter.lines)).toEqual(bangs(dry.reporter.lines));
    expect(bangs(dry.reporter.lines).length).toBeGreaterThan(8);
    expect(await snapshot()).toEqual(before);
  });

  it('without a terminal and without --yes: exit 2, nothing changed', async () => {
    await installed(fullConfig());
    const before = await snapshot();
    const err = await rejection(uninstall());
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toContain('--yes');
    expect(await snapshot()).toEqual(before);
    expect(m.ran).toEqual([]);
  });

  it('another config in the same directory keeps what it shares: the key pair, the host key line, the template, its fstab block; its stack stays up', async () => {
    const other = join(sb.configDir, 'other.json');
    const otherMnt = join(sb.root, 'other-mnt');
    await installed(fullConfig({ boxMount: join(sb.root, 'other-box'), filesystem: { mountPoint: otherMnt, mountOptions: ['noatime'] }, box: { user: USER, host: HOST, port: 23, remotePath: 'other' } }), { path: other, up: false });
    m.mountFs(otherMnt, '/dev/loop9');
    await installed(fullConfig());
    const io = testIo(m);
    await uninstall({ yes: true }, io);
    expect(await exists(sb.sshKey)).toBe(true);
    expect(await readFile(sb.knownHosts, 'utf8')).toBe(PINNED + OTHER_HOST_LINE);
    expect((await readdir(units, { recursive: true })).sort()).toEqual(['hbs-mount@.service', 'multi-user.target.wants', `multi-user.target.wants/${unitName(other)}`].sort());
    expect(await readFile(sb.fstab, 'utf8')).toBe(mergeBlock(ORIGINAL_FSTAB, other, [`line of ${other}`]));
    expect(await exists(other)).toBe(true);
    expect(m.world.mounts.has(otherMnt)).toBe(true);
    expect(io.reporter.lines).toContain(`  the SSH key ${sb.sshKey}: ${other} uses it too`);
  });

  it('a key pair the config does not record as made by hbs stays, and it says so', async () => {
    await installed(makeConfig(sb, { fstab: sb.fstab, systemd: { dir: units } }));
    const io = testIo(m);
    await uninstall({ yes: true }, io);
    expect(await exists(sb.sshKey)).toBe(true);
    expect(io.reporter.lines.join('\n')).toContain(`the SSH key ${sb.sshKey}: the config does not record that hbs made it`);
  });

  it('--keep-key keeps the key pair hbs made', async () => {
    await installed(fullConfig());
    await uninstall({ yes: true, keepKey: true });
    expect(await exists(sb.sshKey)).toBe(true);
    expect(await exists(`${sb.sshKey}.pub`)).toBe(true);
  });

  it('systemd running: every unit of the config (a backup timer too) is stopped, its files and links removed, systemd reloaded', async () => {
    await installed(fullConfig());
    const timer = configUnitName(sb.config, 'backup', 'timer');
    await writeFile(join(units, timer), '[Timer]\n');
    await mkdir(join(units, 'timers.target.wants'));
    await symlink(join(units, timer), join(units, 'timers.target.wants', timer));
    // Someone else's unit that only looks alike stays.
    await writeFile(join(units, 'hbs-mount@etc-hbs-other.json.service'), 'x');
    const io = testIo(m);
    const { stack, cfg } = await loadStack(sb.config);
    const ctx: UninstallCtx = { ...stepCtx(stack, io, { probes: m.probes, deps: makeDeps() }), u: { cfg, systemd: [{ dir: units, live: true }], siblings: [] } };
    await new Executor({ runner: m, reporter: io.reporter, dryRun: false, verbose: false, now: () => new Date(), hint: '' }).run(ctx, [unitsRemoveStep]);
    expect(m.ran).toEqual([`systemctl stop '${timer}' '${unitName(sb.config)}'`, 'systemctl daemon-reload']);
    expect((await readdir(units, { recursive: true })).sort()).toEqual(['hbs-mount@etc-hbs-other.json.service', 'multi-user.target.wants', 'timers.target.wants']);
  });

  it('encrypted with the kept key and crypttab: mapping closed, crypttab block removed, kept key removed, header backup kept and named', async () => {
    const e = encryptedConfig(sb, { unattended: true });
    const cfg = fullConfig({ encryption: { ...e.encryption!, crypttab: sb.crypttab } });
    await writeFile(sb.crypttab, 'swap /dev/sda2 /dev/urandom swap\n');
    await writeFile(sb.crypttab, mergeBlock('swap /dev/sda2 /dev/urandom swap\n', sb.config, ['hbs-filesystem x y luks']));
    await installed(cfg);
    await writeFile(cfg.encryption!.unattendedKeyFile!, 'key', { mode: 0o400 });
    await writeFile(cfg.encryption!.headerBackup, 'header', { mode: 0o400 });
    const io = testIo(m);
    await uninstall({ yes: true }, io);
    expect(m.ran).toContain('cryptsetup close hbs-filesystem');
    expect(await readFile(sb.crypttab, 'utf8')).toBe('swap /dev/sda2 /dev/urandom swap\n');
    expect(await exists(cfg.encryption!.unattendedKeyFile!)).toBe(false);
    expect(await readFile(cfg.encryption!.headerBackup, 'utf8')).toBe('header');
    expect(io.reporter.lines.join('\n')).toContain(`the LUKS header backup: ${cfg.encryption!.headerBackup} (never deleted by hbs`);
  });

  it("--remove-box-key: only hbs's lines go from authorized_keys, before the box and the local key go", async () => {
    await installed(fullConfig());
    const home = join(sb.root, 'account-home');
    await mkdir(join(home, '.ssh'), { recursive: true });
    const others = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl admin@laptop\n# a comment\nno final newline here';
    await writeFile(join(home, '.ssh', 'authorized_keys'), mergeAuthorizedKeys(others, parseOpenSshPublicKey(m.world.publicKey)).text);
    m.account(home);
    m.world.keyLogin = false;
    await uninstall({ yes: true, removeBoxKey: true });
    expect(await readFile(join(home, '.ssh', 'authorized_keys'), 'utf8')).toBe(`${others}\n`);
    expect(m.ran[0]).toMatch(new RegExp(`^sshfs .* ${USER}@${HOST}: /tmp/hbs-home-`));
    expect(m.ran.indexOf(`fusermount3 -u ${sb.boxMount}`)).toBeGreaterThan(0);
    expect(await exists(sb.sshKey)).toBe(false);
  });

  it('--remove-box-key after the key left the box: done when the box shows its host key; a box that does not answer stops it (exit 1)', async () => {
    await installed(fullConfig());
    m.world.keyLogin = false;
    m.probes.keyLogin = () => Promise.resolve({ ok: false, stderr: 'Connection closed' });
    const err = await rejection(uninstall({ yes: true, removeBoxKey: true }));
    expect(err.exitCode).toBe(EXIT.failed);
    expect(err.message).toContain('cannot reach');
    expect(await exists(sb.config)).toBe(true);
    m.world.hostKeys = [HOST_KEY];
    const io = testIo(m);
    await uninstall({ yes: true, removeBoxKey: true }, io);
    expect(io.reporter.lines).toContain(`• Remove hbs's key from the box's authorized_keys — ${USER}@${HOST} does not accept ${sb.sshKey} (any more)`);
    expect(await exists(sb.config)).toBe(false);
  });

  it('--remove-box-key is refused when another config logs in to the same box with the same key (exit 2, nothing changed)', async () => {
    const other = join(sb.configDir, 'other.json');
    await installed(fullConfig({ boxMount: join(sb.root, 'ob'), filesystem: { mountPoint: join(sb.root, 'om'), mountOptions: [] }, box: { user: USER, host: HOST, port: 23, remotePath: 'other' } }), { path: other, up: false });
    await installed(fullConfig());
    const before = await snapshot();
    const err = await rejection(uninstall({ yes: true, removeBoxKey: true }));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toContain(other);
    expect(await snapshot()).toEqual(before);
  });

  it('--delete-image with --yes and no terminal: exit 2, nothing changed; typed right at the prompt, the image goes', async () => {
    await installed(fullConfig());
    const before = await snapshot();
    const err = await rejection(uninstall({ yes: true, deleteImage: true }));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(await snapshot()).toEqual(before);
    const wrong = await rejection(uninstall({ yes: true, deleteImage: true }, testIo(m, { prompter: scriptedPrompter(['other.img']) })));
    expect(wrong.exitCode).toBe(EXIT.aborted);
    expect(await snapshot()).toEqual(before);
    await uninstall({ yes: true, deleteImage: true }, testIo(m, { prompter: scriptedPrompter([IMAGE]) }));
    expect(await exists(join(sb.boxHome, IMAGE))).toBe(false);
    expect(await exists(sb.config)).toBe(false);
  });

  it('killed halfway (the box unmount failed): a second run finishes the job', async () => {
    await installed(fullConfig());
    m.failNext(['fusermount3'], { exitCode: 1, stderr: 'fusermount3: failed to unmount: Device or resource busy' });
    const err = await rejection(uninstall({ yes: true }));
    expect(err.exitCode).toBe(EXIT.failed);
    expect(await exists(sb.config)).toBe(true);
    await uninstall({ yes: true });
    expect(await readFile(sb.fstab, 'utf8')).toBe(ORIGINAL_FSTAB);
    expect(await exists(sb.config)).toBe(false);
  });

  it('every removal is idempotent: with the stack down and half of it gone already, the rest goes', async () => {
    await installed(fullConfig(), { up: false });
    await writeFile(sb.fstab, ORIGINAL_FSTAB);
    await writeFile(sb.knownHosts, OTHER_HOST_LINE);
    const io = testIo(m);
    await uninstall({ yes: true }, io);
    expect(m.ran).toEqual([]);
    expect(io.reporter.lines).toContain(`• fstab entries — ${sb.fstab} has no hbs block for this config`);
    expect(await exists(sb.config)).toBe(false);
  });

  it('--force on a busy filesystem: detached lazily, then it stops before removing anything (exit 1); a re-run once it is free finishes', async () => {
    await installed(fullConfig());
    m.world.holders.set(sb.mountPoint, [{ pid: 4242, command: 'rsync', via: 'cwd' }]);
    m.failNext(['umount'], { exitCode: 32, stderr: `umount: ${sb.mountPoint}: target is busy.` });
    const err = await rejection(uninstall({ yes: true, force: true }));
    expect(err.exitCode).toBe(EXIT.failed);
    expect(err.message).toContain('detached lazily and is still in use');
    expect(m.world.mounts.has(sb.boxMount)).toBe(true);
    expect(await exists(sb.config)).toBe(true);
    expect(await readFile(sb.fstab, 'utf8')).not.toBe(ORIGINAL_FSTAB);
    // Its users are gone: the next run takes the rest down and removes everything.
    m.world.holders.clear();
    await uninstall({ yes: true });
    expect(m.world.mounts.size).toBe(0);
    expect(await readFile(sb.fstab, 'utf8')).toBe(ORIGINAL_FSTAB);
    expect(await exists(sb.config)).toBe(false);
  });

  it('no config: says what it cannot know, exit 2', async () => {
    const err = await rejection(uninstall({ yes: true }));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`no config at ${sb.config}: hbs cannot know what it set up for it (box, image, key, mount points); nothing was changed`);
    expect(err.hint).toContain('hbs-mount@');
  });

  it('hbs own known_hosts, empty once the box line goes, is removed', async () => {
    await installed(fullConfig());
    await writeFile(sb.knownHosts, PINNED);
    await uninstall({ yes: true });
    expect(await exists(sb.knownHosts)).toBe(false);
  });

  it('killed after any step, a second run finishes the job: the same end state as an uninstall in one go', async () => {
    const encrypted = (): Config => {
      const e = encryptedConfig(sb, { unattended: true });
      return fullConfig({ encryption: { ...e.encryption!, crypttab: sb.crypttab } });
    };
    const setUp = async (): Promise<void> => {
      await mkdir(sb.root, { recursive: true });
      await writeFile(sb.crypttab, mergeBlock('swap /dev/sda2 /dev/urandom swap', sb.config, ['hbs-filesystem x y luks']));
      await installed(encrypted());
      await writeFile(encrypted().encryption!.unattendedKeyFile!, 'key', { mode: 0o400 });
    };
    await setUp();
    await uninstall({ yes: true });
    const clean = await snapshot();
    const steps = 14;
    for (let k = 1; k <= steps; k++) {
      await sb.cleanup();
      await mkdir(sb.root);
      m = new FakeMachine().box(sb.boxMount, sb.boxHome);
      await setUp();
      /** Throws ("killed") when the k-th step of the real run has made its changes. */
      const io = testIo(m);
      let armed = false;
      let done = 0;
      const r = io.reporter;
      const info = r.info.bind(r);
      r.info = (t: string) => ((armed ||= t === ''), info(t));
      const stepDone = r.stepDone.bind(r);
      r.stepDone = (title: string, detail?: string) => {
        stepDone(title, detail);
        if (armed && ++done === k) throw new Error('killed');
      };
      const first = await uninstall({ yes: true }, io).then(() => 'finished', () => 'killed');
      // Killed once the config was gone, everything is done; the second run says it has no config to go by.
      if (first === 'killed' && (await exists(sb.config))) await uninstall({ yes: true });
      else if (first === 'killed') expect((await rejection(uninstall({ yes: true }))).exitCode).toBe(EXIT.usage);
      // The fstab backups carry the time: only their names may differ in number.
      const now = await snapshot();
      const strip = (o: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(o).filter(([p]) => !p.includes('.hbs-backup-')));
      expect(strip(now), `killed after step ${k}`).toEqual(strip(clean));
      expect(await readFile(sb.fstab, 'utf8')).toBe(ORIGINAL_FSTAB);
    }
  });
});
