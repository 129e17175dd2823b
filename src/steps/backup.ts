import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Action } from '../core/action.js';
import { EXIT, HbsError } from '../core/errors.js';
import { CommandError } from '../core/runner.js';
import type { Check, Step } from '../core/step.js';
import {
  DELETING,
  LATEST,
  META_DIR,
  MIN_BOX_FREE,
  PARTIAL,
  parseRsyncStats,
  parseSnapshotName,
  progressNote,
  retention,
  rsyncArgv,
  rsyncOutcome,
  snapshotEntries,
  snapshotsDir,
  type BackupConfig,
  type Keep,
  type LastBackup,
  type RsyncStats,
  type SnapshotEntry,
} from '../lib/backup.js';
import { serializeConfig, type Config } from '../lib/config.js';
import { inspectStack, loopUnder } from '../lib/inspect.js';
import { blockingLock, readLock } from '../lib/lock.js';
import { formatSize } from '../lib/size.js';
import type { StepCtx } from './context.js';

/** What one backup run decides and learns, step by step. */
export interface BackupRun {
  sources: readonly string[];
  /** Every exclude: the defaults, then the person's. */
  excludes: readonly string[];
  excludeFrom: string | null;
  keep: Keep | null;
  /** The snapshot this run makes (its final name). */
  name: string;
  /** The directory rsync writes: this run's `.partial`, or the one a killed run left (resumed). */
  partial?: string;
  /** A .partial left by an earlier run that this run resumes. */
  resumed?: string;
  /** The newest complete snapshot before this run (rsync --link-dest). */
  previous?: string;
  stats?: RsyncStats;
  warning?: string;
  /** Snapshots (and leftover .partial directories) retention removed. */
  removed: string[];
}

export interface BackupCtx extends StepCtx {
  cfg: Config;
  backup: BackupRun;
}

const FS_STEPS = ['box-mount', 'crypt-open', 'fs-mount', 'loop-buffered'];
/** A child that gets SIGKILL when hbs goes, however it goes (prctl PR_SET_PDEATHSIG, kept across exec). */
export const DIES_WITH_HBS = ['setpriv', '--pdeathsig', 'KILL', '--'] as const;

/** What is in `<mount point>/snapshots`, oldest first; [] when there is no such directory yet. */
export async function listSnapshots(mountPoint: string): Promise<SnapshotEntry[]> {
  const names = await readdir(snapshotsDir(mountPoint)).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
  return snapshotEntries(names);
}

/** The figures recorded when a snapshot was completed (files, bytes), if any. */
export async function snapshotMeta(mountPoint: string, name: string): Promise<(RsyncStats & { durationMs?: number }) | undefined> {
  try {
    return JSON.parse(await readFile(join(snapshotsDir(mountPoint), META_DIR, `${name}.json`), 'utf8')) as RsyncStats;
  } catch {
    return undefined;
  }
}

/**
 * Everything that makes writing into the mount point safe, as a list of problems ([] = healthy): the
 * hbs filesystem (our image, ext4) mounted there and answering, writable, this machine's lock, no
 * errors in the superblock or the kernel log, room on the box (for about as much as the last
 * snapshot added, when that is known).
 */
