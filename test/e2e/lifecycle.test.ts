/**
 * End to end: `hbs umount`, `hbs status`, `hbs mount` (also repairing a dropped link), the lock on
 * the box, and adopting the image from a second "server" — against the real stand-in box.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chown, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { e2eUnavailable, startBox, type StandInBox } from '../support/stand-in-box.js';
import { HBS, hbs, loopDioAt, teardown } from './helpers.js';
import { Terminal, tmuxMissing } from './terminal.js';
import type { StatusReport } from '../../src/lib/status-report.js';

const skip = await e2eUnavailable();
if (skip) console.warn(`skipping end-to-end lifecycle tests: ${skip}`);

interface Paths {
  config: string;
  fstab: string;
  key: string;
  boxMount: string;
  mountPoint: string;
}

async function firstMiB(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(1024 * 1024);
    await fh.read(buf, 0, buf.length, 0);
    return createHash('sha256').update(buf).digest('hex');
  } finally {
    await fh.close();
  }
}

const isMounted = async (p: string): Promise<boolean> => (await execa('findmnt', ['--mountpoint', p], { reject: false })).exitCode === 0;

describe.skipIf(skip !== undefined)('hbs mount / umount / status against a real local SSH server', () => {
  let box: StandInBox;
  let t: string;
  let a: Paths; // the first server
  let b: Paths; // a reinstalled second server: fresh config, fstab, key; the same box
  let c: Paths; // a third install, after the second died holding the lock
  const paths = (name: string): Paths => ({
    config: join(t, name, 'etc', 'config.json'),
    fstab: join(t, name, 'fstab'),
    key: join(t, name, 'key'),
    boxMount: join(t, name, 'box'),
    mountPoint: join(t, name, 'mnt'),
  });
  const initArgs = (p: Paths, extra: string[]): string[] => [
    'init', '--yes', '--user', box.user, '--host', box.host, '--port', String(box.port),
    '--box-mount', p.boxMount, '--mount-point', p.mountPoint, '--ssh-key', p.key,
    '--host-key-fingerprint', box.hostKeyFingerprint, '--fstab', p.fstab, '--config', p.config, '--password-stdin', ...extra,
  ];
  const cfg = (p: Paths): string[] => ['--config', p.config];
  const statusJson = async (p: Paths): Promise<{ code: number; doc: StatusReport }> => {
    const r = await hbs(['status', '--json', ...cfg(p)]);
    return { code: r.exitCode, doc: JSON.parse(r.stdout) as StatusReport };
  };

  beforeAll(async () => {
    box = await startBox();
    t = await mkdtemp(join(tmpdir(), 'hbs-life-'));
    a = paths('a');
    b = paths('b');
    c = paths('c');
    for (const p of [a, b, c]) await execa('mkdir', ['-p', join(p.fstab, '..')]).then(() => writeFile(p.fstab, ''));
    const r = await hbs(initArgs(a, ['--size', '2G']), { input: box.password + '\n' });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    for (const [name, uid, gid] of [['alice', 1001, 1001], ['bob', 2002, 100], ['www', 33, 33]] as const) {
      await writeFile(join(a.mountPoint, name), `${name}'s data\n`);
      await chown(join(a.mountPoint, name), uid, gid);
    }
    await execa('sync');
  });

  afterAll(async () => {
    if (a && b && c) await teardown([a.mountPoint, b.mountPoint, c.mountPoint], [a.boxMount, b.boxMount, c.boxMount]);
    await box?.stop();
    if (t) await rm(t, { recursive: true, force: true });
  });

  it('status is healthy (exit 0) with everything up', async () => {
    const { code, doc } = await statusJson(a);
    expect(doc.healthy).toBe(true);
    expect(code).toBe(0);
    expect(doc.box.state).toBe('up');
    expect(doc.filesystem.state).toBe('up');
    expect(doc.fstab.state).toBe('ok');
    expect(doc.lock.state).toBe('ours');
    expect(doc.image.sizeBytes).toBe(2 * 1024 ** 3);
    expect(doc.image.allocatedBytes).not.toBeNull();
    expect(doc.image.allocatedBytes!).toBeLessThan(64 * 1024 * 1024);
    const text = await hbs(['status', ...cfg(a)]);
    expect(text.exitCode).toBe(0);
    expect(text.stdout).toMatch(/^box +up /m);
    expect(text.stdout).toMatch(/^filesystem +up /m);
  });

  it('umount refuses while a process holds the filesystem, and names it', async () => {
    const sleeper = spawn('sleep', ['60'], { cwd: a.mountPoint, stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 200));
      const r = await hbs(['umount', ...cfg(a)]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(`pid ${sleeper.pid}`);
      expect(r.stderr).toContain('--force');
      expect(await isMounted(a.mountPoint)).toBe(true);
    } finally {
      sleeper.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  it('umount takes everything down in order; status then says down and exits non-zero', async () => {
    const r = await hbs(['umount', ...cfg(a)]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(await isMounted(a.mountPoint)).toBe(false);
    expect(await isMounted(a.boxMount)).toBe(false);
    const loops = await execa('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE']);
    expect(loops.stdout).not.toContain(a.boxMount);
    await expect(stat(join(box.home, 'filesystem.img.hbs-lock'))).rejects.toThrow();
    const again = await hbs(['umount', ...cfg(a)]);
    expect(again.exitCode).toBe(0); // idempotent
    const { code, doc } = await statusJson(a);
    expect(code).not.toBe(0);
    expect(doc.healthy).toBe(false);
    expect(doc.box.state).toBe('down');
    expect(doc.box.reachable).toBe(true);
    expect(doc.filesystem.state).toBe('down');
  });

  it('mount brings it all back with files and owners intact; twice is harmless', async () => {
    const r = await hbs(['mount', ...cfg(a)]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const st = await stat(join(a.mountPoint, 'bob'));
    expect([st.uid, st.gid]).toEqual([2002, 100]);
    expect(await readFile(join(a.mountPoint, 'www'), 'utf8')).toBe("www's data\n");
    const lock = JSON.parse(await readFile(join(box.home, 'filesystem.img.hbs-lock'), 'utf8')) as { config: string };
    expect(lock.config).toBe(a.config);
    expect(await loopDioAt(a.mountPoint)).toBe('0');
    const twice = await hbs(['mount', ...cfg(a)]);
    expect(twice.exitCode).toBe(0);
    expect(twice.stdout).toMatch(/already mounted/);
    expect((await statusJson(a)).code).toBe(0);
  });

  it('repairs a dropped link: synced data survives, status showed it broken', async () => {
    await writeFile(join(a.mountPoint, 'before-drop'), 'synced\n');
    await execa('sync');
    const pids = (await execa('pgrep', ['-f', `sshfs.*${a.boxMount}`])).stdout.split('\n').filter(Boolean);
    expect(pids.length).toBeGreaterThan(0);
    await execa('kill', ['-KILL', ...pids]);
    await new Promise((r) => setTimeout(r, 300));
    const broken = await statusJson(a);
    expect(broken.code).not.toBe(0);
    expect([broken.doc.box.state, broken.doc.filesystem.state]).toEqual(['broken', 'broken']);
    const r = await hbs(['mount', ...cfg(a)]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/broken/);
    expect(r.stdout).toMatch(/e2fsck/);
    expect(await readFile(join(a.mountPoint, 'before-drop'), 'utf8')).toBe('synced\n');
    expect((await stat(join(a.mountPoint, 'alice'))).uid).toBe(1001);
    const logs = await readdir(join(a.config, '..', 'logs'));
    expect(logs.some((n) => n.startsWith('fsck-'))).toBe(true);
    expect((await statusJson(a)).code).toBe(0);
  });

  it('refuses to mount while another machine holds the lock, naming it; --steal-lock takes over', async () => {
    expect((await hbs(['umount', ...cfg(a)])).exitCode).toBe(0);
    // The box mount is down now; put the other machine's lock in place through the box's own files.
    const lockFile = join(box.home, 'filesystem.img.hbs-lock');
    await writeFile(lockFile, JSON.stringify({ hostname: 'server-b', machineId: 'f'.repeat(32), pid: 4242, time: '2026-11-01T10:00:00.000Z' }));
    await execa('chown', [`${box.user}:`, lockFile]); // as if written through the box account
    const r = await hbs(['mount', ...cfg(a)]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('server-b');
    expect(r.stderr).toContain('2026-11-01T10:00:00.000Z');
    expect(await isMounted(a.mountPoint)).toBe(false);
    const noYes = await hbs(['mount', '--steal-lock', ...cfg(a)]);
    expect(noYes.exitCode).toBe(2); // no terminal to confirm in
    const stolen = await hbs(['mount', '--steal-lock', '--yes', ...cfg(a)]);
    expect(stolen.stderr).toBe('');
    expect(stolen.exitCode).toBe(0);
    expect(JSON.parse(await readFile(lockFile, 'utf8'))).toMatchObject({ config: a.config });
  });

  it('a second server adopts the image (no mkfs) only after the first let go', async () => {
    const image = join(box.home, 'filesystem.img');
    // While server A has it mounted, B (another config on this machine) is refused by the lock.
    const held = await hbs(initArgs(b, ['--adopt']), { input: box.password + '\n' });
    expect(held.exitCode).toBe(1);
    expect(held.stderr).toContain(a.config);
    expect(await isMounted(b.mountPoint)).toBe(false);
    expect((await hbs(['umount', ...cfg(a)])).exitCode).toBe(0);
    await teardown([b.mountPoint], [b.boxMount]);
    const before = await firstMiB(image);
    // Without --adopt: refused, untouched, and told how to adopt.
    const refused = await hbs(initArgs(b, ['--size', '5G']), { input: box.password + '\n' });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain('--adopt');
    expect(await firstMiB(image)).toBe(before);
    const adopted = await hbs(initArgs(b, ['--adopt']), { input: box.password + '\n' });
    expect(adopted.stderr).toBe('');
    expect(adopted.exitCode).toBe(0);
    expect(adopted.stdout).toContain('adopted');
    const cA = JSON.parse(await readFile(a.config, 'utf8')) as { image: { uuid: string; sizeBytes: number } };
    const cB = JSON.parse(await readFile(b.config, 'utf8')) as { image: { uuid: string; sizeBytes: number } };
    expect(cB.image).toEqual(cA.image);
    expect((await stat(join(b.mountPoint, 'bob'))).uid).toBe(2002);
    expect(await readFile(join(b.mountPoint, 'before-drop'), 'utf8')).toBe('synced\n');
    expect((await statusJson(b)).code).toBe(0);
  });

  it('a reinstall after the old server died holding the lock: init --adopt names it; --steal-lock takes it over', async () => {
    // Server B dies with the image mounted: its mounts vanish, its lock stays on the box.
    await teardown([b.mountPoint], [b.boxMount]);
    const lockFile = join(box.home, 'filesystem.img.hbs-lock');
    await writeFile(lockFile, JSON.stringify({ hostname: 'old-server', machineId: 'e'.repeat(32), pid: 777, time: '2026-11-02T08:00:00.000Z' }));
    await execa('chown', [`${box.user}:`, lockFile]);
    const held = await hbs(initArgs(c, ['--adopt']), { input: box.password + '\n' });
    expect(held.exitCode).toBe(1);
    expect(held.stderr).toContain('old-server');
    expect(held.stderr).toMatch(/^hint: .*--steal-lock/m);
    expect(await isMounted(c.mountPoint)).toBe(false);
    // --steal-lock needs a yes: no terminal and no --yes is a usage error, and the lock stays.
    const noYes = await hbs(initArgs(c, ['--adopt', '--steal-lock']).filter((x) => x !== '--yes'), { input: box.password + '\n' });
    expect(noYes.stderr).toContain('--steal-lock needs a confirmation');
    expect(noYes.exitCode).toBe(2);
    expect(JSON.parse(await readFile(lockFile, 'utf8'))).toMatchObject({ hostname: 'old-server' });
    const stolen = await hbs(initArgs(c, ['--adopt', '--steal-lock']), { input: box.password + '\n' });
    expect(stolen.exitCode, stolen.stderr).toBe(0);
    expect(stolen.stdout + stolen.stderr).toContain('taking over the lock held by old-server');
    expect(JSON.parse(await readFile(lockFile, 'utf8'))).toMatchObject({ config: c.config });
    expect((await stat(join(c.mountPoint, 'bob'))).uid).toBe(2002);
    expect((await statusJson(c)).code).toBe(0);
    expect((await hbs(['umount', ...cfg(c)])).exitCode).toBe(0);
  });

  it('a mount made from a terminal survives closing that terminal', async () => {
    // sshfs's ssh would otherwise stay in the terminal's session and die of SIGHUP with it.
    const missing = await tmuxMissing();
    if (missing) throw new Error(missing);
    expect((await hbs(['umount', ...cfg(a)])).exitCode).toBe(0);
    const dir = await mkdtemp(join(tmpdir(), 'hbs-term-'));
    const term = await Terminal.start(dir, [HBS, 'mount', ...cfg(a)]);
    try {
      expect(await term.exitCode()).toBe(0);
    } finally {
      await term.close();
      await rm(dir, { recursive: true, force: true });
    }
    await new Promise((r) => setTimeout(r, 1500));
    await writeFile(join(a.mountPoint, 'after-terminal-closed'), 'still here\n');
    await execa('sync');
    const m = await execa('findmnt', ['--noheadings', '--output', 'OPTIONS', '--mountpoint', a.mountPoint]);
    expect(m.stdout.split(',')).toContain('rw');
    const { code, doc } = await statusJson(a);
    expect(doc.filesystem.state).toBe('up');
    expect(code).toBe(0);
    expect((await hbs(['umount', ...cfg(a)])).exitCode).toBe(0);
  });

  it('status without a config is a clear error, exit 2', async () => {
    const r = await hbs(['status', '--config', join(t, 'nowhere', 'config.json')]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/no config at .*nowhere/);
  });
});
