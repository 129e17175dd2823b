import { execa } from 'execa';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveSettings, summary, type BackupFlags, type BackupResult } from '../../../src/commands/backup.js';
import { EXIT, UsageError } from '../../../src/core/errors.js';
import type { Config } from '../../../src/lib/config.js';
import { stackFromConfig } from '../../../src/lib/stack.js';
import { backupServiceText, backupTimerText, backupUnitNames, configUnits, unitName } from '../../../src/lib/systemd.js';
import { timerStep } from '../../../src/steps/backup-timer.js';
import { describeAction } from '../../../src/core/action.js';

let t: string;
let cfg: Config;
const configPath = '/etc/hbs/config.json';

beforeAll(async () => {
  t = await mkdtemp(join(tmpdir(), 'hbs-unit-backup-'));
  await mkdir(join(t, 'data', 'sub'), { recursive: true });
  await writeFile(join(t, 'excludes'), '*.tmp\n');
  cfg = {
    version: 1,
    box: { user: 'u1', host: 'h', port: 23, remotePath: '' },
    ssh: { key: '/k', knownHosts: '/kh', hostKeyFingerprint: 'SHA256:x' },
    boxMount: join(t, 'box'),
    image: { name: 'filesystem.img', sizeBytes: 1024 ** 3, uuid: '3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b', label: 'hbs' },
    filesystem: { mountPoint: join(t, 'mnt'), mountOptions: [] },
    fstab: null,
  };
  await mkdir(join(t, 'mnt', 'inside'), { recursive: true });
  await mkdir(join(t, 'box', 'inside'), { recursive: true });
});
afterAll(() => rm(t, { recursive: true, force: true }));

const settings = (flags: Partial<BackupFlags>, c: Config = cfg, timer?: { dir: string; onCalendar: string }) =>
  resolveSettings({ config: configPath, ...flags }, c, stackFromConfig(c, configPath), timer);

describe('backup settings: bad input is exit 2 naming the value', () => {
  it.each([
    [{ source: ['data'] }, /--source "data": not an absolute path/],
    [{ source: ['/no/such/dir/hbs-test'] }, /--source \/no\/such\/dir\/hbs-test: no such file or directory/],
    [{ source: ['MNT/inside'] }, /inside the backup filesystem \(mount point\)/],
    [{ source: ['MNT'] }, /inside the backup filesystem/],
    [{ source: ['BOX/inside'] }, /inside the box mount/],
    [{ source: ['DATA'], keepDaily: '1.5' }, /--keep-daily "1.5": not a whole number/],
    [{ source: ['DATA'], keepMonthly: '' }, /--keep-monthly ""/],
    [{ source: ['DATA'], keepWeekly: '1000000' }, /--keep-weekly "1000000"/],
    [{ source: ['DATA'], exclude: [''] }, /--exclude "": an empty pattern/],
    [{ source: ['DATA'], excludeFrom: '/no/such/list' }, /--exclude-from \/no\/such\/list: not a readable file/],
    [{}, /nothing to back up: give --source PATH/],
  ])('%j', async (flags, msg) => {
    const f = JSON.parse(JSON.stringify(flags).replace(/MNT/g, join(t, 'mnt')).replace(/BOX/g, join(t, 'box')).replace(/DATA/g, join(t, 'data'))) as Partial<BackupFlags>;
    const err = await settings(f).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(EXIT.usage);
    expect((err as Error).message).toMatch(msg);
    expect((err as Error).message).not.toContain('\n');
  });

  it('a source / is fine: the hbs mounts are among the default excludes', async () => {
    expect((await settings({ source: ['/'] })).settings.sources).toEqual(['/']);
  });
});

describe('backup settings: what is kept in the config', () => {
  const kept = (): Config => ({ ...cfg, backup: { sources: [join(t, 'data')], excludes: ['*.o'], excludeFrom: null, keep: { daily: 7, weekly: 4, monthly: 6 }, timer: null } });

  it('the first run keeps its settings (normalised, without duplicates); keep counts not given are 0', async () => {
    const r = await settings({ source: [join(t, 'data') + '/', join(t, 'data', 'sub', '..')], keepDaily: '3', excludeFrom: join(t, 'excludes') });
    expect(r.settings).toEqual({ sources: [join(t, 'data')], excludes: [], excludeFrom: join(t, 'excludes'), keep: { daily: 3, weekly: 0, monthly: 0 }, timer: null });
    expect(r.save).toEqual(r.settings);
  });
  it('later runs use the config; flags without --save are for this run only', async () => {
    const a = await settings({}, kept());
    expect(a.settings).toEqual(kept().backup);
    expect(a.save).toBeUndefined();
    const b = await settings({ source: [join(t, 'data', 'sub')] }, kept());
    expect(b.settings.sources).toEqual([join(t, 'data', 'sub')]);
    expect(b.settings.keep).toEqual({ daily: 7, weekly: 4, monthly: 6 });
    expect(b.save).toBeUndefined();
  });
  it('--save and --install-timer keep them', async () => {
    expect((await settings({ keepWeekly: '2', save: true }, kept())).save).toMatchObject({ keep: { daily: 0, weekly: 2, monthly: 0 }, excludes: ['*.o'] });
    const timer = { dir: join(t, 'systemd'), onCalendar: '*-*-* 02:30' };
    expect((await settings({ installTimer: true }, kept(), timer)).save).toEqual({ ...kept().backup, timer });
  });
  it('the timer is kept in the config (where its units are, for uninstall) and stays there on later runs', async () => {
    const timer = { dir: '/etc/systemd/system', onCalendar: 'daily' };
    const withTimer: Config = { ...kept(), backup: { ...kept().backup!, timer } };
    expect((await settings({ keepDaily: '1', save: true }, withTimer)).save?.timer).toEqual(timer);
    expect((await settings({}, kept(), timer)).settings.timer).toBeNull();
  });
});

