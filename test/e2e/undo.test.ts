/**
 * End to end with the real e2fsprogs: an offline resize2fs killed at its Nth write — before, in the
 * middle, near the end — and what hbs decides from the undo file it left (steps/undo.ts: the same
 * probes and decision) puts the filesystem back: e2fsck finds nothing to fix, the files are intact,
 * and the resize then runs to its end. strace injects the SIGKILL at an exact write, so every run
 * kills at the same places.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RealRunner } from '../../src/core/real-runner.js';
import { decideUndo, e2undoArgv, undoMarkOf } from '../../src/lib/e2undo.js';
import { commandProbes } from '../../src/lib/probes.js';

const missing = (await Promise.all(['strace', 'resize2fs', 'e2undo', 'debugfs'].map(async (t) => ((await execa('sh', ['-c', `command -v ${t}`], { reject: false })).exitCode === 0 ? undefined : t)))).filter(Boolean);
if (missing.length && process.env.CI) throw new Error(`undo tests cannot run in CI: missing ${missing.join(', ')}`);

describe.skipIf(missing.length > 0)('an offline resize2fs killed at any write is undone (real resize2fs, e2undo, strace)', () => {
  let dir: string;
  const probes = commandProbes(new RealRunner(), (prefix) => mkdtemp(join(tmpdir(), prefix)));
  const payload = randomBytes(3 * 1024 * 1024);
  const sum = createHash('sha256').update(payload).digest('hex');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hbs-undo-'));
    await writeFile(join(dir, 'payload'), payload);
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A 1 GiB ext4 with hbs's features and a file in it, extended to 24 GiB and checked: ready for the offline resize. */
  async function image(name: string): Promise<string> {
    const img = join(dir, name);
    await execa('truncate', ['--size=1G', img]);
    await execa('mkfs.ext4', ['-q', '-F', '-O', 'meta_bg,^resize_inode', img]);
    await execa('debugfs', ['-w', '-R', `write ${join(dir, 'payload')} payload`, img]);
    await execa('truncate', ['--size=24G', img]);
    await execa('e2fsck', ['-f', '-p', img]);
    return img;
  }
  const payloadSum = async (img: string): Promise<string> =>
    createHash('sha256').update((await execa('debugfs', ['-R', 'cat payload', img], { encoding: 'buffer' })).stdout).digest('hex');

  it('at every sampled write: the decision puts it back (or keeps a finished resize); e2fsck clean, the file intact, the resize then finishes', async () => {
    const seen: Record<string, number[]> = {};
    // How many writes a whole resize makes, to spread the kills over all of it.
    const probe = await image('count.img');
    const counted = await execa('strace', ['-f', '-c', '-e', 'trace=pwrite64', '-o', join(dir, 'count.txt'), 'resize2fs', '-z', join(dir, 'count.e2undo'), probe]);
    expect(counted.exitCode).toBe(0);
    // strace -c's table: % time, seconds, usecs/call, calls, [errors,] syscall.
    const row = (await readFile(join(dir, 'count.txt'), 'utf8')).split('\n').find((l) => l.trim().endsWith(' pwrite64'));
    const writes = Number(row?.trim().split(/\s+/)[3]);
    expect(writes).toBeGreaterThan(20);
    const points = [...new Set([1, 2, 3, 5, 8, ...Array.from({ length: 12 }, (_, i) => Math.round(((i + 1) * writes) / 13)), writes - 1, writes + 5])];
    for (const n of points) {
      const img = await image(`at-${n}.img`);
      const undo = join(dir, `at-${n}.e2undo`);
      const before = await probes.superblock(img);
      const mark = undoMarkOf(before);
      const killed = await execa('strace', ['-f', '-o', '/dev/null', '-e', 'trace=pwrite64', '-e', `inject=pwrite64:signal=SIGKILL:when=${n}`, 'resize2fs', '-z', undo, img], { reject: false });
      const log = await probes.undoLog(undo, img);
      const now = await probes.superblock(img).catch(() => undefined);
      const d = decideUndo(log, mark, now);
      (seen[`${log.state}→${d.kind}`] ??= []).push(n);
      expect(d.kind, `killed at write ${n} (exit ${killed.exitCode}): ${d.why}`).not.toBe('set-aside');
      if (d.kind === 'replay') {
        const r = await execa(e2undoArgv(d, undo, img)[0]!, e2undoArgv(d, undo, img).slice(1), { reject: false });
        expect(r.exitCode, `e2undo after a kill at write ${n}: ${r.stdout}${r.stderr}`).toBe(0);
        expect((await probes.superblock(img)).blockCount, `put back after a kill at write ${n}`).toBe(before.blockCount);
      }
      // What hbs runs next (an incomplete undo record leaves the filesystem marked "not clean"):
      // e2fsck -p may only clear that mark (exit 1), and a full check then finds nothing.
      const p = await execa('e2fsck', ['-f', '-p', img], { reject: false });
      expect(p.exitCode, `e2fsck -p after a kill at write ${n} and ${d.kind}: ${p.stdout}${p.stderr}`).toBeLessThanOrEqual(1);
      const fsck = await execa('e2fsck', ['-f', '-n', img], { reject: false });
      expect(fsck.exitCode, `e2fsck after a kill at write ${n} and ${d.kind}: ${fsck.stdout}`).toBe(0);
      expect(await payloadSum(img), `the file after a kill at write ${n}`).toBe(sum);
      // And the grow finishes from there (the kill sweep does the same through hbs grow).
      await rm(undo, { force: true });
      await execa('resize2fs', [img]);
      expect((await execa('e2fsck', ['-f', '-n', img], { reject: false })).exitCode, `e2fsck after the resize that followed a kill at write ${n}`).toBe(0);
      expect((await probes.superblock(img)).blockCount).toBe((24 * 1024 ** 3) / before.blockSize);
      await rm(img);
    }
    console.log(`resize2fs killed at writes ${points.join(', ')} of ${writes}: ${Object.entries(seen).map(([k, v]) => `${k} ${v.length}`).join(', ')}`);
    // The sweep must have hit the interesting cases: a kill halfway (forced replay) and a finished resize.
    expect(Object.keys(seen)).toEqual(expect.arrayContaining(['interrupted→replay', 'finished→discard']));
  }, 300_000);
});
