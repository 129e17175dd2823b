/**
 * The wizard's logic with a scripted Prompter and the fake machine's probes: which questions, in
 * which order, with which defaults; bad answers explained and asked again; the host key and the
 * free space probed without changing anything; the summary and its single confirmation. And the
 * box's free space as sftp `df` reports it.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { GivenAnswers } from '../../src/commands/init/answers.js';
import { DEFAULTS } from '../../src/commands/init/options.js';
import { askPassword, confirmChanges, exactSize, interview, mountTargetProblem, offerInstall, summaryLines, type Interview } from '../../src/commands/init/wizard.js';
import { AbortError, EXIT, HbsError, UsageError } from '../../src/core/errors.js';
import type { Prompter, Validate } from '../../src/core/prompter.js';
import { MemoryReporter } from '../../src/core/reporter.js';
import { serializeConfig } from '../../src/lib/config.js';
import type { HostKey } from '../../src/lib/host-keys.js';
import { parseSftpDf, type BoxSpace } from '../../src/lib/remote-df.js';
import type { BoxConn } from '../../src/lib/ssh.js';
import type { FakeMachine } from '../support/fake-machine.js';
import { fakeBox, HOST_KEY, initOpts, OTHER_HOST_KEY } from '../support/init.js';
import { makeConfig, makeDeps, makeSandbox, rejection, type Sandbox } from '../support/sandbox.js';

const GiB = 1024 ** 3;
const FIXTURE_KEY = HOST_KEY;

type Asked = { kind: 'input' | 'password' | 'confirm'; message: string; default?: string | boolean };

/**
 * Answers from a script, in order. Each typed answer goes through the question's validate like a
 * terminal prompt: a rejected one is recorded with its message and the next answer is tried.
 */
class ScriptedPrompter implements Prompter {
  readonly asked: Asked[] = [];
  readonly rejected: { message: string; answer: string; why: string }[] = [];
  constructor(private readonly script: (string | boolean)[]) {}

  private async typed(kind: 'input' | 'password', q: { message: string; default?: string; validate?: Validate }): Promise<string> {
    this.asked.push({ kind, message: q.message, default: q.default });
    for (;;) {
      const answer = this.script.shift();
      if (typeof answer !== 'string') throw new Error(`no typed answer scripted for "${q.message}" (next: ${String(answer)})`);
      const ok = q.validate ? await q.validate(answer) : true;
      if (ok === true) return answer;
      this.rejected.push({ message: q.message, answer, why: ok });
    }
  }

  input(q: { message: string; default?: string; validate?: Validate }): Promise<string> {
    return this.typed('input', q);
  }

  password(q: { message: string; validate?: Validate }): Promise<string> {
    return this.typed('password', q);
  }

  confirm(q: { message: string; default?: boolean }): Promise<boolean> {
    this.asked.push({ kind: 'confirm', message: q.message, default: q.default });
    const answer = this.script.shift();
    if (typeof answer !== 'boolean') return Promise.reject(new Error(`no yes/no scripted for "${q.message}" (next: ${String(answer)})`));
    return Promise.resolve(answer);
  }

  /** The questions, cut at their first " (" so tests read like the screen. */
  get questions(): string[] {
    return this.asked.map((q) => q.message.split(' (')[0]!);
  }
}

/** sftp's df output for a box with 1000 GiB, 200 GiB of it free (figures in KiB). */
const DF_OUT = `sftp> -df\n        Size         Used        Avail       (root)    %Capacity\n  ${1000 * 1024 * 1024}  ${800 * 1024 * 1024}  ${200 * 1024 * 1024}  ${200 * 1024 * 1024}          80%\n`;

let sb: Sandbox;
let m: FakeMachine;
let reporter: MemoryReporter;
/** Where the host key scan went, and what it offers there (nothing anywhere else). */
let offered: Map<string, HostKey[]>;
let scanned: string[];
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
  reporter = new MemoryReporter();
  offered = new Map();
  scanned = [];
  m.probes.hostKeys = (host, port) => (scanned.push(`${host}:${port}`), Promise.resolve(offered.get(`${host}:${port}`) ?? []));
});
afterEach(async () => {
  await sb.cleanup();
});

const offers = (host: string, port: number, keys: HostKey[] = [FIXTURE_KEY]): void => void offered.set(`${host}:${port}`, keys);
const io = (prompter: Prompter) => ({ prompter, reporter, probe: m.probes, mkTempDir: makeDeps().mkTempDir });
/** Local paths inside the sandbox, given as flags. */
const localFlags = (): GivenAnswers => ({ config: sb.config, fstab: sb.fstab });
const sshDir = () => join(sb.root, 'ssh');

