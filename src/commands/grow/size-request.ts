import { UsageError } from '../../core/errors.js';
import { formatSize, parseSize } from '../../lib/size.js';

/** `--size` of `hbs grow`: an absolute size (`200G`) or one relative to the recorded size (`+50G`). */
export interface SizeRequest {
  text: string;
  relative: boolean;
  bytes: number;
}

/** The same grammar as `hbs init --size`, plus a leading `+`. Bad input is a UsageError naming it. */
export function parseGrowSize(text: string | undefined): SizeRequest {
  if (text === undefined || text.trim() === '') {
    throw new UsageError('missing: --size (the new size, e.g. --size 200G, or --size +50G to add 50 GiB)');
  }
  const t = text.trim();
  if (t.startsWith('-')) throw new UsageError(`--size ${JSON.stringify(text)} asks to shrink the image: hbs grow never shrinks; nothing was changed`);
  const relative = t.startsWith('+');
  const r = parseSize(relative ? t.slice(1) : t);
  if (!r.ok) throw new UsageError(`--size ${JSON.stringify(text)}: ${r.error}`);
  return { text, relative, bytes: r.bytes };
}

/** The new size in bytes: relative sizes count from the size the config recorded. */
export function targetBytes(req: SizeRequest, recordedBytes: number): number {
  const bytes = req.relative ? recordedBytes + req.bytes : req.bytes;
  if (bytes > Number.MAX_SAFE_INTEGER) throw new UsageError(`--size ${JSON.stringify(req.text)} is too large`);
  return bytes;
}

/** "--size +1G (3 GiB: the recorded 2 GiB + 1 GiB)" or "--size 3G (3 GiB)", for messages. */
export function describeRequest(req: SizeRequest, target: number, recordedBytes: number): string {
  const how = req.relative ? `: the recorded ${formatSize(recordedBytes)} + ${formatSize(req.bytes)}` : '';
  return `--size ${req.text} (${formatSize(target)}${how})`;
}