export async function healthProblems(ctx: StepCtx, o: { expectedBytes?: number } = {}): Promise<string[]> {
  const s = ctx.stack;
  const layers = await inspectStack(ctx.probe, s);
  if (layers.box.state !== 'up') return [`the box: ${layers.box.detail}`];
  if (layers.fs.state !== 'up' || !layers.fs.device || !layers.fs.mount) return [`the filesystem: ${layers.fs.detail}`];
  const problems: string[] = [];
  if (layers.fs.mount.fstype !== 'ext4') problems.push(`${s.fs.mountPoint} is ${layers.fs.mount.fstype}, not ext4`);
  const lock = await readLock(s.lockPath, await ctx.deps.machineId());
  if (lock.state !== 'ours' || blockingLock(lock, s.configPath)) problems.push(`the lock ${s.lockPath} is not this machine's (${lock.state})`);
  const sb = await ctx.probe.superblock(layers.fs.device).catch((err: Error) => err);
  if (sb instanceof Error) problems.push(sb.message);
  else if (sb.errorCount > 0 || /error/i.test(sb.state)) problems.push(`the superblock records ${sb.errorCount} errors (state: ${sb.state})`);
  const loop = await loopUnder(ctx.probe, s, layers.fs.device);
  const logged = s.fs.uuid ? await ctx.probe.kernelErrors([layers.fs.device, ...(loop && loop !== layers.fs.device ? [loop] : [])], s.fs.uuid) : [];
  if (logged.length) problems.push(`the kernel logged ${logged.length} write errors since the mount: ${logged.at(-1)}`);
  const need = MIN_BOX_FREE + (o.expectedBytes ?? 0);
  if (layers.box.freeBytes !== undefined && layers.box.freeBytes < need) {
    problems.push(`the box has only ${formatSize(layers.box.freeBytes)} free (a backup needs at least ${formatSize(MIN_BOX_FREE)}${o.expectedBytes ? ` plus the ${formatSize(o.expectedBytes)} the last snapshot added` : ''})`);
  }
  const usage = await ctx.probe.usage(s.fs.mountPoint);
  if (usage && usage.free <= 0) problems.push(`the filesystem at ${s.fs.mountPoint} is full`);
  return problems;
}

const unhealthy = (when: string, problems: string[], hint: string): HbsError => new HbsError(`${when}: ${problems.join('; ')}`, EXIT.failed, hint);

/** The backup settings kept in the config (--save, the first run, --install-timer); the rest of the config as it is. */
export function saveSettingsStep(settings: BackupConfig | undefined): Step<BackupCtx> {
  return {
    id: 'backup-settings',
    title: 'Backup settings in the config',
    check(ctx) {
      if (!settings) return Promise.resolve({ done: true, detail: 'as kept in the config' });
      if (JSON.stringify(ctx.cfg.backup) === JSON.stringify(settings)) return Promise.resolve({ done: true, detail: 'unchanged' });
      return Promise.resolve({ done: false, detail: `${settings.sources.join(', ')} kept in ${ctx.stack.configPath}` });
    },
    plan(ctx) {
      const content = serializeConfig({ ...ctx.cfg, backup: settings });
      return Promise.resolve([{ kind: 'write', path: ctx.stack.configPath, content, mode: 0o600, how: 'atomic', show: true, what: 'the config, with the backup settings' }]);
    },
  };
}

/** Before rsync writes a byte: the stack is healthy (see healthProblems); otherwise the run stops with nothing written. */
export const healthBeforeStep: Step<BackupCtx> = {
  id: 'backup-health',
  title: 'The backup filesystem is healthy',
  after: FS_STEPS,
  expect: () => Promise.resolve<Check>({ done: true, detail: 'checked once the stack is up, before rsync writes anything' }),
  async check(ctx) {
    const last = (await listSnapshots(ctx.stack.fs.mountPoint)).filter((e) => e.complete).at(-1);
    const added = last ? (await snapshotMeta(ctx.stack.fs.mountPoint, last.name))?.bytesTransferred : undefined;
    const problems = await healthProblems(ctx, { expectedBytes: added ?? undefined });
    if (problems.length) throw unhealthy('not backing up', problems, '`hbs status` shows each layer; `hbs mount` repairs a broken stack; nothing was written');
    return { done: true, detail: `${ctx.stack.fs.mountPoint}: ext4 of ${ctx.stack.image.path}, writable, no errors, lock ours` };
  },
  plan: () => Promise.resolve([]),
};