describe('interview', () => {
  it('asks everything, in order, with defaults; the host follows the account; the fingerprint needs a yes', async () => {
    const p = new ScriptedPrompter(['u5', '', '', true, sb.sshKey, '', '', '10G', sb.boxMount, sb.mountPoint]);
    offers('u5.your-storagebox.de', 23);
    let sftp = 0;
    m.probes.boxSpaceOverSftp = () => (sftp++, Promise.resolve({ login: true }));
    const iv = await interview(localFlags(), io(p), { force: false, adopt: false });

    expect(p.questions).toEqual([
      'Storage Box account',
      'Storage Box host',
      'SSH port',
      'Is it the same fingerprint?',
      'SSH key for the box',
      'Directory on the box',
      'Image file name on the box',
      'Image size',
      'Where to mount the box',
      'Where to mount the backup filesystem',
    ]);
    expect(p.asked.map((q) => q.default)).toEqual([
      undefined, 'u5.your-storagebox.de', DEFAULTS.port, false, DEFAULTS.sshKey, '', DEFAULTS.image, undefined, DEFAULTS.boxMount, DEFAULTS.mountPoint,
    ]);
    // The fingerprint is shown with what to compare it with, before the question.
    const shown = reporter.lines.join('\n');
    expect(shown).toContain(FIXTURE_KEY.fingerprint);
    expect(shown).toContain('Compare this with the fingerprint your provider shows');
    expect(iv).toMatchObject({ hostKey: { fingerprint: FIXTURE_KEY.fingerprint }, hostKeyBy: 'confirmed', keyExists: false, keyLogin: false, space: undefined });
    expect(iv.answers).toEqual({
      user: 'u5',
      host: 'u5.your-storagebox.de',
      port: 23,
      remotePath: '',
      image: DEFAULTS.image,
      size: 10 * GiB,
      boxMount: sb.boxMount,
      mountPoint: sb.mountPoint,
      sshKey: sb.sshKey,
      hostKeyFingerprint: FIXTURE_KEY.fingerprint,
      fstab: sb.fstab,
      config: sb.config,
    });
    // No key yet: nothing but the host key scan went to the box; nothing was changed.
    expect(scanned).toEqual(['u5.your-storagebox.de:23']);
    expect(sftp).toBe(0);
    expect(m.ran).toEqual([]);
  });

  it('does not ask what the flags gave', async () => {
    const given: GivenAnswers = { ...localFlags(), user: 'u7', host: 'box.example', port: '22', remotePath: 'b', image: 'x.img', boxMount: sb.boxMount, mountPoint: sb.mountPoint, sshKey: sb.sshKey, hostKeyFingerprint: FIXTURE_KEY.fingerprint };
    const p = new ScriptedPrompter(['1T']);
    offers('box.example', 22);
    const iv = await interview(given, io(p), { force: false, adopt: false });
    expect(p.questions).toEqual(['Image size']);
    expect(iv.hostKeyBy).toBe('flag');
    expect(iv.answers).toMatchObject({ user: 'u7', host: 'box.example', port: 22, remotePath: 'b', image: 'x.img', size: 1024 * GiB });
  });

  it('--adopt: no size is asked (the image on the box has its own), and none is made up', async () => {
    const given: GivenAnswers = { ...localFlags(), user: 'u7', host: 'box.example', port: '23', remotePath: 'b', image: 'x.img', boxMount: sb.boxMount, mountPoint: sb.mountPoint, sshKey: sb.sshKey, hostKeyFingerprint: FIXTURE_KEY.fingerprint };
    offers('box.example', 23);
    const p = new ScriptedPrompter([]);
    const iv = await interview(given, io(p), { force: false, adopt: true });
    expect(p.asked).toEqual([]);
    expect(iv.answers.size).toBeUndefined();
  });

  it('explains a bad answer under the question and asks it again', async () => {
    const p = new ScriptedPrompter(['root', 'u5', '', '0', '', true, '', '', '', '1.5.0G', '32M', '10G', sb.boxMount, sb.mountPoint]);
    offers('u5.your-storagebox.de', 23);
    const iv = await interview({ ...localFlags(), sshKey: sb.sshKey }, io(p), { force: false, adopt: false });
    expect(p.rejected.map((r) => [r.message.split(' (')[0], r.answer, r.why])).toEqual([
      ['Storage Box account', 'root', '"root" is not a Storage Box account (u123456 or u123456-sub1)'],
      ['SSH port', '0', '"0" is not a port (1-65535)'],
      ['Image size', '', 'size is empty (e.g. 100G, 500GB, 1TiB)'],
      ['Image size', '1.5.0G', 'size "1.5.0G" is not a number with a unit (e.g. 100G, 500GB, 1TiB)'],
      ['Image size', '32M', 'size "32M" is too small (at least 64M)'],
    ]);
    // Asked again means the same question once, not the wizard from the start.
    expect(p.questions.filter((q) => q === 'Storage Box account')).toHaveLength(1);
    expect(iv.answers.size).toBe(10 * GiB);
  });

  it('another config (/etc/hbs/NAME.json): proposes the mount points derived from NAME, and refuses the other config\'s at the question', async () => {
    await mkdir(sb.configDir, { recursive: true });
    await writeFile(sb.config, serializeConfig(makeConfig(sb)));
    const second = join(sb.configDir, 'offsite.json');
    const p = new ScriptedPrompter([sb.boxMount, join(sb.root, 'box2'), join(sb.mountPoint, 'sub'), '']);
    const given: GivenAnswers = { config: second, fstab: sb.fstab, user: 'u5', host: 'h.example', port: '23', remotePath: '', image: 'i.img', size: '1G', sshKey: sb.sshKey, hostKeyFingerprint: FIXTURE_KEY.fingerprint };
    offers('h.example', 23);
    const iv = await interview(given, io(p), { force: false, adopt: false });
    expect(p.asked.map((q) => q.default)).toEqual(['/srv/backup/offsite/hetzner-backup-space', '/srv/backup/offsite/backup']);
    expect(p.rejected.map((r) => r.why)).toEqual([
      `${sb.boxMount} is the box mount of ${sb.config} already`,
      `${join(sb.mountPoint, 'sub')} overlaps ${sb.mountPoint}, the mount point of ${sb.config} already`,
    ]);
    expect(iv.answers).toMatchObject({ boxMount: join(sb.root, 'box2'), mountPoint: '/srv/backup/offsite/backup' });
  });

  it('refuses mount points that clash with each other or hold files, right at the question', async () => {
    await mkdir(join(sb.root, 'full'), { recursive: true });
    await writeFile(join(sb.root, 'full', 'data'), 'x');
    await writeFile(join(sb.root, 'a-file'), 'x');
    await mkdir(join(sb.root, 'mounted'), { recursive: true });
    await writeFile(join(sb.root, 'mounted', 'data'), 'x');
    m.mountFs(join(sb.root, 'mounted'), '/dev/loop7');
    const p = new ScriptedPrompter(['/etc', join(sb.root, 'a-file'), join(sb.root, 'mounted'), join(sb.root, 'mounted', 'inner'), join(sb.root, 'full'), sb.mountPoint]);
    const given: GivenAnswers = { ...localFlags(), user: 'u5', host: 'h.example', port: '23', remotePath: '', image: 'i.img', size: '1G', sshKey: sb.sshKey, hostKeyFingerprint: FIXTURE_KEY.fingerprint };
    offers('h.example', 23);
    const iv = await interview(given, io(p), { force: false, adopt: false });
    expect(p.rejected.map((r) => r.why)).toEqual([
      '"/etc" is a system directory; pick a directory of its own',
      `${join(sb.root, 'a-file')} is a file, not a directory`,
      `mount point "${join(sb.root, 'mounted', 'inner')}" must not be the box mount or inside it ("${join(sb.root, 'mounted')}")`,
      // A directory with files in it that nothing is mounted on is refused; a mount point is for the plan to judge.
      `${join(sb.root, 'full')} is a directory with files in it; hbs will not mount over them: choose an empty or new directory`,
    ]);
    expect(iv.answers).toMatchObject({ boxMount: join(sb.root, 'mounted'), mountPoint: sb.mountPoint });
  });

  it('asks host and port again when no SSH server answers there, with the last answers as defaults', async () => {
    const p = new ScriptedPrompter(['u5', 'wrong.example', '2222', 'right.example', '23', true]);
    const given: GivenAnswers = { ...localFlags(), remotePath: '', image: 'i.img', size: '1G', boxMount: sb.boxMount, mountPoint: sb.mountPoint, sshKey: sb.sshKey };
    offers('right.example', 23);
    const iv = await interview(given, io(p), { force: false, adopt: false });
    expect(p.questions).toEqual(['Storage Box account', 'Storage Box host', 'SSH port', 'Storage Box host', 'SSH port', 'Is it the same fingerprint?']);
    expect(p.asked[3]!.default).toBe('wrong.example');
    expect(p.asked[4]!.default).toBe('2222');
    expect(reporter.lines.join('\n')).toContain('cannot reach an SSH server at wrong.example port 2222');
    expect(scanned).toEqual(['wrong.example:2222', 'right.example:23']);
    expect(iv.answers).toMatchObject({ host: 'right.example', port: 23 });
  });

  it('stops when the box cannot be reached at a host and port given as flags', async () => {
    const err = await rejection(interview({ ...localFlags(), user: 'u5', host: 'h.example', port: '23' }, io(new ScriptedPrompter([])), { force: false, adopt: false }));
    expect(err).toBeInstanceOf(HbsError);
    expect(err.message).toContain('cannot reach an SSH server at h.example port 23');
  });

  it('"no" at the fingerprint stops with exit 130 before anything else is asked', async () => {
    const p = new ScriptedPrompter([false]);
    offers('h.example', 23);
    const err = await rejection(interview({ ...localFlags(), user: 'u5', host: 'h.example', port: '23' }, io(p), { force: false, adopt: false }));
    expect(err).toBeInstanceOf(AbortError);
    expect((err as AbortError).exitCode).toBe(EXIT.aborted);
    expect(p.questions).toEqual(['Is it the same fingerprint?']);
    expect(p.asked[0]!.default).toBe(false);
  });

  it('stops on a --host-key-fingerprint the box does not offer, naming what it offers', async () => {
    offers('h.example', 23);
    const err = await rejection(
      interview({ ...localFlags(), user: 'u5', host: 'h.example', port: '23', hostKeyFingerprint: OTHER_HOST_KEY.fingerprint }, io(new ScriptedPrompter([])), { force: false, adopt: false }),
    );
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toContain(FIXTURE_KEY.fingerprint);
  });

  describe('with a key that already logs in', () => {
    const given = (): GivenAnswers => ({ ...localFlags(), user: 'u5', host: 'h.example', port: '23', remotePath: '', image: 'i.img', boxMount: sb.boxMount, mountPoint: sb.mountPoint, sshKey: sb.sshKey });
    /** What the sftp df probe was asked with, and the known_hosts it trusted while it ran. */
    let probed: { conn: BoxConn; knownHosts: string }[];
    const answer = (r: { login: boolean; space?: BoxSpace }) => {
      m.probes.boxSpaceOverSftp = async (conn) => (probed.push({ conn, knownHosts: await readFile(conn.knownHosts, 'utf8') }), r);
    };
    beforeEach(async () => {
      await mkdir(sshDir(), { recursive: true });
      await writeFile(sb.sshKey, 'PRIVATE', { mode: 0o600 });
      offers('h.example', 23);
      probed = [];
    });

    it('shows the free space in the size question and refuses a size larger than it', async () => {
      answer({ login: true, space: parseSftpDf(DF_OUT) });
      const p = new ScriptedPrompter([true, '300G', '150G']);
      const iv = await interview(given(), io(p), { force: false, adopt: false });
      expect(p.asked[1]!.message).toBe('Image size (e.g. 100G, 500GB, 1TiB; the box has 200 GiB free of 1000 GiB)');
      expect(p.rejected.map((r) => r.why)).toEqual(['300 GiB is more than the 200 GiB free on the box: choose a smaller size (or re-run with --force if the box will grow)']);
      expect(iv).toMatchObject({ hostKeyPinned: false, keyExists: true, keyLogin: true, space: { totalBytes: 1000 * GiB, freeBytes: 200 * GiB } });
      expect(iv.answers.size).toBe(150 * GiB);
      // The probe trusted exactly the confirmed host key, through a throwaway known_hosts (gone again).
      expect(probed).toHaveLength(1);
      expect(probed[0]!.conn).toMatchObject({ user: 'u5', host: 'h.example', port: 23, key: sb.sshKey, remotePath: '' });
      expect(probed[0]!.knownHosts).toBe(`[h.example]:23 ${FIXTURE_KEY.type} ${FIXTURE_KEY.blob}\n`);
      expect(probed[0]!.conn.knownHosts).not.toBe(sb.knownHosts);
      await expect(readFile(probed[0]!.conn.knownHosts)).rejects.toMatchObject({ code: 'ENOENT' });
    });

    it('takes a size larger than the free space with --force', async () => {
      answer({ login: true, space: parseSftpDf(DF_OUT) });
      const p = new ScriptedPrompter([true, '300G']);
      expect((await interview(given(), io(p), { force: true, adopt: false })).answers.size).toBe(300 * GiB);
    });

    it('still works when the server has no df: key login yes, space unknown', async () => {
      answer({ login: true, space: parseSftpDf('sftp> -df\n') });
      const p = new ScriptedPrompter([true, '300G']);
      const iv = await interview(given(), io(p), { force: false, adopt: false });
      expect(iv).toMatchObject({ keyLogin: true, space: undefined });
      expect(p.asked[1]!.message).toBe('Image size (e.g. 100G, 500GB, 1TiB)');
    });

    it('a key the box refuses means the password is needed', async () => {
      answer({ login: false });
      const p = new ScriptedPrompter([true, '300G']);
      const iv = await interview(given(), io(p), { force: false, adopt: false });
      expect(iv).toMatchObject({ keyExists: true, keyLogin: false, space: undefined });
      await expect(readFile(probed[0]!.conn.knownHosts)).rejects.toMatchObject({ code: 'ENOENT' });
    });
  });

  it('takes its defaults from a config already there, asks no size for the recorded image, and trusts the pinned key', async () => {
    const config = makeConfig(sb, { fstab: sb.fstab });
    await mkdir(sb.configDir, { recursive: true });
    await writeFile(sb.config, serializeConfig(config));
    await writeFile(sb.knownHosts, `[${config.box.host}]:${config.box.port} ${FIXTURE_KEY.type} ${FIXTURE_KEY.blob}\n`);
    offers(config.box.host, config.box.port);
    const p = new ScriptedPrompter(['', '', '', '', '', '', '', '']);
    const iv = await interview(localFlags(), io(p), { force: false, adopt: false });
    expect(p.questions).not.toContain('Image size');
    expect(p.questions).not.toContain('Is it the same fingerprint?');
    expect(p.asked.map((q) => q.default)).toEqual([
      config.box.user, config.box.host, String(config.box.port), config.ssh.key, config.box.remotePath, config.image.name, config.boxMount, config.filesystem.mountPoint,
    ]);
    expect(iv).toMatchObject({ hostKeyBy: 'pinned', hostKeyPinned: true });
    expect(iv.answers.size).toBe(config.image.sizeBytes);
  });

  it('stops when the box offers another key than the one pinned before', async () => {
    await mkdir(sb.configDir, { recursive: true });
    await writeFile(sb.knownHosts, `[h.example]:23 ${FIXTURE_KEY.type} ${FIXTURE_KEY.blob}\n`);
    offers('h.example', 23, [OTHER_HOST_KEY]);
    const err = await rejection(interview({ ...localFlags(), user: 'u5', host: 'h.example', port: '23' }, io(new ScriptedPrompter([])), { force: false, adopt: false }));
    expect(err.message).toMatch(/^the host key of h\.example:23 changed/);
  });
});

