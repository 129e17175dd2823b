import { describe, expect, it } from 'vitest';
import {
  backupConfigSchema,
  backupLockPath,
  defaultExcludes,
  isInside,
  isoWeek,
  lastBackupPath,
  parseRsyncStats,
  parseSnapshotName,
  progressNote,
  retention,
  rsyncArgv,
  rsyncOutcome,
  snapshotEntries,
  snapshotName,
} from '../../../src/lib/backup.js';
import { configSchema } from '../../../src/lib/config.js';

const at = (iso: string) => ({ name: snapshotName(new Date(iso)), time: new Date(iso) });

describe('snapshot names', () => {
  it('are UTC, second-precise, sortable and without colons', () => {
    expect(snapshotName(new Date('2026-12-02T18:30:00.123Z'))).toBe('2026-12-02T183000Z');
    expect(snapshotName(new Date('2026-12-02T19:30:00+01:00'))).toBe('2026-12-02T183000Z');
  });
  it('parse back; anything else is not a snapshot', () => {
    expect(parseSnapshotName('2026-12-02T183000Z')?.toISOString()).toBe('2026-12-02T18:30:00.000Z');
    for (const n of ['latest', '2026-12-02T18:30:00Z', '2026-02-30T000000Z', '2026-12-02T183000Z.partial', 'x2026-12-02T183000Z', '.hbs-meta']) expect(parseSnapshotName(n), n).toBeUndefined();
  });
  it('entries: complete and partial ones, oldest first; other names ignored', () => {
    const e = snapshotEntries(['latest', '2026-12-02T183000Z', '2026-12-01T000000Z.partial', 'lost+found', '2026-11-30T235959Z', '.hbs-meta']);
    expect(e.map((x) => [x.name, x.complete])).toEqual([
      ['2026-11-30T235959Z', true],
      ['2026-12-01T000000Z.partial', false],
      ['2026-12-02T183000Z', true],
    ]);
  });
});

describe('files beside the config', () => {
  it('are named after its stem', () => {
    expect(lastBackupPath('/etc/hbs/config.json')).toBe('/etc/hbs/config.last-backup.json');
    expect(backupLockPath('/etc/hbs/office.json')).toBe('/etc/hbs/office.backup.lock');
    expect(backupLockPath('/etc/hbs/odd')).toBe('/etc/hbs/odd.backup.lock');
  });
});

