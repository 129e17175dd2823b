import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { EXIT, HbsError } from '../core/errors.js';
import { LATEST, snapshotsDir } from '../lib/backup.js';
import { inspectStack } from '../lib/inspect.js';
import { formatSize } from '../lib/size.js';
import { listSnapshots, snapshotMeta } from '../steps/backup.js';
import { loadStack, machine, type CommandIo, type CommonFlags } from './shared.js';

/** `hbs snapshots --json` (docs/backup.md). */
export interface SnapshotsReport {
  directory: string;
  latest: string | null;
  snapshots: {
    name: string;
    time: string;
    state: 'complete' | 'partial';
    latest: boolean;
    path: string;
    /** Files in it and their apparent size, as rsync counted them when it was made (null: not recorded). */
    files: number | null;
    totalBytes: number | null;
    /** What this snapshot added: the bytes rsync copied (everything else is a hard link into the one before). */
    addedBytes: number | null;
  }[];
}

/** Lists the snapshots, oldest first: cheap (one directory listing and a small file each, no walk of the trees). */
export async function snapshotsCommand(flags: CommonFlags, io: CommandIo): Promise<SnapshotsReport> {
  const { stack } = await loadStack(flags.config);
  const m = machine(io, Boolean(flags.verbose));
  const layers = await inspectStack(m.probes, stack);
  if (layers.fs.state !== 'up' && !(layers.fs.state === 'broken' && layers.fs.mount)) {
    throw new HbsError(`the backup filesystem is not mounted: ${layers.fs.detail}`, EXIT.failed, '`hbs mount` brings it up');
  }
  const mp = stack.fs.mountPoint;
  const dir = snapshotsDir(mp);
  const latest = (await readlink(join(dir, LATEST)).catch(() => undefined)) ?? null;
  const snapshots = await Promise.all(
    (await listSnapshots(mp)).map(async (e) => {
      const meta = e.complete ? await snapshotMeta(mp, e.name) : undefined;
      return {
        name: e.name,
        time: e.time.toISOString(),
        state: e.complete ? ('complete' as const) : ('partial' as const),
        latest: e.name === latest,
        path: join(dir, e.name),
        files: meta?.files ?? null,
        totalBytes: meta?.totalBytes ?? null,
        addedBytes: meta?.bytesTransferred ?? null,
      };
    }),
  );
  return { directory: dir, latest, snapshots };
}

export function renderSnapshots(r: SnapshotsReport): string {
  if (!r.snapshots.length) return `No snapshots in ${r.directory} yet (\`hbs backup\` makes them).`;
  const rows = r.snapshots.map((s) => [
    s.name + (s.latest ? ' (latest)' : ''),
    s.state,
    s.files === null ? '?' : s.files.toLocaleString('en-US'),
    s.totalBytes === null ? '?' : formatSize(s.totalBytes),
    s.addedBytes === null ? '?' : formatSize(s.addedBytes),
  ]);
  const head = ['snapshot', 'state', 'files', 'size', 'added'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]): string => row.map((c, i) => (i >= 2 ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd();
  return [`${r.directory}:`, fmt(head), ...rows.map(fmt)].join('\n');
}
