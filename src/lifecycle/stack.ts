import { CommandError, type Runner } from '../core/runner.js';
import { imagePath, type Config } from '../lib/config.js';
import { loopBackingFile, mountAt } from '../lib/mounts.js';
import { isBoxSource, sshfsSource } from '../lib/ssh.js';
import { spaceOf } from '../steps/box-space.js';
import { mappingActive, mapperPath } from '../lib/luks.js';
import { connOf } from './context.js';

export type LayerState = 'up' | 'down' | 'broken' | 'conflict';

export interface BoxLayer {
  state: LayerState;
  detail: string;
  totalBytes?: number;
  freeBytes?: number;
}

export interface FsLayer {
  state: LayerState;
  detail: string;
  device?: string;
  readOnly?: boolean;
}

export interface StackState {
  box: BoxLayer;
  /** Loop devices backed by the image, wherever they are mounted. */
  loops: string[];
  fs: FsLayer;
}

const PROBE_TIMEOUT = 30_000;

/** The box layer: mounted from the right source, and answering (a dead sshfs gives ENOTCONN). */
export async function inspectBox(runner: Runner, cfg: Config): Promise<BoxLayer> {
  const source = sshfsSource(connOf(cfg));
  const m = await mountAt(runner, cfg.boxMount);
  if (!m) return { state: 'down', detail: `${cfg.boxMount}: not mounted` };
  if (m.fstype !== 'fuse.sshfs' || !isBoxSource(m.source, connOf(cfg))) {
    return { state: 'conflict', detail: `${cfg.boxMount} holds ${m.source} (${m.fstype}), not ${source}` };
  }
  try {
    const space = await spaceOf(runner, cfg.boxMount, PROBE_TIMEOUT);
    return { state: 'up', detail: `${source} at ${cfg.boxMount}`, ...space };
  } catch (err) {
    // A failed stat's reason ("Transport endpoint is not connected") is in its stderr, not its message.
    const why = err instanceof CommandError ? err.tail(1) || err.message : err instanceof Error ? err.message.split('\n').pop() : String(err);
    return { state: 'broken', detail: `${cfg.boxMount} is mounted but does not answer (${why})` };
  }
}

/** Loop devices whose backing file is the image. Read-only. */
export async function loopsFor(runner: Runner, image: string): Promise<string[]> {
  const r = await runner.run({ argv: ['losetup', '--list', '--json', '--output', 'NAME,BACK-FILE'], write: false, allowFail: true });
  if (r.exitCode !== 0 || !r.stdout.trim()) return [];
  const devs = (JSON.parse(r.stdout) as { loopdevices?: { name: string; 'back-file': string | null }[] }).loopdevices ?? [];
  return devs.filter((d) => (d['back-file'] ?? '').replace(/ \(deleted\)$/, '') === image).map((d) => d.name);
}

/** The filesystem layer: the image mounted at the mount point, readable, and not forced read-only. */
export async function inspectFs(runner: Runner, cfg: Config, box: BoxLayer): Promise<FsLayer> {
  const image = imagePath(cfg);
  const m = await mountAt(runner, cfg.filesystem.mountPoint);
  if (!m) return { state: 'down', detail: `${cfg.filesystem.mountPoint}: not mounted` };
  const backing = cfg.encryption
    ? m.source === mapperPath(cfg.encryption.mapperName) && (await mappingActive(runner, cfg.encryption.mapperName))?.backing === image
      ? image
      : undefined
    : m.source.startsWith('/dev/loop')
      ? await loopBackingFile(runner, m.source)
      : undefined;
  if (backing !== image) {
    return { state: 'conflict', detail: `${cfg.filesystem.mountPoint} holds ${backing ?? m.source} (${m.fstype}), not ${image}` };
  }
  const readOnly = m.options.split(',').includes('ro');
  if (box.state !== 'up') return { state: 'broken', device: m.source, readOnly, detail: `mounted from ${m.source}, but the box under it is ${box.state}` };
  // Read a block straight from the loop device (no page cache): a stale sshfs handle fails here.
  const read = await runner.run({
    argv: ['dd', `if=${m.source}`, 'of=/dev/null', 'bs=4096', 'count=1', 'iflag=direct', 'status=none'],
    write: false,
    allowFail: true,
    timeoutMs: PROBE_TIMEOUT,
  });
  if (read.exitCode !== 0) return { state: 'broken', device: m.source, readOnly, detail: `reading ${m.source} fails: ${read.stderr.trim() || 'timeout'}` };
  if (readOnly) return { state: 'broken', device: m.source, readOnly, detail: `${cfg.filesystem.mountPoint} went read-only (ext4 saw I/O errors)` };
  return { state: 'up', device: m.source, readOnly, detail: `${image} at ${cfg.filesystem.mountPoint} (${m.source})` };
}

export async function inspectStack(runner: Runner, cfg: Config): Promise<StackState> {
  const box = await inspectBox(runner, cfg);
  const loops = box.state === 'down' ? [] : await loopsFor(runner, imagePath(cfg));
  const fs = await inspectFs(runner, cfg, box);
  return { box, loops, fs };
}