describe('rsync', () => {
  const base = { sources: ['/etc', '/home/me/'], excludes: ['/proc'], excludeFrom: null, dest: '/srv/b/snapshots/X.partial', linkDest: '/srv/b/snapshots/Y' };
  it('keeps owners, hard links, ACLs, xattrs by number; each source at its absolute path; hard links into the previous snapshot', () => {
    expect(rsyncArgv(base)).toEqual([
      'rsync', '-aHAX', '--numeric-ids', '--delete', '--relative', '--partial', '--info=progress2', '--stats',
      '--exclude=/proc', '--link-dest=/srv/b/snapshots/Y', '/etc', '/home/me', '/srv/b/snapshots/X.partial/',
    ]);
  });
  it('never writes in place (that would write through the hard links into the old snapshot)', () => {
    expect(rsyncArgv(base).some((a) => a.startsWith('--inplace') || a === '--append')).toBe(false);
  });
  it('without a previous snapshot: no --link-dest; with an exclude file: --exclude-from; / stays /', () => {
    const a = rsyncArgv({ ...base, sources: ['/'], linkDest: null, excludeFrom: '/etc/hbs/excludes' });
    expect(a.some((x) => x.startsWith('--link-dest'))).toBe(false);
    expect(a).toContain('--exclude-from=/etc/hbs/excludes');
    expect(a.at(-2)).toBe('/');
  });
  it('exit codes: 0 ok, 24 (vanished files) a warning, everything else a failure', () => {
    expect(rsyncOutcome(0).result).toBe('ok');
    expect(rsyncOutcome(24)).toMatchObject({ result: 'warning', message: expect.stringMatching(/vanished/) as unknown });
    for (const c of [1, 11, 12, 20, 23, 30, 35, 255]) expect(rsyncOutcome(c).result, String(c)).toBe('failed');
    expect(rsyncOutcome(11)).toMatchObject({ message: expect.stringMatching(/exit 11: error in file I\/O/) as unknown });
  });
  it('parses --stats (thousands separators)', () => {
    const out = [
      '         12,345 100%   11.77MB/s    0:00:00 (xfr#3, to-chk=0/58)\r',
      'Number of files: 58 (reg: 53, dir: 4, link: 1)',
      'Number of created files: 2',
      'Number of regular files transferred: 3',
      'Total file size: 1,234,567 bytes',
      'Total transferred file size: 12,345 bytes',
      'Total bytes sent: 14,000',
      'Total bytes received: 90',
    ].join('\n');
    expect(parseRsyncStats(out)).toEqual({ files: 58, filesTransferred: 3, totalBytes: 1234567, bytesTransferred: 12345, bytesSent: 14000 });
    expect(parseRsyncStats('nothing')).toEqual({ files: null, filesTransferred: null, totalBytes: null, bytesTransferred: null, bytesSent: null });
  });
  it('turns progress2 lines into a short note', () => {
    expect(progressNote('    1,234,567  45%   12.34MB/s    0:00:05 (xfr#12, to-chk=100/2000)')).toBe('45% 12.34MB/s, 1900/2000 files checked');
    expect(progressNote('         32,768   0%    0.00kB/s    0:00:00')).toBe('0% 0.00kB/s');
    expect(progressNote('Number of files: 58')).toBeUndefined();
  });
  it('default excludes: the hbs mounts themselves and what is no data', () => {
    const e = defaultExcludes({ mountPoint: '/srv/backup/backup', boxMount: '/srv/backup/box' });
    for (const x of ['/srv/backup/backup', '/srv/backup/box', '/proc', '/sys', '/dev', '/run', '/tmp', '/var/tmp', '/mnt', '/media', '/swapfile']) expect(e).toContain(x);
  });
  it('a default exclude named as a source is dropped (rsync would filter the source out whole)', () => {
    const e = defaultExcludes({ mountPoint: '/srv/b', boxMount: '/srv/box' }, ['/tmp', '/etc']);
    expect(e).not.toContain('/tmp');
    expect(e).toContain('/var/tmp');
  });
  it('isInside: a path equal to or below a directory', () => {
    expect(isInside('/srv/b', '/srv/b')).toBe(true);
    expect(isInside('/srv/b/x', '/srv/b/')).toBe(true);
    expect(isInside('/srv/bb', '/srv/b')).toBe(false);
    expect(isInside('/anything', '/')).toBe(true);
  });
});

