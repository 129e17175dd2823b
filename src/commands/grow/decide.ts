import { UsageError } from '../../core/errors.js';
import type { Config } from '../../lib/config.js';
import { covers, fsBytes } from '../../lib/ext4.js';
import { formatSize } from '../../lib/size.js';
import type { GrowDecision, GrowFacts } from '../../steps/grow.js';
import { describeRequest, targetBytes, type SizeRequest } from './size-request.js';

/**
 * Decides from the facts alone (so a dry-run prints exactly what a real run does) what growing to
 * the requested size means: refused, only the config left, or a grow (perhaps finishing an earlier
 * one). Refusals are UsageErrors, thrown before anything changes.
 */
export function decideGrow(facts: GrowFacts, cfg: Pick<Config, 'image'>, req: SizeRequest, opts: { force: boolean }): GrowDecision {
  const from = facts.file.sizeBytes;
  const recorded = cfg.image.sizeBytes;
  const fsNow = facts.fs ? fsBytes(facts.fs) : undefined;
  const target = targetBytes(req, recorded);
  const asked = describeRequest(req, target, recorded);
  // The filesystem's own block count decides, not the file size: a grow interrupted after the file
  // was extended leaves a file larger than the filesystem in it. A tail shorter than a block group is
  // what mke2fs/resize2fs leave off by design, once the config records that size. Encrypted, ext4
  // spans the file minus the LUKS2 header. Behind a closed mapping the block count is read once the
  // grow has opened it: until then, the config recording the file's size is what tells.
  const fsSpansFile = facts.fs ? covers(facts.fs, from - facts.payloadOffset, recorded === from) : recorded === from;
  const halfway = `ext4 inside spans only ${formatSize(fsNow ?? 0)}: an earlier grow stopped halfway`;
  const current = `the image's current size, ${formatSize(from)} (${from} bytes)`;

  if (target < from) {
    throw new UsageError(
      `${asked} is smaller than ${current}: hbs grow never shrinks; the image was not touched`,
      fsSpansFile ? undefined : facts.fs ? `${halfway}; \`hbs grow --size ${from}\` finishes it` : `the config records ${formatSize(recorded)}; \`hbs grow --size ${from}\` finishes an earlier grow`,
    );
  }
  const base = { asked, fromBytes: from, fsBytes: fsNow, targetBytes: target, mounted: facts.device !== undefined };
  const onlineRefusalExpected = base.mounted && facts.canResizeOnline === false;
  if (target === from && fsSpansFile) {
    if (recorded === from) throw new UsageError(`${asked} is not larger than ${current}: nothing to grow; the image was not touched`);
    return { ...base, configOnly: true, onlineRefusalExpected: false, keyNeeded: false, resume: `the image and its filesystem are already ${formatSize(from)}; only the config still records ${formatSize(recorded)}` };
  }

  // A sparse image may fill up to its full size: what it does not occupy yet must fit in the free space.
  const allocated = facts.file.allocatedBytes;
  const need = target - (allocated ?? from);
  const { totalBytes, freeBytes } = facts.box;
  if (!opts.force && (need > freeBytes || target > totalBytes)) {
    const occupies = allocated === undefined ? 'its own use could not be measured' : `it occupies ${formatSize(allocated)} now`;
    throw new UsageError(
      `${asked} does not fit the box: the image may come to need ${formatSize(need)} more (${occupies}), and the box has ${formatSize(freeBytes)} free of ${formatSize(totalBytes)}; the image was not touched`,
      'choose a smaller --size, or pass --force if you know the box will grow',
    );
  }
  return {
    ...base,
    configOnly: false,
    onlineRefusalExpected,
    keyNeeded: keyNeeded(facts, target),
    resume: fsSpansFile
      ? undefined
      : !facts.fs
        ? `the image file is already ${formatSize(from)} but the config records ${formatSize(recorded)}: an earlier grow stopped halfway; ${target === from ? 'finishing it' : 'this grow finishes it too'} (ext4's own size is read once the mapping is open)`
        : target === from
          ? `the image file is already ${formatSize(from)}, but ${halfway}; finishing it`
          : `the image file is ${formatSize(from)}, but ${halfway}; this grow finishes it too`,
  };
}

/**
 * Whether the key is needed: to open a closed mapping, or for `cryptsetup resize` of an open one
 * that is still smaller than the target (unless its volume key sits in the dm table).
 */
function keyNeeded(facts: GrowFacts, target: number): boolean {
  const c = facts.crypt;
  if (!c) return false;
  if (!c.open) return true;
  const mapperDone = c.mapperBytes !== undefined && c.mapperBytes >= target - facts.payloadOffset;
  return !mapperDone && c.resizeNeedsKey;
}
