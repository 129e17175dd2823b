import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomic, writeFileExclusive } from '../../../src/core/files.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hbs-files-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeFileExclusive', () => {
  it('creates the file with its mode and leaves no temporary file', async () => {
    const path = join(dir, 'lock');
    await writeFileExclusive(path, 'mine\n', 0o600);
    expect(await readFile(path, 'utf8')).toBe('mine\n');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['lock']);
  });

  it('refuses a name that exists, leaving it as it was', async () => {
    const path = join(dir, 'lock');
    await writeFile(path, 'theirs\n');
    await expect(writeFileExclusive(path, 'mine\n', 0o600)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(await readFile(path, 'utf8')).toBe('theirs\n');
    expect(await readdir(dir)).toEqual(['lock']);
  });

  it('of writers racing for one name, exactly one wins', async () => {
    const path = join(dir, 'lock');
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => writeFileExclusive(path, `writer ${i}\n`, 0o600)));
    const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    expect(won).toHaveLength(1);
    expect(await readFile(path, 'utf8')).toBe(`writer ${won[0]}\n`);
  });

  it('a writer killed with SIGKILL halfway never leaves the file there half written', async () => {
    // 32 MiB written and fsynced by a child we kill at several moments: the name either does not
    // exist or holds every byte (an O_EXCL create + write would leave it short, even empty).
    const size = 32 * 1024 * 1024;
    const module = resolve(import.meta.dirname, '../../../dist/core/files.js');
    let cutOff = 0;
    for (const ms of [5, 20, 60, 150]) {
      const path = join(dir, `lock-${ms}`);
      const child = spawn(process.execPath, ['--input-type=module', '-e',
        `import { writeFileExclusive } from ${JSON.stringify(module)}; await writeFileExclusive(${JSON.stringify(path)}, Buffer.alloc(${size}, 120), 0o600);`]);
      // Listened for from the start: a child that finished before the kill has closed already.
      const closed = new Promise((r) => child.once('close', r));
      await new Promise((r) => setTimeout(r, ms));
      child.kill('SIGKILL');
      await closed;
      const st = await stat(path).catch(() => undefined);
      if (st) expect(st.size, `killed after ${ms} ms`).toBe(size);
      else cutOff++;
    }
    // At least one kill landed before the file was in place (else this proved nothing).
    expect(cutOff).toBeGreaterThan(0);
  });
});

describe('writeFileAtomic', () => {
  it('replaces the content whole and leaves no temporary file', async () => {
    const path = join(dir, 'config.json');
    await writeFile(path, 'old\n');
    await writeFileAtomic(path, 'new\n', 0o640);
    expect(await readFile(path, 'utf8')).toBe('new\n');
    expect((await stat(path)).mode & 0o777).toBe(0o640);
    expect(await readdir(dir)).toEqual(['config.json']);
  });
});
