/**
 * The layer rule (core ← lib ← steps ← commands ← cli; ui only behind the Reporter/Prompter
 * interfaces) is enforced by `npm run lint` through .eslintrc.json. These tests run that config's
 * rules on sample imports, so a rule that stops catching an upward import fails here.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const config = JSON.parse(readFileSync(resolve(ROOT, '.eslintrc.json'), 'utf8')) as { overrides: { files: string[]; rules: Record<string, unknown> }[] };
const layerRules = config.overrides.filter((o) => 'no-restricted-imports' in o.rules);

/** ESLint 8 ships no types of its own: the little of its API used here. */
interface Linter {
  lintText(code: string, o: { filePath: string }): Promise<{ messages: { message: string }[] }[]>;
}
// @ts-expect-error -- no types for eslint 8
const { ESLint } = (await import('eslint')) as unknown as { ESLint: new (o: unknown) => Linter };

const eslint = new ESLint({
  cwd: ROOT,
  useEslintrc: false,
  overrideConfig: { parser: '@typescript-eslint/parser', parserOptions: { ecmaVersion: 2022, sourceType: 'module' }, overrides: layerRules },
});

async function errors(file: string, from: string): Promise<string[]> {
  const [r] = await eslint.lintText(`import { x } from '${from}';\nexport const y = x;\n`, { filePath: resolve(ROOT, file) });
  return (r?.messages ?? []).map((m) => m.message);
}

describe('the layer rule in .eslintrc.json', () => {
  const upward: [string, string][] = [
    ['src/core/executor.ts', '../lib/stack.js'],
    ['src/core/executor.ts', '../steps/box.js'],
    ['src/core/executor.ts', '../ui/terminal-reporter.js'],
    ['src/lib/probes.ts', '../steps/context.js'],
    ['src/lib/probes.ts', '../commands/shared.js'],
    ['src/steps/box.ts', '../commands/mount.js'],
    ['src/steps/init/image.ts', '../../commands/init/options.js'],
    ['src/steps/box.ts', '../ui/terminal-reporter.js'],
    ['src/commands/mount.ts', '../ui/terminal-reporter.js'],
    ['src/commands/init/index.ts', '../../cli.js'],
    ['src/ui/status-view.ts', '../commands/status.js'],
    ['src/ui/status-view.ts', '../steps/status.js'],
  ];
  for (const [file, from] of upward) {
    it(`refuses ${from} in ${file}`, async () => {
      const found = await errors(file, from);
      expect(found).toHaveLength(1);
      expect(found[0]).toMatch(/^'.*' import is restricted .*layers: /);
    });
  }

  const downward: [string, string][] = [
    ['src/core/executor.ts', './files.js'],
    ['src/lib/probes.ts', '../core/runner.js'],
    ['src/steps/box.ts', '../lib/inspect.js'],
    ['src/steps/init/image.ts', '../lock.js'],
    ['src/commands/mount.ts', '../steps/stack.js'],
    ['src/commands/init/index.ts', './steps.js'],
    ['src/ui/status-view.ts', '../lib/status-report.js'],
    ['src/cli.ts', './ui/terminal-reporter.js'],
  ];
  for (const [file, from] of downward) {
    it(`allows ${from} in ${file}`, async () => {
      expect(await errors(file, from)).toEqual([]);
    });
  }
});
