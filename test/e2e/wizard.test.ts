/**
 * End to end, in a real terminal: the built `bin/hbs init` in a tmux pane, answered key by key,
 * against the stand-in box (a real sshd on 127.0.0.1), real sshfs, loop devices and e2fsprogs.
 * Asserts on what the screen shows (text, not colours) and on the state left behind. Needs root
 * and tmux; says why it skips elsewhere.
 */
import { quoteArg } from '../../src/core/runner.js';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { e2eUnavailable, startBox, type StandInBox } from '../support/stand-in-box.js';
import { HBS, hbs, teardown, watchArgv } from './helpers.js';
import { Terminal, tmuxMissing } from './terminal.js';

const skip = (await e2eUnavailable()) ?? (await tmuxMissing());
if (skip && process.env.CI) throw new Error(`wizard end-to-end tests cannot run in CI: ${skip}`);
if (skip) console.warn(`skipping end-to-end wizard tests: ${skip}`);

const sha = async (p: string): Promise<string> => createHash('sha256').update(await readFile(p)).digest('hex');
const missing = async (p: string): Promise<boolean> => stat(p).then(() => false, () => true);
const mounted = async (p: string): Promise<boolean> => (await execa('findmnt', ['--mountpoint', p], { reject: false })).exitCode === 0;

/**
 * Every file under `dir` with its content hash, so "untouched" can be checked byte for byte; a
 * large file (a mounted image, which its own kernel mount may write to) by its size only.
 */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const full = join(d, e.name);
      if (e.isDirectory()) await walk(full, r);
      else {
        const { size } = await stat(full);
        out[r] = size > 1024 * 1024 ? `${size} bytes` : await sha(full);
      }
    }
  };
  await walk(dir, '');
  return out;
}

