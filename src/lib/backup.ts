/**
 * `hbs backup` as pure functions: snapshot names, where things live, the rsync command line, what
 * rsync's exit code means, its --stats, and which snapshots retention keeps. No I/O here.
 */
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';

/** What `hbs backup` keeps in the config (`backup` section; `--save`, or the first run, writes it). */
export const backupConfigSchema = z.object({
  /** Absolute paths, each copied to the snapshot at its absolute path. */
  sources: z.array(z.string().startsWith('/')).min(1),
  /** rsync exclude patterns, added to the default ones. */
  excludes: z.array(z.string().min(1)).default([]),
  /** A file of rsync exclude patterns (one a line), or null. */
  excludeFrom: z.string().startsWith('/').nullable().default(null),
  /** Retention; null: keep every snapshot. */
  keep: z.object({ daily: z.number().int().min(0), weekly: z.number().int().min(0), monthly: z.number().int().min(0) }).nullable().default(null),
  /** Where `--install-timer` put the units and when they run (`hbs uninstall` removes them from there); null: no timer. */
  timer: z.object({ dir: z.string().startsWith('/'), onCalendar: z.string().min(1) }).nullable().default(null),
});

export type BackupConfig = z.infer<typeof backupConfigSchema>;
export type Keep = NonNullable<BackupConfig['keep']>;

export const SNAPSHOTS_DIR = 'snapshots';
export const LATEST = 'latest';
export const PARTIAL = '.partial';
/** A snapshot retention is removing: renamed first, so one cut off halfway never looks complete. */
export const DELETING = '.deleting';
/** Per-snapshot figures (rsync's stats), beside the snapshots: never inside one, so a restore never copies them. */
export const META_DIR = '.hbs-meta';

/** Below this much free space on the box a backup does not start: ext4 could not even commit its journal. */
export const MIN_BOX_FREE = 128 * 1024 * 1024;

export function snapshotsDir(mountPoint: string): string {
  return join(mountPoint, SNAPSHOTS_DIR);
}

/** 2026-12-02T183000Z: UTC, sortable as text, no colons (safe in rsync and scp paths). */
export function snapshotName(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '');
}

const NAME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/** The time a snapshot name stands for; undefined for any other name. */
export function parseSnapshotName(name: string): Date | undefined {
  const m = NAME.exec(name);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const t = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  return snapshotName(t) === name ? t : undefined;
}

export interface SnapshotEntry {
  name: string;
  time: Date;
  complete: boolean;
}

/** Snapshot directories among the names in `snapshots/`, oldest first (other names are ignored). */
export function snapshotEntries(names: readonly string[]): SnapshotEntry[] {
  const out: SnapshotEntry[] = [];
  for (const n of names) {
    const partial = n.endsWith(PARTIAL);
    const base = partial ? n.slice(0, -PARTIAL.length) : n;
    const time = parseSnapshotName(base);
    if (time) out.push({ name: n, time, complete: !partial });
  }
  return out.sort((a, b) => a.time.getTime() - b.time.getTime() || Number(a.complete) - Number(b.complete));
}

/** `/etc/hbs/config.json` → `/etc/hbs/config.<suffix>`: files that belong to one config live beside it. */
export function besideConfig(configPath: string, suffix: string): string {
  const stem = basename(configPath).replace(/\.json$/, '');
  return join(dirname(configPath), `${stem}.${suffix}`);
}

/** The record of the last run (`hbs status` shows it). */
export const lastBackupPath = (configPath: string): string => besideConfig(configPath, 'last-backup.json');
/** The flock that keeps two runs for one config from overlapping. */
export const backupLockPath = (configPath: string): string => besideConfig(configPath, 'backup.lock');

export const lastBackupSchema = z.object({
  time: z.string(),
  result: z.enum(['ok', 'warning', 'failed']),
  snapshot: z.string().nullable(),
  /** Exit code of that run. */
  exitCode: z.number().int(),
  message: z.string().nullable(),
  durationMs: z.number().nullable(),
  files: z.number().nullable(),
  bytesTransferred: z.number().nullable(),
});
export type LastBackup = z.infer<typeof lastBackupSchema>;

/**
 * Excluded unless named as a source (anchored at / since rsync runs with --relative): pseudo
 * filesystems, temporary files, mounts, swap. A source below one is copied all the same (rsync
 * does not filter the directories it implies); a source that is one would be filtered out whole,
 * so `--source /mnt` drops the `/mnt` exclude.
 */
export function defaultExcludes(o: { mountPoint: string; boxMount: string }, sources: readonly string[] = []): string[] {
  return [
    o.mountPoint,
    o.boxMount,
    '/proc',
    '/sys',
    '/dev',
    '/run',
    '/tmp',
    '/var/tmp',
    '/mnt',
    '/media',
    '/lost+found',
    '/swapfile',
    '/swap.img',
    '/var/cache/apt/archives/*.deb',
    'lost+found/',
  ].filter((e) => !sources.includes(e));
}

export interface RsyncPlan {
  sources: readonly string[];
  excludes: readonly string[];
  excludeFrom: string | null;
  /** The directory written (a `.partial` one). */
  dest: string;
  /** The previous complete snapshot: unchanged files become hard links into it. */
  linkDest: string | null;
}

