import { EXIT, HbsError } from '../core/errors.js';
import type { Runner } from '../core/runner.js';

/** An ext4 filesystem's size, from its own superblock. */
export interface FsGeometry {
  blockCount: number;
  blockSize: number;
  blocksPerGroup: number;
  /** For what the kernel writes into the inode tables of new groups when it grows online. */
  inodesPerGroup?: number;
  inodeSize?: number;
}

export const fsBytes = (g: FsGeometry): number => g.blockCount * g.blockSize;

/** Parses `dumpe2fs -h`; undefined when a field is missing. */
export function parseDumpe2fs(text: string): FsGeometry | undefined {
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)\\s*$`, 'm').exec(text)?.[1] ?? NaN);
  const g = { blockCount: field('Block count'), blockSize: field('Block size'), blocksPerGroup: field('Blocks per group') };
  if (!Object.values(g).every((n) => Number.isSafeInteger(n) && n > 0)) return undefined;
  const [inodesPerGroup, inodeSize] = [field('Inodes per group'), field('Inode size')];
  return Number.isSafeInteger(inodesPerGroup) && Number.isSafeInteger(inodeSize) ? { ...g, inodesPerGroup, inodeSize } : g;
}

/** The filesystem's size as its superblock records it (on a mounted device or an image file). Read-only. */
export async function readGeometry(runner: Runner, device: string): Promise<FsGeometry> {
  const r = await runner.run({ argv: ['dumpe2fs', '-h', device], write: false, allowFail: true, timeoutMs: 120_000 });
  const g = r.exitCode === 0 ? parseDumpe2fs(r.stdout) : undefined;
  if (!g) {
    const why = (r.stderr.trim().split('\n').at(-1) ?? '') || `exit ${r.exitCode}`;
    throw new HbsError(`cannot read the ext4 superblock of ${device} (dumpe2fs -h): ${why}`, EXIT.failed);
  }
  return g;
}

/**
 * Whether the filesystem uses all of `bytes`: every whole block of it, or — with `tailOk` — all but
 * a tail shorter than one block group, which mke2fs and resize2fs leave off when it is too small to
 * hold a group's own metadata.
 */
export function covers(g: FsGeometry, bytes: number, tailOk: boolean): boolean {
  const blocks = Math.floor(bytes / g.blockSize);
  if (g.blockCount >= blocks) return true;
  return tailOk && blocks - g.blockCount < g.blocksPerGroup;
}
