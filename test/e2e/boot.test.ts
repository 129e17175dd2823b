/**
 * End to end: the boot unit. `hbs init` writes and enables hbs-mount@<config>.service (here into a
 * directory of the test's, as --systemd-dir allows); the unit passes `systemd-analyze verify`; the
 * fstab lines become `noauto`; and the unit's ExecStart, run exactly as systemd runs it (its own
 * command line, `%f` expanded), brings a stack that is down up with the lock (loop buffered, box readahead raised) — and
 * refuses the image another server holds, which fstab at boot never did. This machine does not
 * run systemd as PID 1; the VM suite boots one that does (test/vm/boot.vmtest.ts).
 */
import { mkdtemp, readFile, readlink, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { escapePath } from '../../src/lib/systemd.js';
import type { StatusReport } from '../../src/lib/status-report.js';
import { e2eUnavailable, startBox, type StandInBox } from '../support/stand-in-box.js';
import { hbs, loopDioAt, teardown } from './helpers.js';

const skip = await e2eUnavailable();

/** ExecStart= or ExecStop= of a unit file, as systemd would run it for this instance. */
function execLine(unit: string, key: 'ExecStart' | 'ExecStop', configPath: string): string[] {
  const line = unit.split('\n').find((l) => l.startsWith(`${key}=`));
  if (!line) throw new Error(`no ${key}= in the unit`);
  // systemd splits on white space, honouring double quotes; %f is "/" + the unescaped instance.
  const words = [...line.slice(key.length + 1).matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => (m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!));
  return words.map((w) => w.replace(/%f/g, configPath));
}

describe.skipIf(skip !== undefined)('the boot unit (systemd)', () => {
  let box: StandInBox;
  let t: string;
  const p = { config: '', fstab: '', key: '', boxMount: '', mountPoint: '', systemd: '' };

  beforeAll(async () => {
    box = await startBox();
    t = await mkdtemp(join(tmpdir(), 'hbs boot-'));
    Object.assign(p, {
      config: join(t, 'etc hbs', 'config.json'),
      fstab: join(t, 'fstab'),
      key: join(t, 'key'),
      boxMount: join(t, 'box'),
      mountPoint: join(t, 'mnt'),
      systemd: join(t, 'systemd'),
    });
    const r = await hbs(
      ['init', '--yes', '--user', box.user, '--host', box.host, '--port', String(box.port), '--size', '2G', '--box-mount', p.boxMount, '--mount-point', p.mountPoint,
        '--ssh-key', p.key, '--host-key-fingerprint', box.hostKeyFingerprint, '--fstab', p.fstab, '--config', p.config, '--password-stdin', '--systemd-dir', p.systemd],
      { input: box.password + '\n' },
    );
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
  });

  afterAll(async () => {
    await teardown([p.mountPoint], [p.boxMount]);
    await box?.stop();
    if (t) await rm(t, { recursive: true, force: true });
  });

  const instance = (): string => `hbs-mount@${escapePath(p.config)}.service`;

  it('writes the template and enables this config\'s instance; systemd-analyze verify passes', async () => {
    const link = join(p.systemd, 'multi-user.target.wants', instance());
    expect(await readlink(link)).toBe(join(p.systemd, 'hbs-mount@.service'));
    // The escaped name is the one systemd itself makes.
    expect(instance()).toBe(`hbs-mount@${(await execa('systemd-escape', ['--path', p.config])).stdout.trim()}.service`);
    const v = await execa('systemd-analyze', ['verify', link], { reject: false });
    expect(v.stderr + v.stdout).toBe('');
    expect(v.exitCode).toBe(0);
    const config = JSON.parse(await readFile(p.config, 'utf8')) as { systemd: { dir: string } };
    expect(config.systemd).toEqual({ dir: p.systemd });
  });

  it('the fstab lines stay as the record, but noauto: boot leaves the mounting to the unit', async () => {
    const fstab = await readFile(p.fstab, 'utf8');
    const lines = fstab.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l.split(' ')[3]!.split(',')).toContain('noauto');
    const v = await execa('findmnt', ['--verify', '--tab-file', p.fstab], { reject: false });
    expect(v.stdout + v.stderr).toMatch(/0 parse errors, 0 errors|Success, no errors/);
  });

  it('status shows the unit enabled, and says so when it is gone (exit 1)', async () => {
    const ok = await hbs(['status', '--json', '--config', p.config]);
    expect(ok.exitCode).toBe(0);
    expect((JSON.parse(ok.stdout) as StatusReport).boot).toMatchObject({ state: 'enabled', unit: instance() });
    const link = join(p.systemd, 'multi-user.target.wants', instance());
    const target = await readlink(link);
    await unlink(link);
    const missing = await hbs(['status', '--config', p.config]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stdout).toMatch(/^boot +missing .*NOT enabled/m);
    await execa('ln', ['-s', target, link]);
  });

  it('ExecStart, run as systemd runs it, brings the stack up with the lock, buffered; ExecStop takes it down', async () => {
    const unit = await readFile(join(p.systemd, 'hbs-mount@.service'), 'utf8');
    expect((await hbs(['umount', '--config', p.config])).exitCode).toBe(0);
    const [file, ...args] = execLine(unit, 'ExecStart', p.config);
    const start = await execa(file!, args, { reject: false, env: { NO_COLOR: '1' } });
    expect(start.stderr).toBe('');
    expect(start.exitCode).toBe(0);
    const status = JSON.parse((await hbs(['status', '--json', '--config', p.config])).stdout) as StatusReport;
    expect(status.healthy).toBe(true);
    expect(status.lock.state).toBe('ours');
    expect(await loopDioAt(p.mountPoint)).toBe('0');
    const [stopFile, ...stopArgs] = execLine(unit, 'ExecStop', p.config);
    expect((await execa(stopFile!, stopArgs, { reject: false })).exitCode).toBe(0);
    expect((await execa('findmnt', ['--mountpoint', p.mountPoint], { reject: false })).exitCode).toBe(1);
  });

  it('another server holding the lock: the unit refuses (exit 1, naming it) and mounts nothing', async () => {
    const lock = join(box.home, 'filesystem.img.hbs-lock');
    await execa('sh', ['-c', `printf '%s' "$0" > "$1" && chown "$2": "$1"`, JSON.stringify({ hostname: 'twin', machineId: 'c'.repeat(32), pid: 9, time: '2026-12-01T00:00:00.000Z' }), lock, box.user]);
    const unit = await readFile(join(p.systemd, 'hbs-mount@.service'), 'utf8');
    const [file, ...args] = execLine(unit, 'ExecStart', p.config);
    const r = await execa(file!, args, { reject: false, env: { NO_COLOR: '1' } });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('twin');
    expect((await execa('findmnt', ['--mountpoint', p.mountPoint], { reject: false })).exitCode).toBe(1);
    await rm(lock);
  });
});
