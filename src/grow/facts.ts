import { EXIT, HbsError } from '../core/errors.js';
import type { Runner } from '../core/runner.js';
import { imagePath, type Config } from '../lib/config.js';
import { remoteAllocatedBytes } from '../lib/remote-du.js';
import { formatSize } from '../lib/size.js';
import { connOf } from '../lifecycle/context.js';
import { blockingLock, describeLock, readLock } from '../lifecycle/lock.js';
import { inspectBox, inspectFs, loopsFor } from '../lifecycle/stack.js';
import { probeSignature, statFile } from '../steps/image.js';
import type { GrowDeps, GrowFacts } from './context.js';
import { readGeometry } from './geometry.js';

const RETRY = 're-run the same `hbs grow` once that is sorted out; nothing was changed';

/**
 * Reads the stack with read-only probes (they run in a dry-run too): the box, the image and its
 * identity, the lock, where the filesystem is mounted, its size, and the box's space. Anything that
 * makes growing unsafe stops here, before a change.
 */
export async function gatherFacts(runner: Runner, cfg: Config, configPath: string, deps: GrowDeps): Promise<GrowFacts> {
  const image = imagePath(cfg);
  if (cfg.encryption) {
    // Not built yet: the crypt layer (losetup -c → cryptsetup resize with the key → resize2fs on the mapping).
    throw new HbsError(`${image} is encrypted (LUKS2); hbs grow cannot grow encrypted images yet; nothing was changed`, EXIT.usage);
  }
  const box = await inspectBox(runner, cfg);
  if (box.state !== 'up' || box.totalBytes === undefined || box.freeBytes === undefined) {
    throw new HbsError(`the box is ${box.state === 'up' ? 'not answering' : box.state}: ${box.detail}; the image cannot be reached, nothing was changed`, EXIT.failed, '`hbs mount` brings the stack up (`hbs status` shows each layer); then re-run');
  }
  const file = await statFile(runner, image);
  if (!file) throw new HbsError(`the image ${image} is not on the box; nothing was changed`, EXIT.failed, '`hbs status` shows each layer');
  const sig = await probeSignature(runner, image);
  if (sig.TYPE !== 'ext4' || sig.UUID !== cfg.image.uuid) {
    throw new HbsError(
      `${image} is not the filesystem in ${configPath} (found ${sig.TYPE ?? 'no filesystem'}${sig.UUID ? ` UUID ${sig.UUID}` : ''}, expected ext4 UUID ${cfg.image.uuid}); hbs grow left it untouched`,
      EXIT.failed,
    );
  }
  // Growing an image another machine has mounted would destroy the filesystem.
  const lock = await readLock(cfg, await deps.machineId());
  if (lock.state === 'unreadable') throw new HbsError(`cannot read the lock next to the image: ${lock.detail}; nothing was changed`, EXIT.failed, RETRY);
  const blocking = blockingLock(lock, configPath);
  if (blocking) {
    throw new HbsError(
      `the image is in use by another machine: ${describeLock(blocking)}; growing it from here would destroy the filesystem, nothing was changed`,
      EXIT.failed,
      'grow it on that machine, or unmount it there (`hbs umount`) first',
    );
  }
  const fs = await inspectFs(runner, cfg, box);
  if (fs.state === 'conflict') throw new HbsError(`${fs.detail}; nothing was changed`, EXIT.failed, RETRY);
  if (fs.state === 'broken') throw new HbsError(`the filesystem is mounted but broken: ${fs.detail}; nothing was changed`, EXIT.failed, '`hbs mount` repairs the stack; then re-run');
  const device = fs.state === 'up' ? fs.device : undefined;
  const others = (await loopsFor(runner, image)).filter((d) => d !== device);
  if (others.length > 0) {
    throw new HbsError(
      `${image} is also attached as ${others.join(', ')} (not the mount at ${cfg.filesystem.mountPoint}); hbs will not resize an image something else holds, nothing was changed`,
      EXIT.failed,
      'find where with `losetup -j IMAGE` and `findmnt`, unmount or detach it there (`losetup -d DEVICE`), then re-run',
    );
  }
  const geometry = await readGeometry(runner, device ?? image);
  const allocatedBytes = await remoteAllocatedBytes(runner, connOf(cfg), cfg.image.name);
  return {
    image,
    file: { sizeBytes: file.sizeBytes, allocatedBytes },
    fs: geometry,
    device,
    box: { totalBytes: box.totalBytes, freeBytes: box.freeBytes },
    canResizeOnline: device ? await deps.canResizeOnline() : undefined,
  };
}

export function describeFacts(f: GrowFacts): string {
  return `image ${formatSize(f.file.sizeBytes)}, ext4 ${formatSize(f.fs.blockCount * f.fs.blockSize)}, ${f.device ? `mounted from ${f.device}` : 'not mounted'}`;
}
