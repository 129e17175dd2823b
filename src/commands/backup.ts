import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { EXIT, HbsError, UsageError } from '../core/errors.js';
import { MemoryReporter } from '../core/reporter.js';
import {
  backupLockPath,
  defaultExcludes,
  isInside,
  lastBackupPath,
  snapshotName,
  type BackupConfig,
  type Keep,
  type LastBackup,
} from '../lib/backup.js';
import type { Config } from '../lib/config.js';
import { tryFlock } from '../lib/flock.js';
import { inspectStack } from '../lib/inspect.js';
import { keySourceFor } from '../lib/keys.js';
import type { Probes } from '../lib/probes.js';
import { formatSize } from '../lib/size.js';
import type { Stack } from '../lib/stack.js';
import { DEFAULT_ON_CALENDAR, DEFAULT_SYSTEMD_DIR } from '../lib/systemd.js';
import { flushStep, finishStep, healthBeforeStep, recordStep, retentionStep, rsyncStep, saveSettingsStep, type BackupCtx } from '../steps/backup.js';
import { timerStep } from '../steps/backup-timer.js';
import { isBroken, upSteps } from '../steps/stack.js';
import { DRY_RUN_DONE, DRY_RUN_INTRO, executor, loadStack, machine, requireReady, selfCommand, stepCtx, type CommandIo, type CommonFlags } from './shared.js';

export interface BackupFlags extends CommonFlags {
  source?: string[];
  exclude?: string[];
  excludeFrom?: string;
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
  save?: boolean;
  json?: boolean;
  installTimer?: boolean;
  onCalendar?: string;
  systemdDir?: string;
}

/** What `hbs backup --json` prints (docs/backup.md). */
export interface BackupResult {
  result: 'ok' | 'warning' | 'failed' | 'dry-run' | 'timer-installed';
  exitCode: number;
  snapshot: string | null;
  previous: string | null;
  resumed: string | null;
  path: string | null;
  warning: string | null;
  durationMs: number;
  files: number | null;
  filesTransferred: number | null;
  totalBytes: number | null;
  bytesTransferred: number | null;
  bytesSent: number | null;
  removed: string[];
  timer?: { service: string; timer: string; dir: string; onCalendar: string; enabled: boolean };
}

const HINT = '`hbs status` shows each layer; a snapshot that was begun stays .partial (`latest` names the last good one) and the next `hbs backup` resumes it';

/** A retention count: a whole number 0–100000. */
function keepCount(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) > 100_000) throw new UsageError(`${flag} ${JSON.stringify(value)}: not a whole number from 0 to 100000`);
  return Number(value);
}

/**
 * The settings of this run from the flags and the config, checked before anything happens (a bad
 * value exits 2 naming it). `save`: what goes into the config (--save, --install-timer, or a config
 * without backup settings yet), else undefined.
 */
export async function resolveSettings(
  flags: BackupFlags,
  cfg: Config,
  stack: Stack,
  timer?: { dir: string; onCalendar: string },
): Promise<{ settings: BackupConfig; save: BackupConfig | undefined }> {
  const kept = cfg.backup;
  const rawSources = flags.source?.length ? flags.source : kept?.sources;
  if (!rawSources?.length) throw new UsageError('nothing to back up: give --source PATH (absolute; repeat it for more)', 'the sources are kept in the config for later runs (see `hbs backup --help`)');
  const sources: string[] = [];
  for (const raw of rawSources) {
    if (!raw.startsWith('/')) throw new UsageError(`--source ${JSON.stringify(raw)}: not an absolute path`);
    const p = resolve(raw);
    for (const [dir, what] of [
      [stack.fs.mountPoint, 'the backup filesystem (mount point)'],
      [stack.boxMount, 'the box mount'],
    ] as const) {
      if (isInside(p, dir)) throw new UsageError(`--source ${raw}: inside ${what} ${dir}; a backup cannot hold itself`);
    }
    const st = await stat(p).catch(() => undefined);
    if (!st) throw new UsageError(`--source ${raw}: no such file or directory`);
    if (!sources.includes(p)) sources.push(p);
  }
  const excludes = flags.exclude ?? kept?.excludes ?? [];
  for (const e of excludes) if (e.trim() === '' || /[\n\r]/.test(e)) throw new UsageError(`--exclude ${JSON.stringify(e)}: an empty pattern or one with a line break`);
  let excludeFrom = kept?.excludeFrom ?? null;
  if (flags.excludeFrom !== undefined) {
    excludeFrom = resolve(flags.excludeFrom);
    const st = await stat(excludeFrom).catch(() => undefined);
    if (!st?.isFile()) throw new UsageError(`--exclude-from ${flags.excludeFrom}: not a readable file`);
  }
  const counts = { daily: keepCount('--keep-daily', flags.keepDaily), weekly: keepCount('--keep-weekly', flags.keepWeekly), monthly: keepCount('--keep-monthly', flags.keepMonthly) };
  const given = Object.values(counts).some((n) => n !== undefined);
  const keep: Keep | null = given ? { daily: counts.daily ?? 0, weekly: counts.weekly ?? 0, monthly: counts.monthly ?? 0 } : (kept?.keep ?? null);
  const settings: BackupConfig = { sources, excludes, excludeFrom, keep, timer: flags.installTimer && timer ? { dir: timer.dir, onCalendar: timer.onCalendar } : (kept?.timer ?? null) };
  const save = flags.save || flags.installTimer || !kept ? settings : undefined;
  return { settings, save };
}