/** rsync into the .partial directory (a new one, or the one a killed run left), hard-linking what did not change. */
export const rsyncStep: Step<BackupCtx> = {
  id: 'backup-rsync',
  title: 'Copy the sources (rsync)',
  after: FS_STEPS,
  check: () => Promise.resolve({ done: false }),
  async plan(ctx, pending = []) {
    const b = ctx.backup;
    const dir = snapshotsDir(ctx.stack.fs.mountPoint);
    // While the stack is only planned (dry-run), the bare mount point says nothing about the snapshots.
    const entries = pending.length ? [] : await listSnapshots(ctx.stack.fs.mountPoint);
    if (entries.some((e) => e.name === b.name)) throw new HbsError(`a snapshot named ${b.name} exists already`, EXIT.failed, 'wait a second and run again');
    const leftover = entries.filter((e) => !e.complete).at(-1);
    const previous = entries.filter((e) => e.complete).at(-1);
    b.resumed = leftover?.name;
    b.partial = join(dir, leftover?.name ?? `${b.name}${PARTIAL}`);
    b.previous = previous?.name;
    if (leftover) ctx.reporter.info(`Resuming ${leftover.name} (left by a run that did not finish): rsync only adds what is missing.`);
    // setpriv --pdeathsig: rsync dies with hbs (kill -9 included) instead of writing on, unlocked, while the next run starts.
    const argv = [...DIES_WITH_HBS, ...rsyncArgv({ sources: b.sources, excludes: b.excludes, excludeFrom: b.excludeFrom, dest: b.partial, linkDest: previous ? join(dir, previous.name) : null })];
    const onStdoutLine = (line: string): void => {
      const note = progressNote(line);
      if (note) ctx.reporter.progress?.(note);
    };
    return [
      { kind: 'mkdir', path: dir, mode: 0o700 },
      {
        kind: 'run',
        cmd: { argv, allowFail: true, onStdoutLine },
        then(r) {
          b.stats = parseRsyncStats(r.stdout);
          const o = rsyncOutcome(r.exitCode);
          if (o.result === 'failed') throw new HbsError(`${o.message}; the snapshot stays ${b.partial} and ${LATEST} still names ${b.previous ?? 'nothing'}`, EXIT.failed, 'the next run resumes it', new CommandError(argv.join(' '), r).tail());
          if (o.result === 'warning') {
            b.warning = o.message;
            ctx.reporter.warn(o.message);
          }
        },
      },
    ];
  },
};

/** Everything on disk (box included), then the filesystem checked again: a full box or a dropped link shows here, not later. */
export const flushStep: Step<BackupCtx> = {
  id: 'backup-flush',
  title: 'Write it all to the box and check again',
  check: () => Promise.resolve({ done: false }),
  plan: (ctx) =>
    Promise.resolve([
      {
        kind: 'run',
        cmd: { argv: ['sync', '-f', ctx.stack.fs.mountPoint], allowFail: true },
        then(r) {
          // syncfs reports write-back errors (EIO) since Linux 5.8.
          if (r.exitCode !== 0) throw new HbsError(`sync -f ${ctx.stack.fs.mountPoint} failed: ${r.stderr.trim()}; the snapshot stays ${ctx.backup.partial}`, EXIT.failed, '`hbs status` names the cause');
        },
      },
    ]),
  async verify(ctx) {
    const problems = await healthProblems(ctx);
    if (problems.length) {
      throw unhealthy(`the snapshot is not complete (it stays ${ctx.backup.partial}; ${LATEST} still names ${ctx.backup.previous ?? 'nothing'})`, problems, '`hbs status` names the cause; free space on the box or fix the link, `hbs umount` + `hbs mount` (e2fsck), then back up again');
    }
  },
};

