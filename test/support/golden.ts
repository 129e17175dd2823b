import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { expect } from 'vitest';

const DIR = resolve(import.meta.dirname, '../golden');

/**
 * Compares a transcript with test/golden/NAME (paths of the sandbox shown as <tmp>). Set
 * UPDATE_GOLDEN=1 to write it instead — then read the diff before committing it.
 */
export async function expectGolden(name: string, lines: readonly string[], root: string): Promise<void> {
  const text = lines.map((l) => l.split(root).join('<tmp>')).join('\n') + '\n';
  const file = resolve(DIR, name);
  if (process.env.UPDATE_GOLDEN === '1') {
    await writeFile(file, text);
    return;
  }
  expect(text).toBe(await readFile(file, 'utf8'));
}

/**
 * A dry-run's `write … (N bytes, …)` lines with N counted as if each sandbox path in the content
 * shown below them were `<tmp>`: a golden then does not depend on the length of the temp dir's path
 * (TMPDIR). Only content that is shown is counted; hidden content (keys) holds no sandbox path.
 */
export function stableByteCounts(lines: readonly string[], root: string): string[] {
  return lines.map((line, i) => {
    const m = /^( {2}! write .*\(mode \d{4}, )(\d+)( bytes, .*)$/.exec(line);
    if (!m) return line;
    let paths = 0;
    for (const shown of lines.slice(i + 1)) {
      if (!shown.startsWith('  !   | ')) break;
      paths += shown.split(root).length - 1;
    }
    return `${m[1]}${Number(m[2]) - paths * (root.length - '<tmp>'.length)}${m[3]}`;
  });
}