function emptyResult(start: number, now: number): BackupResult {
  return { result: 'ok', exitCode: EXIT.ok, snapshot: null, previous: null, resumed: null, path: null, warning: null, durationMs: now - start, files: null, filesTransferred: null, totalBytes: null, bytesTransferred: null, bytesSent: null, removed: [] };
}

/** Where the timer units go and whether systemd runs them here. */
async function timerTarget(flags: BackupFlags, probe: Probes): Promise<{ dir: string; live: boolean; onCalendar: string }> {
  if (!flags.installTimer) {
    for (const [flag, v] of [['--on-calendar', flags.onCalendar], ['--systemd-dir', flags.systemdDir]] as const) if (v !== undefined) throw new UsageError(`${flag} goes with --install-timer`);
  }
  const onCalendar = flags.onCalendar ?? DEFAULT_ON_CALENDAR;
  if (onCalendar.trim() === '' || /[\n\r]/.test(onCalendar)) throw new UsageError(`--on-calendar ${JSON.stringify(onCalendar)}: not a calendar spec`);
  const c = await probe.calendar(onCalendar);
  if (c && !c.ok) throw new UsageError(`--on-calendar ${JSON.stringify(onCalendar)}: systemd does not take it (${c.why})`, 'see `man systemd.time`, e.g. daily, "*-*-* 02:30", Mon..Fri 22:00');
  if (flags.systemdDir === '') throw new UsageError('--systemd-dir needs a path');
  const dir = resolve(flags.systemdDir ?? DEFAULT_SYSTEMD_DIR);
  return { dir, live: dir === DEFAULT_SYSTEMD_DIR && (await probe.systemdRunning()), onCalendar };
}

/**
 * One backup: (the settings kept) → the stack up as `hbs mount` brings it → healthy? → rsync into a
 * .partial → sync, healthy still? → rename, `latest` → retention; the run recorded next to the
 * config, failed or not. Two runs for one config never overlap (a flock beside the config). With
 * --install-timer: the settings and the systemd units instead of a run.
 */