/**
 * rsync -aHAX --numeric-ids: owners, groups, modes, hard links, ACLs and xattrs as they are, owners by
 * number (a restore onto a fresh system must not remap them by name). --relative: each source lands
 * at its absolute path. --delete: a resumed .partial ends up exactly like the sources. --partial: a
 * big file cut off halfway is resumed, not sent again. No --inplace: a changed file is written
 * beside and renamed, so the hard link into the previous snapshot is never written through.
 */
export function rsyncArgv(p: RsyncPlan): string[] {
  return [
    'rsync',
    '-aHAX',
    '--numeric-ids',
    '--delete',
    '--relative',
    '--partial',
    '--info=progress2',
    '--stats',
    ...[...p.excludes].map((e) => `--exclude=${e}`),
    ...(p.excludeFrom ? [`--exclude-from=${p.excludeFrom}`] : []),
    ...(p.linkDest ? [`--link-dest=${p.linkDest}`] : []),
    ...p.sources.map((s) => (s === '/' ? '/' : s.replace(/\/+$/, ''))),
    `${p.dest.replace(/\/+$/, '')}/`,
  ];
}

export type RsyncOutcome = { result: 'ok' } | { result: 'warning'; message: string } | { result: 'failed'; message: string };

/** rsync's exit code: 24 (files vanished while it ran: a live system) is a warning; anything else non-zero a failure. */
export function rsyncOutcome(exitCode: number): RsyncOutcome {
  if (exitCode === 0) return { result: 'ok' };
  if (exitCode === 24) return { result: 'warning', message: 'some source files vanished while rsync ran (rsync exit 24); the snapshot has everything else' };
  const why: Record<number, string> = {
    1: 'syntax or usage error',
    3: 'errors selecting input/output files or directories',
    10: 'error in socket I/O',
    11: 'error in file I/O (the backup filesystem may be full or read-only)',
    12: 'error in the rsync protocol data stream',
    20: 'killed by a signal',
    23: 'some files could not be transferred (partial transfer due to error)',
    30: 'timeout in data send/receive',
  };
  return { result: 'failed', message: `rsync failed (exit ${exitCode}: ${why[exitCode] ?? 'see its messages'})` };
}

export interface RsyncStats {
  files: number | null;
  filesTransferred: number | null;
  totalBytes: number | null;
  bytesTransferred: number | null;
  bytesSent: number | null;
}

const num = (text: string, label: string): number | null => {
  const m = new RegExp(`^${label}: ([\\d,.]+)`, 'm').exec(text);
  if (!m) return null;
  const n = Number(m[1]!.replace(/,/g, ''));
  return Number.isFinite(n) ? n : null;
};

/** The figures of rsync --stats (numbers with thousands separators; no --human-readable). */
export function parseRsyncStats(stdout: string): RsyncStats {
  const text = stdout.replace(/\r/g, '\n');
  return {
    files: num(text, 'Number of files'),
    filesTransferred: num(text, 'Number of regular files transferred'),
    totalBytes: num(text, 'Total file size'),
    bytesTransferred: num(text, 'Total transferred file size'),
    bytesSent: num(text, 'Total bytes sent'),
  };
}

/** A progress2 line ("  1,234,567  45%   12.34MB/s    0:00:05 (xfr#12, to-chk=100/2000)") as a short note; undefined for other lines. */
export function progressNote(line: string): string | undefined {
  const m = /^\s*([\d,]+)\s+(\d+)%\s+(\S+)\s+(\S+)(?:\s+\((?:xfr#(\d+), )?(?:to-chk|ir-chk)=(\d+)\/(\d+)\))?/.exec(line);
  if (!m) return undefined;
  return `${m[2]}% ${m[3]}${m[7] ? `, ${Number(m[7]) - Number(m[6])}/${m[7]} files checked` : ''}`;
}

/**
 * Which snapshots retention keeps: the newest of each of the last `daily` days, `weekly` ISO weeks
 * and `monthly` months that have snapshots (UTC), like restic's --keep-daily/-weekly/-monthly; and
 * always the newest one. `snapshots` are complete ones; the rest are returned to be removed.
 */
export function retention(snapshots: readonly { name: string; time: Date }[], keep: Keep): { keep: string[]; remove: string[] } {
  const newestFirst = [...snapshots].sort((a, b) => b.time.getTime() - a.time.getTime());
  const kept = new Set<string>();
  if (newestFirst[0]) kept.add(newestFirst[0].name);
  const buckets: [number, (d: Date) => string][] = [
    [keep.daily, (d) => d.toISOString().slice(0, 10)],
    [keep.weekly, isoWeek],
    [keep.monthly, (d) => d.toISOString().slice(0, 7)],
  ];
  for (const [n, bucketOf] of buckets) {
    const seen = new Set<string>();
    for (const s of newestFirst) {
      if (seen.size >= n) break;
      const b = bucketOf(s.time);
      if (seen.has(b)) continue;
      seen.add(b);
      kept.add(s.name);
    }
  }
  return { keep: newestFirst.filter((s) => kept.has(s.name)).map((s) => s.name), remove: newestFirst.filter((s) => !kept.has(s.name)).map((s) => s.name) };
}

/** The ISO 8601 week (UTC) of a time: "2026-W49". */
export function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day); // the Thursday of this week decides its year
  const year = t.getUTCFullYear();
  const week = Math.ceil(((t.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return `${year}-W${String(week).padStart(2, '0')}`;
}

/** Whether `path` is `dir` or inside it (both absolute, normalised). */
export function isInside(path: string, dir: string): boolean {
  const d = dir.replace(/\/+$/, '');
  return path === d || path.startsWith(`${d}/`) || d === '';
}