describe('the timer units', () => {
  const hbs = ['/usr/bin/node', '/opt/hbs/dist/cli.js'];
  it('are named after the config, as the boot unit is; configUnits lists every unit of a config', () => {
    expect(backupUnitNames('/etc/hbs/config.json')).toEqual({ service: 'hbs-backup@etc-hbs-config.json.service', timer: 'hbs-backup@etc-hbs-config.json.timer' });
    expect(backupUnitNames('/etc/hbs/my-box.json').timer).toBe('hbs-backup@etc-hbs-my\\x2dbox.json.timer');
    expect(configUnits('/etc/hbs/config.json').map((u) => u.unit)).toEqual([unitName('/etc/hbs/config.json'), 'hbs-backup@etc-hbs-config.json.service', 'hbs-backup@etc-hbs-config.json.timer']);
  });
  it('the service runs hbs backup for this config; after the boot unit when there is one', () => {
    const s = backupServiceText(hbs, '/etc/hbs/my box%.json', { bootUnit: true });
    expect(s).toContain('ExecStart=/usr/bin/node /opt/hbs/dist/cli.js --config "/etc/hbs/my box%%.json" backup\n');
    expect(s).toContain(`After=network-online.target ${unitName('/etc/hbs/my box%.json')}\n`);
    expect(s).toContain('Type=oneshot\n');
    expect(backupServiceText(hbs, '/etc/hbs/config.json', { bootUnit: false })).toContain('After=network-online.target\n');
  });
  it('the timer is persistent, randomised, wanted by timers.target', () => {
    const x = backupTimerText('/etc/hbs/config.json', '*-*-* 02:30');
    for (const l of ['OnCalendar=*-*-* 02:30', 'Persistent=true', 'RandomizedDelaySec=1h', 'WantedBy=timers.target']) expect(x).toContain(`${l}\n`);
  });
  it('the step writes both, enables the timer by its link, and reloads + starts it only where systemd runs', async () => {
    const o = { dir: '/etc/systemd/system', live: true, onCalendar: 'daily', hbs, configPath, bootUnit: false };
    const live = (await timerStep(o).step.plan({} as never)).flatMap(describeAction);
    expect(live.filter((l) => l.startsWith('write ') || l.startsWith('ln ') || l.startsWith('systemctl'))).toEqual([
      `write /etc/systemd/system/hbs-backup@etc-hbs-config.json.service (runs hbs backup for this config) (mode 0644, ${backupServiceText(hbs, configPath, { bootUnit: false }).length} bytes, atomic)`,
      `write /etc/systemd/system/hbs-backup@etc-hbs-config.json.timer (starts it) (mode 0644, ${backupTimerText(configPath, 'daily').length} bytes, atomic)`,
      'ln -sfn /etc/systemd/system/hbs-backup@etc-hbs-config.json.timer /etc/systemd/system/timers.target.wants/hbs-backup@etc-hbs-config.json.timer  (enables hbs-backup@etc-hbs-config.json.timer)',
      'systemctl daemon-reload',
      'systemctl restart hbs-backup@etc-hbs-config.json.timer',
    ]);
    const dead = (await timerStep({ ...o, dir: join(t, 'units'), live: false }).step.plan({} as never)).flatMap(describeAction);
    expect(dead.some((l) => l.startsWith('systemctl'))).toBe(false);
  });
  it('pass systemd-analyze verify', async () => {
    const dir = join(t, 'verify');
    await mkdir(dir, { recursive: true });
    const cp = join(t, 'etc-hbs', 'my-config.json');
    const names = backupUnitNames(cp);
    await writeFile(join(dir, names.service), backupServiceText([process.execPath, join(t, 'excludes')], cp, { bootUnit: true }));
    await writeFile(join(dir, names.timer), backupTimerText(cp, 'Mon..Fri 22:00'));
    const v = await execa('systemd-analyze', ['verify', join(dir, names.service), join(dir, names.timer)], { reject: false });
    expect(v.stderr).toBe('');
    expect(v.exitCode).toBe(0);
  });
});

describe('the summary', () => {
  it('fits a screen: snapshot, files, bytes, time, what retention removed, how to restore', () => {
    const x: BackupResult = {
      result: 'ok', exitCode: 0, snapshot: '2026-12-02T183000Z', previous: '2026-12-01T183000Z', resumed: null, path: '/srv/backup/backup/snapshots/2026-12-02T183000Z',
      warning: null, durationMs: 12_345, files: 22_640, filesTransferred: 226, totalBytes: 151_000_000, bytesTransferred: 1_500_000, bytesSent: 1_600_000, removed: ['2026-11-01T000000Z'],
    };
    const s = summary(x).join('\n');
    expect(s).toContain('Snapshot 2026-12-02T183000Z complete: /srv/backup/backup/snapshots/2026-12-02T183000Z');
    expect(s).toContain('22,640 (226 copied, the rest hard links into 2026-12-01T183000Z)');
    expect(summary({ ...x, previous: null }).join('\n')).toContain('22,640 (226 copied: the first snapshot)');
    expect(s).toContain('12.3 s');
    expect(s).toContain('removed    2026-11-01T000000Z');
    expect(s).toMatch(/Restore: rsync -aHAX/);
    expect(summary(x).length).toBeLessThan(20);
  });
});