/** The plan part of a dry-run transcript: step lines and change lines, with the made-up mkfs UUID masked. */
function planLines(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => /^(✔|•|✖) |^ {2}! /.test(l))
    .filter((l) => !l.startsWith('✔ ') || l.includes(' — '))
    // Each run makes up its own UUID, and its lock names its own pid and time.
    .map((l) => l.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<uuid>'))
    .map((l) => l.replace(/"pid": \d+/, '"pid": <pid>').replace(/"time": "[^"]+"/, '"time": <time>'));
}

describe.skipIf(skip !== undefined)('hbs init, the wizard, in a real terminal', () => {
  let box: StandInBox;
  let t: string;
  let p: { config: string; fstab: string; key: string; boxMount: string; mountPoint: string };
  const terms: Terminal[] = [];
  const ttyDirs: string[] = [];
  const FSTAB_BEFORE = '# /etc/fstab of the test\nproc /proc proc defaults 0 0\n';

  beforeAll(async () => {
    box = await startBox();
    t = await mkdtemp(join(tmpdir(), 'hbs wizard-'));
    p = {
      config: join(t, 'etc', 'config.json'),
      fstab: join(t, 'fstab'),
      key: join(t, 'keys', 'hbs_ed25519'),
      boxMount: join(t, 'box'),
      mountPoint: join(t, 'mnt point'),
    };
    await writeFile(p.fstab, FSTAB_BEFORE);
  });

  afterAll(async () => {
    // Terminals close only after the mounts are down: the ssh process under sshfs shares the
    // session of the terminal that ran `hbs init`, and closing that terminal hangs it up, which
    // breaks the loop-mounted image (EIO) for the tests after it.
    if (p) await teardown([p.mountPoint, join(t, 'mnt2')], [p.boxMount, join(t, 'box2')]);
    for (const term of terms) await term.close();
    for (const d of ttyDirs) await rm(d, { recursive: true, force: true });
    await box?.stop();
    if (t) await rm(t, { recursive: true, force: true });
  });

  /** `hbs init` in a fresh terminal, with the box's address and these flags; the rest is asked. */
  const start = async (flags: string[]): Promise<Terminal> => {
    const dir = await mkdtemp(join(tmpdir(), 'hbs-tty-'));
    ttyDirs.push(dir);
    const term = await Terminal.start(dir, [HBS, 'init', '--host', box.host, '--port', String(box.port), ...flags]);
    terms.push(term);
    return term;
  };

  it('Ctrl+C at the password prompt exits 130 with one line and changes nothing', async () => {
    const home = await snapshot(box.home);
    const tty = await start(['--user', box.user, '--remote-path', '', '--image', 'filesystem.img', '--size', '10G', '--config', p.config, '--fstab', p.fstab, '--box-mount', p.boxMount, '--mount-point', p.mountPoint, '--ssh-key', p.key]);

    await tty.prompt('Is it the same fingerprint?');
    await tty.type('y');
    await tty.press('Enter');
    // Every other answer was a flag: none of them is asked.
    const screen = await tty.prompt('Password of');
    expect(screen).not.toMatch(/Storage Box account|Image size|Where to mount/);
    await tty.press('C-c');

    expect(await tty.exitCode()).toBe(130);
    const after = (await tty.screen()).split('\n');
    const tail = after.slice(after.findIndex((l) => l.includes('Password of')) + 1).filter((l) => l.trim() !== '' && !l.startsWith('[exited'));
    expect(tail).toEqual(['hbs: aborted at a prompt; nothing was changed']);

    expect(await missing(join(t, 'etc'))).toBe(true);
    expect(await missing(join(t, 'keys'))).toBe(true);
    expect(await missing(p.boxMount)).toBe(true);
    expect(await missing(p.mountPoint)).toBe(true);
    expect(await readFile(p.fstab, 'utf8')).toBe(FSTAB_BEFORE);
    expect(await snapshot(box.home)).toEqual(home);
  });

  it('sets everything up from typed answers: a wrong size asked again, the fingerprint confirmed, the password masked', async () => {
    const flags = ['--config', p.config, '--fstab', p.fstab, '--box-mount', p.boxMount, '--mount-point', p.mountPoint, '--ssh-key', p.key];
    // The plan a dry-run prints for the same answers, to compare with the summary.
    const dry = await hbs(['init', '--yes', '--dry-run', '--host', box.host, '--port', String(box.port), '--user', box.user, '--size', '10G', '--host-key-fingerprint', box.hostKeyFingerprint, ...flags]);
    expect(dry.exitCode, dry.stderr).toBe(0);

    const { result: screen, leaks } = await watchArgv(box.password, async () => {
      const tty = await start(flags);
      await tty.prompt('Storage Box account');
      await tty.type(box.user);
      await tty.press('Enter');

      const shown = await tty.prompt('Is it the same fingerprint?');
      expect(shown).toContain(box.hostKeyFingerprint);
      expect(shown).toContain('Compare this with the fingerprint your provider shows');
      await tty.type('y');
      await tty.press('Enter');

      // --host and --port were flags: not asked.
      await tty.prompt('Directory on the box');
      await tty.press('Enter');
      expect(await tty.prompt('Image file name on the box')).toMatch(/^\? Image file name on the box \(filesystem\.img\)/m);
      await tty.press('Enter');

      await tty.prompt('Image size');
      await tty.type('1.5.0G');
      await tty.press('Enter');
      await tty.waitFor('size "1.5.0G" is not a number with a unit');
      await tty.press('C-u');
      await tty.type('10G');
      await tty.press('Enter');

      await tty.prompt('Password of');
      await tty.typeSecret(box.password);
      await tty.waitFor(/^\? Password of .*\*{10,}/m);
      await tty.press('Enter');

      const summary = await tty.prompt('Make these changes?', 60_000);
      await tty.type('y');
      await tty.press('Enter');
      expect(await tty.exitCode()).toBe(0);
      return { summary, final: await tty.screen() };
    });

    expect(leaks).toEqual([]);
    expect(screen.final).not.toContain(box.password);
    // Asked once, re-asked after the bad answer, answered: one ✔ line for the size.
    expect(screen.final.match(/^✔ Image size .* 10G$/gm)).toHaveLength(1);
    expect(screen.final.match(/^✔ Is it the same fingerprint\? Yes$/gm)).toHaveLength(1);

    // The summary: every answer, then the plan a dry-run prints, before the one question.
    const summary = screen.summary.slice(screen.summary.indexOf('Summary: nothing has been changed yet.'));
    for (const text of [box.user, `${box.host}, port ${box.port}`, box.hostKeyFingerprint, 'the account home', 'filesystem.img, 10 GiB', p.boxMount, p.mountPoint, p.key, p.fstab, p.config]) {
      expect(summary).toContain(text);
    }
    expect(planLines(summary)).toEqual(planLines(dry.stdout));
    // …and what the summary showed is what was done: the filesystem has the UUID shown there.
    const config = JSON.parse(await readFile(p.config, 'utf8')) as { box: { user: string }; image: { uuid: string; sizeBytes: number } };
    expect(summary).toContain(`-U ${config.image.uuid} `);

    expect(screen.final).toContain(`  hbs --config ${quoteArg(p.config)} backup --install-timer`);
    expect(config.box.user).toBe(box.user);
    expect((await stat(join(box.home, 'filesystem.img'))).size).toBe(10 * 1024 ** 3);
    expect((await execa('findmnt', ['--noheadings', '--output', 'FSTYPE', '--mountpoint', p.mountPoint])).stdout.trim()).toBe('ext4');
    expect((await execa('findmnt', ['--noheadings', '--output', 'FSTYPE', '--mountpoint', p.boxMount])).stdout.trim()).toBe('fuse.sshfs');
    const fstab = await readFile(p.fstab, 'utf8');
    expect(fstab.startsWith(FSTAB_BEFORE)).toBe(true);
    expect(fstab).toContain('# BEGIN hbs managed block');
  }, 180_000);

  it('run again, every default (from the config) taken with Enter: nothing to change, nothing asked to confirm', async () => {
    const before = { fstab: await sha(p.fstab), config: await sha(p.config) };
    const tty = await start(['--config', p.config, '--fstab', p.fstab]);
    for (const q of ['Storage Box account', 'SSH key for the box', 'Directory on the box', 'Image file name on the box', 'Where to mount the box', 'Where to mount the backup filesystem']) {
      await tty.prompt(q);
      await tty.press('Enter');
    }
    expect(await tty.exitCode()).toBe(0);
    const screen = await tty.screen();
    expect(screen).toContain('Everything is set up already: nothing to change.');
    expect(screen).toContain(`✔ Where to mount the backup filesystem ${p.mountPoint}`);
    // The key pinned by the first run is trusted; the recorded image's size is not asked.
    expect(screen).not.toMatch(/Is it the same fingerprint|Image size|Make these changes/);
    expect({ fstab: await sha(p.fstab), config: await sha(p.config) }).toEqual(before);
  }, 180_000);

  it('"no" at the summary leaves the box, the fstab and the config untouched', async () => {
    const other = { config: join(t, 'etc2', 'config.json'), boxMount: join(t, 'box2'), mountPoint: join(t, 'mnt2') };
    const before = { home: await snapshot(box.home), fstab: await sha(p.fstab), key: await sha(p.key), config: await sha(p.config) };
    const tty = await start(['--user', box.user, '--config', other.config, '--fstab', p.fstab, '--box-mount', other.boxMount, '--mount-point', other.mountPoint, '--ssh-key', p.key]);

    await tty.prompt('Is it the same fingerprint?');
    await tty.type('y');
    await tty.press('Enter');
    await tty.prompt('Directory on the box');
    await tty.press('Enter');
    await tty.prompt('Image file name on the box');
    await tty.type('second.img');
    await tty.press('Enter');

    // Key login works now (the first run put the key there): the box's free space is shown and checked.
    const sizeQ = await tty.prompt('Image size');
    expect(sizeQ).toMatch(/^\? Image size .*the box has [\d.]+ [KMGT]iB free of [\d.]+ [KMGT]iB/m);
    await tty.type('900T');
    await tty.press('Enter');
    await tty.waitFor(/900 TiB is more than the [\d.]+ [KMGT]iB free on the box/);
    await tty.press('C-u');
    await tty.type('5G');
    await tty.press('Enter');

    // No password question: key login already works.
    const summary = await tty.prompt('Make these changes?', 60_000);
    expect(summary).not.toContain('Password of');
    expect(summary).toContain('works already: no password needed (the plan lists the key upload only because the host key is not pinned yet');
    expect(summary).toContain('second.img, 5 GiB');
    await tty.type('n');
    await tty.press('Enter');

    expect(await tty.exitCode()).toBe(130);
    expect(await tty.screen()).toContain('hbs: answered no at the summary; nothing was changed');
    expect(await snapshot(box.home)).toEqual(before.home);
    expect(await sha(p.fstab)).toBe(before.fstab);
    expect(await sha(p.key)).toBe(before.key);
    expect(await sha(p.config)).toBe(before.config);
    for (const path of [join(t, 'etc2'), other.boxMount, other.mountPoint]) expect(await missing(path), path).toBe(true);
    expect(await mounted(other.boxMount)).toBe(false);
    // The setup of the first run is still up.
    expect(await mounted(p.mountPoint)).toBe(true);
  }, 180_000);
});
