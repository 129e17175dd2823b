/**
 * The managed block hbs keeps in fstab (and, with the same markers, in crypttab). Everything
 * outside the block stays byte for byte as it was.
 */
export interface FstabEntry {
  source: string;
  target: string;
  fstype: string;
  options: readonly string[];
  dump?: number;
  pass?: number;
}

const BEGIN = '# BEGIN hbs managed block';
const END = '# END hbs managed block';

/** fstab fields escape white space and backslashes as octal (fstab(5)). */
export function escapeField(value: string): string {
  return value.replace(/[\\ \t\n]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

export function formatEntry(e: FstabEntry): string {
  return [
    escapeField(e.source),
    escapeField(e.target),
    e.fstype,
    e.options.map(escapeField).join(','),
    String(e.dump ?? 0),
    String(e.pass ?? 0),
  ].join(' ');
}

function beginMarker(id: string): string {
  return `${BEGIN} (${id}): edit with hbs, not by hand`;
}

/** The block for `id` around lines already formatted for their file (fstab, crypttab). */
export function formatLinesBlock(id: string, lines: readonly string[]): string {
  return [beginMarker(id), ...lines, `${END} (${id})`].join('\n') + '\n';
}

export function formatBlock(id: string, entries: readonly FstabEntry[]): string {
  return formatLinesBlock(id, entries.map(formatEntry));
}

interface Span {
  start: number;
  end: number;
}

/** Where the block for `id` sits in the text (character offsets, end exclusive, including its newline). */
function findBlock(text: string, id: string): Span | undefined {
  const begin = `${BEGIN} (${id})`;
  const end = `${END} (${id})`;
  let offset = 0;
  let start: number | undefined;
  for (const line of text.split(/(?<=\n)/)) {
    const bare = line.replace(/\r?\n$/, '');
    if (start === undefined && bare.startsWith(begin)) start = offset;
    else if (start !== undefined && bare === end) return { start, end: offset + line.length };
    offset += line.length;
  }
  if (start !== undefined) throw new Error(`the file has "${begin}" without its END marker; fix it by hand`);
  return undefined;
}

/** The fstab text with the block for `id` replaced (or appended); every other byte is kept. */
export function mergeBlock(text: string, id: string, entries: readonly FstabEntry[]): string {
  return mergeLinesBlock(text, id, entries.map(formatEntry));
}

/** As mergeBlock, for lines already formatted for their file. */
export function mergeLinesBlock(text: string, id: string, lines: readonly string[]): string {
  const block = formatLinesBlock(id, lines);
  const span = findBlock(text, id);
  if (span) return text.slice(0, span.start) + block + text.slice(span.end);
  if (text === '') return block;
  return (text.endsWith('\n') ? text : text + '\n') + block;
}

/** The fstab text without the block for `id`. */
export function removeBlock(text: string, id: string): string {
  const span = findBlock(text, id);
  return span ? text.slice(0, span.start) + text.slice(span.end) : text;
}

export function hasBlock(text: string, id: string): boolean {
  return findBlock(text, id) !== undefined;
}

/** The block's text (markers included) for `id`, if present. */
export function blockText(text: string, id: string): string | undefined {
  const span = findBlock(text, id);
  return span ? text.slice(span.start, span.end) : undefined;
}