describe('the rest of the wizard', () => {
  it('asks the password masked-by-interface, and never takes an empty one', async () => {
    const p = new ScriptedPrompter(['', 's3cret']);
    expect(await askPassword(p, 'u5')).toBe('s3cret');
    expect(p.asked).toEqual([{ kind: 'password', message: 'Password of u5 (used once, to put the key on the box; not stored)', default: undefined }]);
    expect(p.rejected.map((r) => r.why)).toEqual(['the password is needed once, to put the key on the box']);
  });

  it('offers to install missing tools, showing the command', async () => {
    const p = new ScriptedPrompter([true]);
    expect(await offerInstall(p, reporter, '  - the program sshfs (Debian package: sshfs)', ['apt-get', 'install', '-y', 'sshfs'])).toBe(true);
    expect(p.asked[0]).toEqual({ kind: 'confirm', message: 'Install them now with: apt-get install -y sshfs?', default: true });
    expect(reporter.lines).toEqual(['! missing on this machine:\n  - the program sshfs (Debian package: sshfs)']);
  });

  it('the summary names every answer', () => {
    const o = initOpts(sb, { size: 100 * GiB });
    const facts: Omit<Interview, 'answers'> = { hostKey: { ...FIXTURE_KEY }, hostKeyBy: 'confirmed', hostKeyPinned: false, keyExists: false, keyLogin: false, space: { totalBytes: 1000 * GiB, freeBytes: 200 * GiB } };
    const text = summaryLines(o, facts).join('\n');
    for (const v of [o.user, `${o.host}, port 23`, FIXTURE_KEY.fingerprint, 'you confirmed it', o.remotePath, 'filesystem.img, 100 GiB (the box has 200 GiB free of 1000 GiB)', o.boxMount, o.mountPoint, `${o.sshKey} (made now)`, 'set up once with the password', sb.fstab, sb.config]) {
      expect(text).toContain(v);
    }
    expect(text).toContain('Summary: nothing has been changed yet.');
    const noFstab = summaryLines({ ...o, fstab: null, remotePath: '' }, { ...facts, keyLogin: true, keyExists: true, hostKeyPinned: true }).join('\n');
    expect(noFstab).toContain('not touched (--no-fstab)');
    expect(noFstab).toContain('the account home');
    expect(noFstab).toMatch(/works already: no password needed$/m);
    // Before the host key is pinned, the dry-run plan cannot see that key login works: said so.
    expect(summaryLines(o, { ...facts, keyLogin: true, keyExists: true }).join('\n')).toContain(
      'works already: no password needed (the plan lists the key upload only because the host key is not pinned yet; it will be skipped)',
    );
  });

  it('the summary of an adoption without --size names no made-up size', () => {
    const facts: Omit<Interview, 'answers'> = { hostKey: { ...FIXTURE_KEY }, hostKeyBy: 'pinned', hostKeyPinned: true, keyExists: true, keyLogin: true };
    const text = summaryLines(initOpts(sb, { adopt: true, sizeGiven: false, size: undefined }), facts).join('\n');
    expect(text).toContain('filesystem.img, the size of the image already there, adopted as it is');
    expect(text).not.toMatch(/\d+ (B|KiB|MiB|GiB)/);
  });

  it('"no" at the summary is an abort (exit 130) saying nothing was changed', async () => {
    const err = await rejection(confirmChanges(new ScriptedPrompter([false])));
    expect(err).toBeInstanceOf(AbortError);
    expect(err.message).toBe('answered no at the summary; nothing was changed');
    await expect(confirmChanges(new ScriptedPrompter([true]))).resolves.toBeUndefined();
  });

  it('mountTargetProblem: missing and empty directories are fine; so is a directory something is mounted on', async () => {
    expect(await mountTargetProblem(m.probes, join(sb.root, 'nope', 'deeper'))).toBe(true);
    await mkdir(join(sb.root, 'empty'));
    expect(await mountTargetProblem(m.probes, join(sb.root, 'empty'))).toBe(true);
    await mkdir(join(sb.root, 'busy'));
    await writeFile(join(sb.root, 'busy', 'f'), 'x');
    expect(await mountTargetProblem(m.probes, join(sb.root, 'busy'))).toMatch(/is a directory with files in it/);
    m.mountFs(join(sb.root, 'busy'), '/dev/loop3');
    expect(await mountTargetProblem(m.probes, join(sb.root, 'busy'))).toBe(true);
  });

  it('exactSize writes sizes back in the --size grammar', () => {
    expect([exactSize(10 * GiB), exactSize(1024 ** 4), exactSize(1536 * 1024 ** 2), exactSize(1000)]).toEqual(['10G', '1T', '1536M', '1000']);
  });
});

describe('parseSftpDf', () => {
  it('reads Size and Avail (KiB) under the header, with or without the echoed command', () => {
    const out = 'sftp> -df\n        Size         Used        Avail       (root)    %Capacity\n   264212084     22845468     83545444    241366616           8%';
    expect(parseSftpDf(out)).toEqual({ totalBytes: 264212084 * 1024, freeBytes: 83545444 * 1024 });
    expect(parseSftpDf(out.split('\n').slice(1).join('\n'))).toEqual({ totalBytes: 264212084 * 1024, freeBytes: 83545444 * 1024 });
  });

  it('is undefined when the server printed no figures', () => {
    expect(parseSftpDf('sftp> -df\n')).toBeUndefined();
    expect(parseSftpDf('')).toBeUndefined();
    expect(parseSftpDf('        Size         Used        Avail       (root)    %Capacity\n')).toBeUndefined();
    expect(parseSftpDf('        Size         Used        Avail       (root)    %Capacity\n  x y z\n')).toBeUndefined();
  });
});
