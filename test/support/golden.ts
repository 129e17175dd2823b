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
