/**
 * End to end: a box that runs full under a mounted image (measured: the kernel aborts the ext4
 * journal and remounts read-only, and the writer's dd and sync both exit 0). The stand-in box's home
 * is a small filesystem of its own, so the box really has only that much space.
 *   - status warns before the fill: the box cannot hold what ext4 believes it has free (exit 1);
 *   - after the fill status names it: write errors recorded, box full;
 *   - `hbs mount` after `hbs umount` runs e2fsck -p before mounting (never mounts it as it is);
 *   - the data written before the fill is intact.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../src/lib/status-report.js';
import { e2eUnavailable, startBox, type StandInBox } from '../support/stand-in-box.js';
import { hbs, initThinOn, smallBoxDisk, teardown } from './helpers.js';

const skip = await e2eUnavailable();
const MiB = 1024 * 1024;

describe.skipIf(skip !== undefined)('a full box is never a silent success', () => {
  let box: StandInBox;
  let t: string;
  let boxFs: string;
  const p = { config: '', key: '', boxMount: '', mountPoint: '' };
  let before = '';

  const status = async (): Promise<{ code: number; doc: StatusReport; text: string }> => {
    const json = await hbs(['status', '--json', '--config', p.config]);
    const text = await hbs(['status', '--config', p.config]);
    return { code: json.exitCode, doc: JSON.parse(json.stdout) as StatusReport, text: text.stdout };
  };

  beforeAll(async () => {
    t = await mkdtemp(join(tmpdir(), 'hbs-full-'));
    await execa('chmod', ['0755', t]);
    // The box's own disk: 700 MiB, so it fills up long before the 2 GiB image does.
    boxFs = await smallBoxDisk(t, '700M');
    // What snapshots on a real box are: space taken outside the account's files.
    await execa('dd', ['if=/dev/urandom', `of=${join(boxFs, 'snapshots')}`, 'bs=1M', 'count=250', 'status=none']);
    box = await startBox({ stateDir: join(boxFs, 'state') });
    Object.assign(p, { config: join(t, 'etc', 'config.json'), key: join(t, 'key'), boxMount: join(t, 'box'), mountPoint: join(t, 'mnt') });
    const r = await initThinOn(box, p);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
  });

  afterAll(async () => {
    await teardown([p.mountPoint], [p.boxMount]);
    await box?.stop();
    await execa('umount', [boxFs], { reject: false });
    await rm(t, { recursive: true, force: true });
  });

  it('status warns before the fill: every layer up, but the box cannot hold what ext4 has free (exit 1, both figures)', async () => {
    const s = await status();
    expect(s.doc.box.state).toBe('up');
    expect(s.doc.filesystem.state).toBe('up');
    expect(s.doc.space).not.toBeNull();
    expect(s.doc.space!.ok).toBe(false);
    expect(s.doc.space!.boxFreeBytes).toBeLessThan(700 * MiB);
    expect(s.doc.space!.mayStillNeedBytes).toBeGreaterThan(1500 * MiB);
    expect(s.doc.space!.shortBytes).toBe(s.doc.space!.mayStillNeedBytes - s.doc.space!.boxFreeBytes);
    expect(s.doc.healthy).toBe(false);
    expect(s.code).toBe(1);
    expect(s.text).toMatch(/^space +SHORT .* short: writes will fail before ext4 is full/m);
  });

  it('the fill: writes fail underneath; status names the cause (write errors recorded, box full) and exits 1', async () => {
    await execa('dd', ['if=/dev/urandom', `of=${join(p.mountPoint, 'before')}`, 'bs=1M', 'count=200', 'status=none']);
    await execa('sync');
    before = createHash('sha256').update(await readFile(join(p.mountPoint, 'before'))).digest('hex');
    // What a backup script sees: dd and sync may well exit 0 here (that is the danger).
    await execa('dd', ['if=/dev/urandom', `of=${join(p.mountPoint, 'fill')}`, 'bs=1M', 'count=800', 'status=none'], { reject: false });
    await execa('sync', [], { reject: false });
    const s = await status();
    expect(s.code).toBe(1);
    expect(s.doc.healthy).toBe(false);
    // The kernel knows at once (I/O errors, the journal aborted); the superblock only later, if ever.
    expect(s.doc.filesystem.errors?.kernel.lines ?? 0).toBeGreaterThan(0);
    expect(s.doc.filesystem.errors?.cause).toBe('box-full');
    expect(s.text).toMatch(/^errors +FAILED .*the box is full/m);
  }, 300_000);

  it('hbs mount after hbs umount runs e2fsck -p first (never mounts it as it is); the data from before is intact', async () => {
    expect((await hbs(['umount', '--config', p.config])).exitCode).toBe(0);
    // The person frees space on the box (deletes old snapshots), then mounts again.
    await rm(join(boxFs, 'snapshots'));
    const r = await hbs(['mount', '--config', p.config]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/records \d+ errors?|not unmounted cleanly/);
    expect(r.stdout).toMatch(/e2fsck: (clean|errors found and fixed)/);
    expect(createHash('sha256').update(await readFile(join(p.mountPoint, 'before'))).digest('hex')).toBe(before);
    const s = await status();
    expect(s.doc.filesystem.errors).toMatchObject({ count: 0, kernel: { lines: 0 } });
    expect(s.doc.filesystem.state).toBe('up');
    // And status still says what it said before the fill: the box cannot hold a full image.
    expect(s.doc.space?.ok).toBe(false);
    expect(s.code).toBe(1);
  }, 300_000);
});