export async function backupCommand(flags: BackupFlags, io0: CommandIo): Promise<BackupResult> {
  const io = flags.json ? { ...io0, reporter: new MemoryReporter() } : io0;
  const r = io.reporter;
  const { cfg, stack } = await loadStack(flags.config);
  await requireReady('backup', Boolean(stack.crypt), io);
  const m = machine(io, Boolean(flags.verbose));
  const start = m.deps.now();
  const timer = await timerTarget(flags, m.probes);
  const { settings, save } = await resolveSettings(flags, cfg, stack, timer);
  const name = snapshotName(start);
  const key = stack.crypt
    ? keySourceFor(stack.image.path, {}, { unattendedKeyFile: stack.crypt.unattendedKeyFile, prompter: undefined, readStdinBytes: io.readStdinBytes, defer: Boolean(flags.dryRun) })
    : undefined;
  const ctx: BackupCtx = {
    ...stepCtx(stack, io, m, key),
    cfg,
    backup: { sources: settings.sources, excludes: [...defaultExcludes({ mountPoint: stack.fs.mountPoint, boxMount: stack.boxMount }, settings.sources), ...settings.excludes], excludeFrom: settings.excludeFrom, keep: settings.keep, name, removed: [] },
  };
  const exec = executor(io, m.runner, flags, HINT, m.deps);
  if (flags.dryRun) r.info(DRY_RUN_INTRO);

  if (flags.installTimer) {
    const t = timerStep({ ...timer, hbs: selfCommand(io), configPath: stack.configPath, bootUnit: stack.systemdDir !== null });
    await exec.run(ctx, [saveSettingsStep(save), t.step]);
    r.info(flags.dryRun ? DRY_RUN_DONE : `\n${t.names.timer} ${timer.live ? 'is enabled and started' : `is in ${timer.dir} (enabled by its link in timers.target.wants)`}: \`hbs backup\` runs ${timer.onCalendar}, give or take an hour.`);
    return { ...emptyResult(start.getTime(), m.deps.now().getTime()), result: flags.dryRun ? 'dry-run' : 'timer-installed', timer: { ...t.names, dir: timer.dir, onCalendar: timer.onCalendar, enabled: true } };
  }

  const lockPath = backupLockPath(stack.configPath);
  const held = await tryFlock(lockPath);
  if (!held) throw new HbsError(`another hbs backup is running for ${stack.configPath} (it holds ${lockPath}); not starting a second one`, EXIT.busy, 'wait for it to finish (`hbs status` shows the last backup), then run again');
  const record = (rec: Omit<LastBackup, 'time'>): Promise<unknown> => exec.run(ctx, [recordStep(lastBackupPath(stack.configPath), { time: start.toISOString(), ...rec })]);
  try {
    const layers = await inspectStack(ctx.probe, stack);
    for (const layer of [layers.box, layers.fs]) if (layer.state === 'conflict') throw new HbsError(`not backing up: ${layer.detail}`, EXIT.failed, 'hbs writes only into its own filesystem; unmount what is there, or fix the config');
    if (isBroken(layers)) throw new HbsError(`not backing up: the stack is broken (${layers.fs.state === 'broken' ? layers.fs.detail : layers.box.detail})`, EXIT.failed, '`hbs mount` repairs it (with e2fsck); then back up again');
    try {
      await exec.run(ctx, [saveSettingsStep(save), ...upSteps(stack), healthBeforeStep, rsyncStep, flushStep, finishStep, retentionStep]);
    } catch (err) {
      const code = err instanceof HbsError ? err.exitCode : EXIT.failed;
      const stats = ctx.backup.stats;
      await record({ result: 'failed', snapshot: null, exitCode: code, message: err instanceof Error ? err.message : String(err), durationMs: m.deps.now().getTime() - start.getTime(), files: stats?.files ?? null, bytesTransferred: stats?.bytesTransferred ?? null }).catch(() => undefined);
      throw err;
    }
    const b = ctx.backup;
    const result: BackupResult = {
      ...emptyResult(start.getTime(), m.deps.now().getTime()),
      result: flags.dryRun ? 'dry-run' : b.warning ? 'warning' : 'ok',
      snapshot: name,
      previous: b.previous ?? null,
      resumed: b.resumed ?? null,
      path: `${stack.fs.mountPoint}/snapshots/${name}`,
      warning: b.warning ?? null,
      files: b.stats?.files ?? null,
      filesTransferred: b.stats?.filesTransferred ?? null,
      totalBytes: b.stats?.totalBytes ?? null,
      bytesTransferred: b.stats?.bytesTransferred ?? null,
      bytesSent: b.stats?.bytesSent ?? null,
      removed: b.removed,
    };
    await record({ result: b.warning ? 'warning' : 'ok', snapshot: name, exitCode: EXIT.ok, message: b.warning ?? null, durationMs: result.durationMs, files: result.files, bytesTransferred: result.bytesTransferred });
    if (flags.dryRun) r.info(DRY_RUN_DONE);
    else for (const line of summary(result)) r.info(line);
    return result;
  } finally {
    await held.release();
  }
}

const n = (v: number | null): string => (v === null ? '?' : v.toLocaleString('en-US'));
const sz = (v: number | null): string => (v === null ? '?' : formatSize(v));

/** The one-screen summary of a run. */
export function summary(x: BackupResult): string[] {
  return [
    '',
    `Snapshot ${x.snapshot} ${x.result === 'warning' ? 'complete, with a warning' : 'complete'}: ${x.path}`,
    `  files      ${n(x.files)} (${n(x.filesTransferred)} copied${x.previous ? `, the rest hard links into ${x.previous}` : ': the first snapshot'})`,
    `  data       ${sz(x.totalBytes)} in the snapshot, ${sz(x.bytesTransferred)} new, ${sz(x.bytesSent)} sent by rsync`,
    `  took       ${(x.durationMs / 1000).toFixed(1)} s${x.resumed ? ` (resumed ${x.resumed})` : ''}`,
    ...(x.removed.length ? [`  removed    ${x.removed.join(', ')}`] : []),
    ...(x.warning ? [`  warning    ${x.warning}`] : []),
    `Restore: rsync -aHAX --numeric-ids ${x.path}/PATH /PATH (see docs/backup.md).`,
  ];
}
