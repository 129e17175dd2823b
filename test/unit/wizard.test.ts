/**
 * The wizard's logic with a scripted Prompter and a recording runner: which questions, in which
 * order, with which defaults; bad answers explained and asked again; the host key and the free
 * space probed without changing anything; the summary and its single confirmation.
 */
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AbortError, EXIT, HbsError, UsageError } from '../../src/core/errors.js';
import { RecordingRunner, type Expectation } from '../../src/core/recording-runner.js';
import type { GivenAnswers } from '../../src/init/answers.js';
import { DEFAULTS } from '../../src/init/options.js';
import type { Prompter, Validate } from '../../src/init/prompter.js';
import { askPassword, confirmChanges, exactSize, interview, mountTargetProblem, offerInstall, summaryLines, type Interview } from '../../src/init/wizard.js';
import { serializeConfig } from '../../src/lib/config.js';
import { MemoryReporter } from '../../src/ui/reporter.js';
import { FIXTURE_KEY, makeDeps, makeOpts, makeSandbox, recordedConfig, rejection, type Sandbox } from './steps/helpers.js';

const GiB = 1024 ** 3;

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

function keyscanAt(host: string, port: number, stdout: string): Expectation {
  return { argv: ['ssh-keyscan', '-T', '10', '-p', String(port), '-t', 'ed25519,ecdsa,rsa', host], write: false, stdout };
}
const offers = (host: string, port: number): string => `[${host}]:${port} ${FIXTURE_KEY.type} ${FIXTURE_KEY.blob}\n`;

