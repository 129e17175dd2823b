/**
 * What `npm pack` would publish: the CLI and its README, never test code (the stand-in box and its
 * teardown live in test/support/, built into build/test-support/). Packs the dist/ that is there
 * (`npm test` builds it first), without running any script.
 */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');

function packedFiles(): string[] {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const [pack] = JSON.parse(out) as { files: { path: string }[] }[];
  return pack!.files.map((f) => f.path).sort();
}

describe('npm package contents', () => {
  const files = packedFiles();

  it('holds the CLI: bin/hbs, the built dist/cli.js, README.md, package.json', () => {
    expect(files).toEqual(expect.arrayContaining(['README.md', 'bin/hbs', 'dist/cli.js', 'package.json']));
  });

  it('holds nothing but those and dist/: no test code, no test support, no build/', () => {
    const other = files.filter((f) => !['README.md', 'bin/hbs', 'package.json'].includes(f) && !f.startsWith('dist/'));
    expect(other).toEqual([]);
    const testCode = files.filter((f) => /(^|\/)(testing|test-support|tests?|__tests__)\/|stand-in-box|\.(test|vmtest)\./.test(f));
    expect(testCode).toEqual([]);
  });
});