describe('retention', () => {
  const keep = (daily: number, weekly: number, monthly: number) => ({ daily, weekly, monthly });
  const names = (s: { name: string }[]) => s.map((x) => x.name);

  it('always keeps the newest, even with everything at 0', () => {
    const s = [at('2026-01-01T00:00:00Z'), at('2026-01-02T00:00:00Z')];
    expect(retention(s, keep(0, 0, 0))).toEqual({ keep: [s[1]!.name], remove: [s[0]!.name] });
    expect(retention([], keep(3, 3, 3))).toEqual({ keep: [], remove: [] });
  });
  it('daily: the newest of each of the last N days that have snapshots', () => {
    const s = [at('2026-03-01T01:00:00Z'), at('2026-03-01T23:00:00Z'), at('2026-03-02T10:00:00Z'), at('2026-03-05T10:00:00Z'), at('2026-03-05T12:00:00Z')];
    const r = retention(s, keep(3, 0, 0));
    expect(r.keep).toEqual(names([s[4]!, s[2]!, s[1]!]));
    expect(r.remove).toEqual(names([s[3]!, s[0]!]));
  });
  it('days are UTC days', () => {
    const s = [at('2026-03-01T23:30:00Z'), at('2026-03-02T00:30:00Z')];
    expect(retention(s, keep(2, 0, 0)).remove).toEqual([]);
  });
  it('weekly: ISO weeks (Monday to Sunday), across a year boundary', () => {
    expect(isoWeek(new Date('2026-12-28T00:00:00Z'))).toBe('2026-W53');
    expect(isoWeek(new Date('2027-01-03T23:59:59Z'))).toBe('2026-W53');
    expect(isoWeek(new Date('2027-01-04T00:00:00Z'))).toBe('2027-W01');
    expect(isoWeek(new Date('2026-01-01T00:00:00Z'))).toBe('2026-W01');
    // Sun 2026-11-29 (W48) and Mon 2026-11-30 (W49) are two weeks; Mon..Sun of W49 one.
    const s = [at('2026-11-29T12:00:00Z'), at('2026-11-30T12:00:00Z'), at('2026-12-06T12:00:00Z')];
    expect(retention(s, keep(0, 2, 0)).keep).toEqual(names([s[2]!, s[0]!]));
  });
  it('monthly: the newest of each of the last N months with snapshots; the buckets add up', () => {
    const s = [at('2025-10-15T00:00:00Z'), at('2025-11-01T00:00:00Z'), at('2025-11-30T00:00:00Z'), at('2026-01-10T00:00:00Z'), at('2026-01-11T00:00:00Z')];
    expect(retention(s, keep(0, 0, 3)).keep).toEqual(names([s[4]!, s[2]!, s[0]!]));
    expect(retention(s, keep(2, 0, 2)).keep).toEqual(names([s[4]!, s[3]!, s[2]!]));
  });
  it('two months of daily snapshots with 7/4/6: 7 days, the Sundays of the 3 weeks before, the end of October', () => {
    // 2026-10-01 .. 2026-11-29 (a Sunday, ISO week 48), one a day at 03:00.
    const s = Array.from({ length: 60 }, (_, i) => at(new Date(Date.UTC(2026, 9, 1 + i, 3)).toISOString()));
    const r = retention(s, keep(7, 4, 6));
    const day = (d: string) => at(`${d}T03:00:00Z`).name;
    const expected = ['2026-11-29', '2026-11-28', '2026-11-27', '2026-11-26', '2026-11-25', '2026-11-24', '2026-11-23', '2026-11-22', '2026-11-15', '2026-11-08', '2026-10-31'];
    expect(r.keep).toEqual(expected.map(day));
    expect(r.remove).toHaveLength(60 - expected.length);
    expect(r.remove).toContain(day('2026-11-21'));
    expect(r.remove).toContain(day('2026-10-30'));
  });
  it('input order does not matter, and nothing is both kept and removed', () => {
    const s = [at('2026-02-01T00:00:00Z'), at('2026-01-01T00:00:00Z'), at('2026-03-01T00:00:00Z')];
    const r = retention(s, keep(1, 0, 2));
    expect(r.keep).toEqual(names([s[2]!, s[0]!]));
    expect(r.remove).toEqual([s[1]!.name]);
  });
});

describe('config', () => {
  it('the backup section is optional (older configs stay valid) and gets its defaults', () => {
    expect(backupConfigSchema.parse({ sources: ['/etc'] })).toEqual({ sources: ['/etc'], excludes: [], excludeFrom: null, keep: null, timer: null });
    expect(backupConfigSchema.safeParse({ sources: [] }).success).toBe(false);
    expect(backupConfigSchema.safeParse({ sources: ['etc'] }).success).toBe(false);
    expect(backupConfigSchema.safeParse({ sources: ['/etc'], keep: { daily: -1, weekly: 0, monthly: 0 } }).success).toBe(false);
    expect(configSchema.shape.backup.safeParse(undefined).success).toBe(true);
  });
});