/** The .partial becomes the snapshot (one rename), its figures are recorded, and `latest` moves to it (symlink + rename: never missing). */
export const finishStep: Step<BackupCtx> = {
  id: 'backup-finish',
  title: 'Complete the snapshot',
  check: () => Promise.resolve({ done: false }),
  plan(ctx) {
    const b = ctx.backup;
    const dir = snapshotsDir(ctx.stack.fs.mountPoint);
    const meta = { name: b.name, ...(b.stats ?? {}) };
    return Promise.resolve<Action[]>([
      { kind: 'run', cmd: { argv: ['mv', '--no-target-directory', b.partial!, join(dir, b.name)] } },
      { kind: 'mkdir', path: join(dir, META_DIR), mode: 0o700 },
      // The figures are known only after rsync ran (a dry-run shows the file, not its content).
      { kind: 'write', path: join(dir, META_DIR, `${b.name}.json`), content: JSON.stringify(meta) + '\n', mode: 0o600, how: 'atomic', what: 'its figures (files, bytes)' },
      { kind: 'symlink', path: join(dir, LATEST), target: b.name, what: 'the newest complete snapshot' },
    ]);
  },
  async verify(ctx) {
    const target = await readlink(join(snapshotsDir(ctx.stack.fs.mountPoint), LATEST));
    if (target !== ctx.backup.name) throw new HbsError(`${LATEST} names ${target}, not ${ctx.backup.name}`);
  },
};

/** After a complete snapshot only: old snapshots by --keep-*, and .partial directories no run resumes any more. */
export const retentionStep: Step<BackupCtx> = {
  id: 'backup-retention',
  title: 'Retention',
  async check(ctx) {
    const r = await toRemove(ctx);
    return r.length ? { done: false, detail: `removed ${r.join(', ')}` } : { done: true, detail: ctx.backup.keep ? 'nothing to remove' : 'keeping every snapshot (no --keep-* set)' };
  },
  async plan(ctx) {
    const dir = snapshotsDir(ctx.stack.fs.mountPoint);
    const names = await toRemove(ctx);
    ctx.backup.removed = names.filter((n) => !n.endsWith(DELETING));
    return names.flatMap<Action>((n) => {
      if (n.endsWith(DELETING) || n.endsWith(PARTIAL)) return [{ kind: 'remove', path: join(dir, n), dir: 'tree', what: n.endsWith(PARTIAL) ? 'an unfinished snapshot no run resumes' : 'what a removal cut off left' }];
      // Renamed first: a removal cut off halfway leaves a .deleting (removed by the next run), never a snapshot that looks complete.
      return [
        { kind: 'run', cmd: { argv: ['mv', '--no-target-directory', join(dir, n), join(dir, `${n}${DELETING}`)] } },
        { kind: 'remove', path: join(dir, `${n}${DELETING}`), dir: 'tree', what: 'an old snapshot' },
        { kind: 'remove', path: join(dir, META_DIR, `${n}.json`) },
      ];
    });
  },
};

async function toRemove(ctx: BackupCtx): Promise<string[]> {
  const b = ctx.backup;
  const entries = (await listSnapshots(ctx.stack.fs.mountPoint)).filter((e) => e.name !== b.resumed && e.name !== `${b.name}${PARTIAL}`);
  const complete = entries.filter((e) => e.complete && e.name !== b.name);
  // This run's snapshot counts as the newest (in a dry-run it is not there yet).
  const all = [...complete, { name: b.name, time: parseSnapshotName(b.name) ?? ctx.deps.now() }];
  const old = b.keep ? retention(all, b.keep).remove : [];
  const cutOff = (await readdir(snapshotsDir(ctx.stack.fs.mountPoint)).catch(() => [] as string[])).filter((n) => n.endsWith(DELETING));
  return [...cutOff, ...entries.filter((e) => !e.complete).map((e) => e.name), ...old];
}

/** The record of this run next to the config (`hbs status` shows it): written on success and on failure. */
export function recordStep(path: string, record: LastBackup): Step<StepCtx> {
  return {
    id: 'backup-record',
    title: 'Record the run',
    check: () => Promise.resolve({ done: false, detail: path }),
    plan: () => Promise.resolve([{ kind: 'write', path, content: JSON.stringify(record, null, 2) + '\n', mode: 0o644, how: 'atomic', what: 'the last backup, for hbs status' }]),
  };
}