/** The sftp `df` probe, through the throwaway known_hosts the wizard makes first. */
function dfProbe(sb: Sandbox, c: { user: string; host: string; port: number; key: string }, result: { exitCode?: number; stdout?: string }): Expectation {
  return {
    argv: [
      'sftp', '-q', '-b', '-', '-P', String(c.port), '-o', 'ConnectTimeout=20',
      '-o', `IdentityFile=${c.key}`,
      '-o', 'IdentitiesOnly=yes',
      '-o', `UserKnownHostsFile=${join(sb.tempDir('hbs-probe-'), 'known_hosts')}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', 'ServerAliveInterval=15',
      '-o', 'ServerAliveCountMax=3',
      '-o', 'BatchMode=yes',
      `${c.user}@${c.host}`,
    ],
    write: false,
    stdin: '-df\n',
    exitCode: result.exitCode ?? 0,
    stdout: result.stdout ?? '',
  };
}

/** sftp's df output for a box with 1000 GiB, 200 GiB of it free (figures in KiB). */
const DF_OUT = `sftp> -df\n        Size         Used        Avail       (root)    %Capacity\n  ${1000 * 1024 * 1024}  ${800 * 1024 * 1024}  ${200 * 1024 * 1024}  ${200 * 1024 * 1024}          80%\n`;

let sb: Sandbox;
let reporter: MemoryReporter;
beforeEach(async () => {
  sb = await makeSandbox();
  reporter = new MemoryReporter();
});
afterEach(async () => {
  await sb.cleanup();
});

const io = (prompter: Prompter, runner: RecordingRunner) => ({ prompter, reporter, runner, mkTempDir: makeDeps(sb).mkTempDir });
/** Local paths inside the sandbox, given as flags. */
const localFlags = (): GivenAnswers => ({ config: sb.config, fstab: sb.fstab });

describe('interview', () => {
  it('asks everything, in order, with defaults; the host follows the account; the fingerprint needs a yes', async () => {
    const p = new ScriptedPrompter(['u5', '', '', true, sb.sshKey, '', '', '10G', sb.boxMount, sb.mountPoint]);
    const runner = new RecordingRunner([keyscanAt('u5.your-storagebox.de', 23, offers('u5.your-storagebox.de', 23))]);
    const iv = await interview(localFlags(), io(p, runner), { force: false });

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
    // No key yet: nothing but the host key scan went to the box.
    runner.assertDone();
  });

  it('does not ask what the flags gave', async () => {
    const given: GivenAnswers = { ...localFlags(), user: 'u7', host: 'box.example', port: '22', remotePath: 'b', image: 'x.img', boxMount: sb.boxMount, mountPoint: sb.mountPoint, sshKey: sb.sshKey, hostKeyFingerprint: FIXTURE_KEY.fingerprint };
    const p = new ScriptedPrompter(['1T']);
    const runner = new RecordingRunner([keyscanAt('box.example', 22, offers('box.example', 22).replace('[box.example]:22', 'box.example'))]);
    const iv = await interview(given, io(p, runner), { force: false });
    expect(p.questions).toEqual(['Image size']);
    expect(iv.hostKeyBy).toBe('flag');
    expect(iv.answers).toMatchObject({ user: 'u7', host: 'box.example', port: 22, remotePath: 'b', image: 'x.img', size: 1024 * GiB });
  });

  it('explains a bad answer under the question and asks it again', async () => {
    const p = new ScriptedPrompter(['root', 'u5', '', '0', '', true, '', '', '', '1.5.0G', '32M', '10G', sb.boxMount, sb.mountPoint]);
    const runner = new RecordingRunner([keyscanAt('u5.your-storagebox.de', 23, offers('u5.your-storagebox.de', 23))]);
    const iv = await interview({ ...localFlags(), sshKey: sb.sshKey }, io(p, runner), { force: false });
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

  it('refuses mount points that clash with each other or hold files, right at the question', async () => {
    await mkdir(join(sb.root, 'full'), { recursive: true });
    await writeFile(join(sb.root, 'full', 'data'), 'x');
    await writeFile(join(sb.root, 'a-file'), 'x');
    const p = new ScriptedPrompter(['/etc', join(sb.root, 'a-file'), sb.boxMount, join(sb.boxMount, 'inner'), join(sb.root, 'full'), sb.mountPoint]);
    const given: GivenAnswers = { ...localFlags(), user: 'u5', host: 'h.example', port: '23', remotePath: '', image: 'i.img', size: '1G', sshKey: sb.sshKey, hostKeyFingerprint: FIXTURE_KEY.fingerprint };
    const runner = new RecordingRunner([
      keyscanAt('h.example', 23, offers('h.example', 23)),
      // The full directory: is something mounted there? No, so it is refused.
      { argv: ['findmnt', '--json', '--mountpoint', join(sb.root, 'full'), '--output', 'TARGET,SOURCE,FSTYPE,OPTIONS'], write: false, exitCode: 1 },
    ]);
    const iv = await interview(given, io(p, runner), { force: false });
    expect(p.rejected.map((r) => r.why)).toEqual([
      '"/etc" is a system directory; pick a directory of its own',
      `${join(sb.root, 'a-file')} is a file, not a directory`,
      `mount point "${join(sb.boxMount, 'inner')}" must not be the box mount or inside it ("${sb.boxMount}")`,
      `${join(sb.root, 'full')} is a directory with files in it; hbs will not mount over them: choose an empty or new directory`,
    ]);
    expect(iv.answers).toMatchObject({ boxMount: sb.boxMount, mountPoint: sb.mountPoint });
    runner.assertDone();
  });

  it('asks host and port again when no SSH server answers there, with the last answers as defaults', async () => {
    const p = new ScriptedPrompter(['u5', 'wrong.example', '2222', 'right.example', '23', true]);
    const given: GivenAnswers = { ...localFlags(), remotePath: '', image: 'i.img', size: '1G', boxMount: sb.boxMount, mountPoint: sb.mountPoint, sshKey: sb.sshKey };
    const runner = new RecordingRunner([keyscanAt('wrong.example', 2222, ''), keyscanAt('right.example', 23, offers('right.example', 23))]);
    const iv = await interview(given, io(p, runner), { force: false });
    expect(p.questions).toEqual(['Storage Box account', 'Storage Box host', 'SSH port', 'Storage Box host', 'SSH port', 'Is it the same fingerprint?']);
    expect(p.asked[3]!.default).toBe('wrong.example');
    expect(p.asked[4]!.default).toBe('2222');
    expect(reporter.lines.join('\n')).toContain('cannot reach an SSH server at wrong.example port 2222');
    expect(iv.answers).toMatchObject({ host: 'right.example', port: 23 });
  });

  it('stops when the box cannot be reached at a host and port given as flags', async () => {
    const runner = new RecordingRunner([keyscanAt('h.example', 23, '')]);
    const err = await rejection(interview({ ...localFlags(), user: 'u5', host: 'h.example', port: '23' }, io(new ScriptedPrompter([]), runner), { force: false }));
    expect(err).toBeInstanceOf(HbsError);
    expect(err.message).toContain('cannot reach an SSH server at h.example port 23');
  });

  it('"no" at the fingerprint stops with exit 130 before anything else is asked', async () => {
    const p = new ScriptedPrompter([false]);
    const runner = new RecordingRunner([keyscanAt('h.example', 23, offers('h.example', 23))]);
    const err = await rejection(interview({ ...localFlags(), user: 'u5', host: 'h.example', port: '23' }, io(p, runner), { force: false }));
    expect(err).toBeInstanceOf(AbortError);
    expect((err as AbortError).exitCode).toBe(EXIT.aborted);
    expect(p.questions).toEqual(['Is it the same fingerprint?']);
    expect(p.asked[0]!.default).toBe(false);
  });

  it('stops on a --host-key-fingerprint the box does not offer', async () => {
    const runner = new RecordingRunner([keyscanAt('h.example', 23, offers('h.example', 23))]);
    const other = 'SHA256:' + 'A'.repeat(43);
    const err = await rejection(interview({ ...localFlags(), user: 'u5', host: 'h.example', port: '23', hostKeyFingerprint: other }, io(new ScriptedPrompter([]), runner), { force: false }));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toContain(FIXTURE_KEY.fingerprint);
  });

  describe('with a key that already logs in', () => {
    const c = (sshKey: string) => ({ user: 'u5', host: 'h.example', port: 23, key: sshKey });
    const given = (): GivenAnswers => ({ ...localFlags(), user: 'u5', host: 'h.example', port: '23', remotePath: '', image: 'i.img', boxMount: sb.boxMount, mountPoint: sb.mountPoint, sshKey: sb.sshKey });
    beforeEach(async () => {
      await mkdir(sb.sshDir, { recursive: true });
      await writeFile(sb.sshKey, 'PRIVATE', { mode: 0o600 });
    });

    it('shows the free space in the size question and refuses a size larger than it', async () => {
      const p = new ScriptedPrompter([true, '300G', '150G']);
      const runner = new RecordingRunner([keyscanAt('h.example', 23, offers('h.example', 23)), dfProbe(sb, c(sb.sshKey), { stdout: DF_OUT })]);
      const iv = await interview(given(), io(p, runner), { force: false });
      expect(p.asked[1]!.message).toBe('Image size (e.g. 100G, 500GB, 1TiB; the box has 200 GiB free of 1000 GiB)');
      expect(p.rejected.map((r) => r.why)).toEqual(['300 GiB is more than the 200 GiB free on the box: choose a smaller size (or re-run with --force if the box will grow)']);
      expect(iv).toMatchObject({ hostKeyPinned: false, keyExists: true, keyLogin: true, space: { totalBytes: 1000 * GiB, freeBytes: 200 * GiB } });
      expect(iv.answers.size).toBe(150 * GiB);
      runner.assertDone();
    });

    it('takes a size larger than the free space with --force', async () => {
      const p = new ScriptedPrompter([true, '300G']);
      const runner = new RecordingRunner([keyscanAt('h.example', 23, offers('h.example', 23)), dfProbe(sb, c(sb.sshKey), { stdout: DF_OUT })]);
      expect((await interview(given(), io(p, runner), { force: true })).answers.size).toBe(300 * GiB);
    });

    it('still works when the server has no df: key login yes, space unknown', async () => {
      const p = new ScriptedPrompter([true, '300G']);
      const runner = new RecordingRunner([keyscanAt('h.example', 23, offers('h.example', 23)), dfProbe(sb, c(sb.sshKey), { stdout: 'sftp> -df\n' })]);
      const iv = await interview(given(), io(p, runner), { force: false });
      expect(iv).toMatchObject({ keyLogin: true, space: undefined });
      expect(p.asked[1]!.message).toBe('Image size (e.g. 100G, 500GB, 1TiB)');
    });

    it('a key the box refuses means the password is needed; the throwaway known_hosts is gone', async () => {
      const p = new ScriptedPrompter([true, '300G']);
      const runner = new RecordingRunner([keyscanAt('h.example', 23, offers('h.example', 23)), dfProbe(sb, c(sb.sshKey), { exitCode: 255 })]);
      const iv = await interview(given(), io(p, runner), { force: false });
      expect(iv).toMatchObject({ keyExists: true, keyLogin: false, space: undefined });
      expect(sb.tempDirs).toEqual([sb.tempDir('hbs-probe-')]);
      expect(await stat(sb.tempDir('hbs-probe-')).then(() => 'there', () => 'gone')).toBe('gone');
    });
  });

  it('takes its defaults from a config already there, asks no size for the recorded image, and trusts the pinned key', async () => {
    const config = recordedConfig(sb);
    await mkdir(sb.configDir, { recursive: true });
    await writeFile(sb.config, serializeConfig(config));
    await writeFile(sb.knownHosts, `[${config.box.host}]:${config.box.port} ${FIXTURE_KEY.type} ${FIXTURE_KEY.blob}\n`);
    const p = new ScriptedPrompter(['', '', '', '', '', '', '', '']);
    const runner = new RecordingRunner([keyscanAt(config.box.host, config.box.port, offers(config.box.host, config.box.port))]);
    const iv = await interview(localFlags(), io(p, runner), { force: false });
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
    const otherBlob = 'AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
    const runner = new RecordingRunner([keyscanAt('h.example', 23, `[h.example]:23 ssh-ed25519 ${otherBlob}\n`)]);
    const err = await rejection(interview({ ...localFlags(), user: 'u5', host: 'h.example', port: '23' }, io(new ScriptedPrompter([]), runner), { force: false }));
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
    const o = makeOpts(sb, { hostKeyFingerprint: FIXTURE_KEY.fingerprint });
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

  it('"no" at the summary is an abort (exit 130) saying nothing was changed', async () => {
    const err = await rejection(confirmChanges(new ScriptedPrompter([false])));
    expect(err).toBeInstanceOf(AbortError);
    expect(err.message).toBe('answered no at the summary; nothing was changed');
    await expect(confirmChanges(new ScriptedPrompter([true]))).resolves.toBeUndefined();
  });

  it('mountTargetProblem: missing and empty directories are fine', async () => {
    const runner = new RecordingRunner();
    expect(await mountTargetProblem(runner, join(sb.root, 'nope', 'deeper'))).toBe(true);
    await mkdir(join(sb.root, 'empty'));
    expect(await mountTargetProblem(runner, join(sb.root, 'empty'))).toBe(true);
    runner.assertDone();
  });

  it('exactSize writes sizes back in the --size grammar', () => {
    expect([exactSize(10 * GiB), exactSize(1024 ** 4), exactSize(1536 * 1024 ** 2), exactSize(1000)]).toEqual(['10G', '1T', '1536M', '1000']);
  });
});
