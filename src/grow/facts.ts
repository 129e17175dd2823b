import { EXIT, HbsError } from '../core/errors.js';
import type { Runner } from '../core/runner.js';
import { imagePath, type Config } from '../lib/config.js';
import { luksInfo, mapperPath, parseStatus } from '../lib/luks.js';
import { remoteAllocatedBytes } from '../lib/remote-du.js';
import { formatSize } from '../lib/size.js';
import { connOf } from '../lifecycle/context.js';
import { blockingLock, describeLock, readLock } from '../lifecycle/lock.js';
import { inspectBox, inspectFs, loopsFor } from '../lifecycle/stack.js';
import { probeSignature, statFile } from '../steps/image.js';
import type { CryptFacts, GrowDeps, GrowFacts } from './context.js';
import { readGeometry } from './geometry.js';

const RETRY = 're-run the same `hbs grow` once that is sorted out; nothing was changed';

/**
 * Reads the stack with read-only probes (they run in a dry-run too): the box, the image and its
 * identity, the lock, where the filesystem is mounted, its size, and the box's space. Anything that
 * makes growing unsafe stops here, before a change.
 */
export async function gatherFacts(runner: Runner, cfg: Config, configPath: string, deps: GrowDeps): Promise<GrowFacts> {
  const image = imagePath(cfg);
  const box = await inspectBox(runner, cfg);
  if (box.state !== 'up' || box.totalBytes === undefined || box.freeBytes === undefined) {
    throw new HbsError(`the box is ${box.state === 'up' ? 'not answering' : box.state}: ${box.detail}; the image cannot be reached, nothing was changed`, EXIT.failed, '`hbs mount` brings the stack up (`hbs status` shows each layer); then re-run');
  }
  const file = await statFile(runner, image);
  if (!file) throw new HbsError(`the image ${image} is not on the box; nothing was changed`, EXIT.failed, '`hbs status` shows each layer');
  const sig = await probeSignature(runner, image);
  if (cfg.encryption ? sig.TYPE !== 'crypto_LUKS' : sig.TYPE !== 'ext4' || sig.UUID !== cfg.image.uuid) {
    const expected = cfg.encryption ? 'a LUKS2 container' : `ext4 UUID ${cfg.image.uuid}`;
    throw new HbsError(
      `${image} is not the ${cfg.encryption ? 'encrypted image' : 'filesystem'} in ${configPath} (found ${sig.TYPE ?? 'no filesystem'}${sig.UUID ? ` UUID ${sig.UUID}` : ''}, expected ${expected}); hbs grow left it untouched`,
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
  const crypt = cfg.encryption ? await inspectCryptForGrow(runner, cfg, configPath) : undefined;
  // An open mapping on this image holds a loop device of its own: that one is part of the stack.
  const others = (await loopsFor(runner, image)).filter((d) => d !== device && d !== crypt?.loop);
  if (others.length > 0) {
    throw new HbsError(
      `${image} is also attached as ${others.join(', ')} (not the mount at ${cfg.filesystem.mountPoint}); hbs will not resize an image something else holds, nothing was changed`,
      EXIT.failed,
      'find where with `losetup -j IMAGE` and `findmnt`, unmount or detach it there (`losetup -d DEVICE`), then re-run',
    );
  }
  // Encrypted: the header comes first; ext4 starts at the data offset (luksDump reads the file, no key needed).
  const payloadOffset = cfg.encryption ? (await luksInfo(runner, image)).dataOffset : 0;
  // A closed mapping hides the superblock behind the key: the grow reads it once it has opened the mapping.
  const fsDevice = crypt ? (crypt.open ? crypt.mapper : undefined) : (device ?? image);
  const geometry = fsDevice ? await readGeometry(runner, fsDevice) : undefined;
  const allocatedBytes = await remoteAllocatedBytes(runner, connOf(cfg), cfg.image.name);
  return {
    image,
    file: { sizeBytes: file.sizeBytes, allocatedBytes },
    fs: geometry,
    device,
    payloadOffset,
    crypt,
    box: { totalBytes: box.totalBytes, freeBytes: box.freeBytes },
    canResizeOnline: device ? await deps.canResizeOnline() : undefined,
  };
}

/** `cryptsetup status`: "key location: keyring" (LUKS2's default) or "dm-crypt". Undefined when not shown. */
export function keyLocation(statusText: string): string | undefined {
  return /^\s*key location:\s*(\S+)\s*$/m.exec(statusText)?.[1];
}

/**
 * The mapping of an encrypted image: closed, or open on this image (its loop device, its size, and
 * whether resizing it needs the key). Open on another file, or holding another filesystem: refused.
 */
async function inspectCryptForGrow(runner: Runner, cfg: Config, configPath: string): Promise<CryptFacts> {
  const enc = cfg.encryption as NonNullable<Config['encryption']>;
  const image = imagePath(cfg);
  const mapper = mapperPath(enc.mapperName);
  const st = await runner.run({ argv: ['cryptsetup', 'status', enc.mapperName], write: false, allowFail: true });
  if (st.exitCode !== 0) return { name: enc.mapperName, mapper, open: false, resizeNeedsKey: true };
  const m = parseStatus(st.stdout);
  if (m.backing !== image || !m.loop) {
    throw new HbsError(`${mapper} is open on ${m.backing ?? m.loop ?? '?'}, not ${image}; nothing was changed`, EXIT.failed, 'close that mapping (`cryptsetup close`) or fix the config, then re-run');
  }
  const sig = await probeSignature(runner, mapper);
  if (sig.TYPE !== 'ext4' || sig.UUID !== cfg.image.uuid) {
    throw new HbsError(
      `${mapper} does not hold the filesystem in ${configPath} (found ${sig.TYPE ?? 'nothing'}${sig.UUID ? ` UUID ${sig.UUID}` : ''}, expected ext4 UUID ${cfg.image.uuid}); hbs grow left it untouched`,
      EXIT.failed,
    );
  }
  const size = await runner.run({ argv: ['blockdev', '--getsize64', mapper], write: false, allowFail: true });
  const bytes = Number(size.stdout.trim());
  return {
    name: enc.mapperName,
    mapper,
    open: true,
    loop: m.loop,
    mapperBytes: size.exitCode === 0 && Number.isSafeInteger(bytes) ? bytes : undefined,
    resizeNeedsKey: keyLocation(st.stdout) !== 'dm-crypt',
  };
}

export function describeFacts(f: GrowFacts): string {
  const ext4 = f.fs ? formatSize(f.fs.blockCount * f.fs.blockSize) : 'behind the key';
  return `image ${formatSize(f.file.sizeBytes)}, ext4 ${ext4}, ${f.device ? `mounted from ${f.device}` : 'not mounted'}`;
}
