/**
 * The managed block hbs keeps in a system file (fstab, crypttab): its lines between a BEGIN and an
 * END marker that name the owner (the config). Everything outside the block stays byte for byte
 * as it was, and removing the block gives back the file as it was before hbs — a missing final
 * newline included: when hbs had to add one in front of its block, the BEGIN marker says so.
 */
const BEGIN = '# BEGIN hbs managed block';
const END = '# END hbs managed block';
const ADDED_NEWLINE = '; hbs added the newline above';

function beginMarker(id: string, addedNewline: boolean): string {
  return `${BEGIN} (${id}): edit with hbs, not by hand${addedNewline ? ADDED_NEWLINE : ''}`;
}

/** The block for `id` around lines already formatted for their file. */
export function formatBlock(id: string, lines: readonly string[], addedNewline = false): string {
  return [beginMarker(id, addedNewline), ...lines, `${END} (${id})`].join('\n') + '\n';
}

interface Span {
  start: number;
  end: number;
  addedNewline: boolean;
}

/** Where the block for `id` sits in the text (character offsets, end exclusive, including its newline). */
function findBlock(text: string, id: string): Span | undefined {
  const begin = `${BEGIN} (${id})`;
  const end = `${END} (${id})`;
  let offset = 0;
  let start: number | undefined;
  let addedNewline = false;
  for (const line of text.split(/(?<=\n)/)) {
    const bare = line.replace(/\r?\n$/, '');
    if (start === undefined && bare.startsWith(begin)) {
      start = offset;
      addedNewline = bare.endsWith(ADDED_NEWLINE);
    } else if (start !== undefined && bare === end) return { start, end: offset + line.length, addedNewline };
    offset += line.length;
  }
  if (start !== undefined) throw new Error(`the file has "${begin}" without its END marker; fix it by hand`);
  return undefined;
}

/** The text with the block for `id` replaced (or appended); every other byte is kept. */
export function mergeBlock(text: string, id: string, lines: readonly string[]): string {
  const span = findBlock(text, id);
  if (span) return text.slice(0, span.start) + formatBlock(id, lines, span.addedNewline) + text.slice(span.end);
  if (text === '' || text.endsWith('\n')) return text + formatBlock(id, lines);
  return `${text}\n${formatBlock(id, lines, true)}`;
}

/**
 * The text without the block for `id`: as it was before hbs added the block. The newline hbs added
 * in front of it goes too when nothing follows; when another hbs block follows right away (a second
 * config's), that block inherits the mark, so removing it later gives back the file as it was.
 */
export function removeBlock(text: string, id: string): string {
  const span = findBlock(text, id);
  if (!span) return text;
  const head = text.slice(0, span.start);
  const tail = text.slice(span.end);
  if (!span.addedNewline || !head.endsWith('\n')) return head + tail;
  if (tail === '') return head.slice(0, -1);
  const next = /^[^\n]*/.exec(tail)![0].replace(/\r$/, '');
  if (next.startsWith(`${BEGIN} (`) && !next.endsWith(ADDED_NEWLINE)) return head + next + ADDED_NEWLINE + tail.slice(next.length);
  // Lines someone added after the block need the newline: it stays.
  return head + tail;
}

export function hasBlock(text: string, id: string): boolean {
  return findBlock(text, id) !== undefined;
}

/** The block's text (markers included) for `id`, if present. */
export function blockText(text: string, id: string): string | undefined {
  const span = findBlock(text, id);
  return span ? text.slice(span.start, span.end) : undefined;
}

/** The lines inside the block for `id` (markers excluded), if present. */
export function blockLines(text: string, id: string): string[] | undefined {
  const t = blockText(text, id);
  return t === undefined ? undefined : t.replace(/\n$/, '').split('\n').slice(1, -1);
}
