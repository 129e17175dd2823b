/** ext4 inside the image: how hbs formats it, and what its superblock says. */

export const FS_LABEL = 'hbs-backup';

/**
 * meta_bg without resize_inode: the group descriptors live in meta block groups (each descriptor
 * block kept three times) instead of a whole descriptor table — plus the blocks reserved for growing
 * it — copied into every backup superblock group. Those copies are most of what mkfs writes at the
 * larger box sizes, bytes that cross the link and cost quota (measured, e2fsprogs 1.47.0, a sparse
 * file: 15 TiB 218 → 53 MiB; 1 TiB 15.7 → 3.7 MiB; an offline grow 3 → 100 GiB +0.5 MiB). Online
 * resize keeps working (the kernel's meta_bg_resize). sparse_super2 saves as much at 15 TiB, but no
 * kernel grows it online ("kernel does not support online resize with sparse_super2", 6.18): not used.
 */
export const FEATURES = ['meta_bg', '^resize_inode'] as const;

/**
 * How to format with the fewest bytes written to the box. A fresh sparse file reads as zeros, so
 * e2fsprogs ≥ 1.47 may skip zeroing inode tables and journal; older ones defer it (lazy init) and
 * the mount must then not start the background zeroing (noinit_itable). noinit_itable with 1.47 too:
 * the block groups a later `hbs grow` adds have their inode tables in the file's new hole (zeros
 * already), but resize2fs does not mark them zeroed, so ext4lazyinit would write ~16 MiB of zeros
 * per GiB added across the network (measured: 1.6 GiB for 100 → 200 GiB).
 */
export function mkfsTuning(version: readonly number[]): { extended: string[]; mountOptions: string[] } {
  const [major = 0, minor = 0] = version;
  if (major > 1 || (major === 1 && minor >= 47)) {
    return { extended: ['assume_storage_prezeroed=1', 'nodiscard'], mountOptions: ['noinit_itable'] };
  }
  return { extended: ['lazy_itable_init=1', 'lazy_journal_init=1', 'nodiscard'], mountOptions: ['noinit_itable'] };
}

/**
 * Inside LUKS a fresh mapping reads as noise, not zeros: assume_storage_prezeroed would be a lie.
 * Lazy init instead (nothing zeroed at mkfs) and noinit_itable at mount (no background zeroing):
 * every zero written through dm-crypt is ciphertext and costs quota on the box.
 */
export const LUKS_TUNING = { extended: ['lazy_itable_init=1', 'lazy_journal_init=1', 'nodiscard'], mountOptions: ['noinit_itable'] } as const;

/** An ext4 filesystem's size, from its own superblock. */
export interface FsGeometry {
  blockCount: number;
  blockSize: number;
  blocksPerGroup: number;
  /** For what the kernel writes into the inode tables of new groups when it grows online. */
  inodesPerGroup?: number;
  inodeSize?: number;
}

/** What the superblock says about the filesystem's health (dumpe2fs -h). */
export interface Superblock extends FsGeometry {
  uuid?: string;
  /** "clean", "not clean", "clean with errors", … */
  state: string;
  /** Errors the kernel recorded (FS Error count); 0 when none. */
  errorCount: number;
  /** The journal holds transactions not yet written home: the filesystem was not unmounted cleanly. */
  needsRecovery: boolean;
  /** What the kernel recorded of the first and last error (where and when), when there were any. */
  firstError?: { time?: string; function?: string; err?: string };
  lastError?: { time?: string; function?: string; err?: string };
  /** What only a mount or an e2fsck changes (dumpe2fs's text, read with TZ=UTC). */
  history?: { mountCount?: number; lastMount?: string; lastChecked?: string };
}

export const fsBytes = (g: FsGeometry): number => g.blockCount * g.blockSize;

/** Parses `dumpe2fs -h`; undefined when a size field is missing. */
export function parseDumpe2fs(text: string): Superblock | undefined {
  const raw = (name: string): string | undefined => new RegExp(`^${name}:\\s+(.*?)\\s*$`, 'm').exec(text)?.[1];
  const num = (name: string): number => Number(raw(name) ?? NaN);
  const g = { blockCount: num('Block count'), blockSize: num('Block size'), blocksPerGroup: num('Blocks per group') };
  if (!Object.values(g).every((n) => Number.isSafeInteger(n) && n > 0)) return undefined;
  const [inodesPerGroup, inodeSize] = [num('Inodes per group'), num('Inode size')];
  const features = (raw('Filesystem features') ?? '').split(/\s+/);
  return {
    ...g,
    ...(Number.isSafeInteger(inodesPerGroup) && Number.isSafeInteger(inodeSize) ? { inodesPerGroup, inodeSize } : {}),
    uuid: raw('Filesystem UUID'),
    state: raw('Filesystem state') ?? 'unknown',
    errorCount: Number(raw('FS Error count') ?? 0) || 0,
    needsRecovery: features.includes('needs_recovery'),
    ...errorInfo('First', raw),
    ...errorInfo('Last', raw),
    ...historyOf(raw, num),
  };
}

function historyOf(raw: (name: string) => string | undefined, num: (name: string) => number): Pick<Superblock, 'history'> {
  const h = {
    ...(Number.isSafeInteger(num('Mount count')) ? { mountCount: num('Mount count') } : {}),
    ...(raw('Last mount time') !== undefined ? { lastMount: raw('Last mount time') } : {}),
    ...(raw('Last checked') !== undefined ? { lastChecked: raw('Last checked') } : {}),
  };
  return Object.keys(h).length ? { history: h } : {};
}

function errorInfo(which: 'First' | 'Last', raw: (name: string) => string | undefined): Partial<Pick<Superblock, 'firstError' | 'lastError'>> {
  const e = { time: raw(`${which} error time`), function: raw(`${which} error function`), err: raw(`${which} error err`) };
  if (!e.time && !e.function && !e.err) return {};
  return { [which === 'First' ? 'firstError' : 'lastError']: e };
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

/** Exit bits of e2fsck: 1 errors fixed, 2 reboot advised (root fs only); 4 and up: not fixed, or e2fsck failed. */
export function fsckFixed(exitCode: number): boolean {
  return (exitCode & ~3) === 0;
}
