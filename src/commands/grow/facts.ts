import { EXIT, HbsError } from '../../core/errors.js';
import { inspectBox, inspectCrypt, inspectFs } from '../../lib/inspect.js';
import type { StepCtx } from '../../steps/context.js';
import type { CryptFacts, GrowFacts } from '../../steps/grow.js';

const RETRY = 're-run the same `hbs grow` once that is sorted out; nothing was changed';

/**
 * Reads the stack with read-only probes (they run in a dry-run too): the box and its space, where
 * the filesystem is mounted, its size, the mapping. Anything that makes growing unsafe stops here,
 * before a change. (The image's identity and the lock are checked by their steps before this.)
 */
export async function gatherFacts(ctx: StepCtx): Promise<GrowFacts> {
  const s = ctx.stack;
  const p = ctx.probe;
  const box = await inspectBox(p, s);
  if (box.state !== 'up' || box.totalBytes === undefined || box.freeBytes === undefined) {
    throw new HbsError(`the box is ${box.state === 'up' ? 'not answering' : box.state}: ${box.detail}; the image cannot be reached, nothing was changed`, EXIT.failed, '`hbs mount` brings the stack up (`hbs status` shows each layer); then re-run');
  }
  const file = await p.file(s.image.path);
  if (!file) throw new HbsError(`the image ${s.image.path} is not on the box; nothing was changed`, EXIT.failed, '`hbs status` shows each layer');
  const fs = await inspectFs(p, s, box);
  if (fs.state === 'conflict') throw new HbsError(`${fs.detail}; nothing was changed`, EXIT.failed, RETRY);
  if (fs.state === 'broken') throw new HbsError(`the filesystem is mounted but broken: ${fs.detail}; nothing was changed`, EXIT.failed, '`hbs mount` repairs the stack; then re-run');
  const device = fs.state === 'up' ? fs.device : undefined;
  const crypt = s.crypt ? await cryptFacts(ctx) : undefined;
  // Encrypted: the header comes first; ext4 starts at the data offset (luksDump reads the file, no key needed).
  const payloadOffset = s.crypt ? (await p.luksInfo(s.image.path)).dataOffset : 0;
  // A closed mapping hides the superblock behind the key: the grow reads it once it has opened the mapping.
  const fsDevice = crypt ? (crypt.open ? s.fs.device : undefined) : (device ?? s.image.path);
  return {
    file: { sizeBytes: file.sizeBytes, allocatedBytes: await p.remoteAllocated(s.conn, s.image.name) },
    fs: fsDevice ? await p.superblock(fsDevice) : undefined,
    device,
    payloadOffset,
    crypt,
    box: { totalBytes: box.totalBytes, freeBytes: box.freeBytes },
    canResizeOnline: device ? await p.canResizeOnline() : undefined,
  };
}

/** The mapping: closed, or open on this image (its loop device, size, and whether resizing it needs the key). */
async function cryptFacts(ctx: StepCtx): Promise<CryptFacts> {
  const s = ctx.stack;
  const c = await inspectCrypt(ctx.probe, s);
  if (!c || c.state === 'closed') return { open: false, resizeNeedsKey: true };
  if (c.state === 'conflict' || !c.mapping?.loop) {
    throw new HbsError(`${c.detail}; nothing was changed`, EXIT.failed, 'close that mapping (`cryptsetup close`) or fix the config, then re-run');
  }
  const sig = await ctx.probe.signature(s.fs.device);
  if (sig.TYPE !== 'ext4' || sig.UUID !== s.fs.uuid) {
    throw new HbsError(
      `${s.fs.device} does not hold the filesystem in ${s.configPath} (found ${sig.TYPE ?? 'nothing'}${sig.UUID ? ` UUID ${sig.UUID}` : ''}, expected ext4 UUID ${s.fs.uuid ?? '?'}); hbs grow left it untouched`,
      EXIT.failed,
    );
  }
  return { open: true, loop: c.mapping.loop, mapperBytes: await ctx.probe.deviceBytes(s.fs.device), resizeNeedsKey: c.mapping.keyLocation !== 'dm-crypt' };
}
