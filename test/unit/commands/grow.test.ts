import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { growCommand, type GrowFlags } from '../../../src/commands/grow/index.js';
import { EXIT, PreflightError, UsageError } from '../../../src/core/errors.js';
import { MemoryReporter } from '../../../src/core/reporter.js';
import type { Config } from '../../../src/lib/config.js';
import type { UndoLog } from '../../../src/lib/e2undo.js';
import type { Probes } from '../../../src/lib/probes.js';
import { FakeMachine } from '../../support/fake-machine.js';
import { expectGolden } from '../../support/golden.js';
import {
  BOX_SOURCE,
  GiB,
  makeConfig,
  makeSandbox,
  otherLock,
  ourLock,
  putOnBox,
  rejection,
  scriptedPrompter,
  testIo,
  UUID,
  writeConfig,
  writeLock,
  type Sandbox,
  type TestIo,
} from '../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = new FakeMachine().box(sb.boxMount, sb.boxHome);
});
afterEach(async () => {
  await sb.cleanup();
});

const MiB = 2 ** 20;
const blocks = (bytes: number): number => bytes / 4096;
const EPERM = { exitCode: 1, stderr: 'resize2fs 1.47.0 (5-Feb-2023)\nresize2fs: Permission denied to resize filesystem\n' };
/** e2fsck -C 1 progress lines ("PASS CURRENT MAX DEVICE"), then its summary. */
const PROGRESS = '1 0 8 /img\n1 4 8 /img\n1 8 8 /img\n2 0 5 /img\n2 5 5 /img\n3 0 2 /img\n4 0 8 /img\n5 0 16 /img\n5 16 16 /img\nhbs-backup: 11/65536 files (0.0% non-contiguous), 12955/262144 blocks\n';

interface PlainState {
  /** The size the config records (default 1 GiB). */
  recorded?: number;
  /** The image file's size (default: the recorded size). */
  fileBytes?: number;
  /** What ext4 in it spans (default: the file). */
  fsBytes?: number;
  mounted?: boolean;
  /** The loop device's size, when it lags behind the file (a grow that stopped after truncate). */
  loopBytes?: number;
  /** The loop device was attached without autoclear: the unmount leaves it behind. */
  autoclear?: boolean;
  /** What the box's statvfs says (default: the fake's 1 TiB box, 900 GiB free). */
  box?: { totalBytes: number; freeBytes: number };
}

/** A plain stack with the box up and this machine's lock; the image mounted unless told otherwise. */
async function plainStack(o: PlainState = {}): Promise<void> {
  const recorded = o.recorded ?? GiB;
  const fileBytes = o.fileBytes ?? recorded;
  const base = makeConfig(sb);
  await writeConfig(sb, { ...base, image: { ...base.image, sizeBytes: recorded } });
  await putOnBox(sb, 'filesystem.img');
  await m.mountBox(sb.boxMount, BOX_SOURCE);
  if (o.box) m.world.space.set(sb.boxMount, o.box);
  await writeLock(sb, ourLock(sb));
  await mkdir(sb.mountPoint, { recursive: true });
  m.fileSize(sb.image, fileBytes, 5 * MiB);
  m.world.remoteAllocated = 5 * MiB;
  m.ext4(sb.image, UUID, { blockCount: blocks(o.fsBytes ?? fileBytes) });
  if (o.mounted ?? true) {
    const loop = m.attach(sb.image, { autoclear: o.autoclear });
    if (o.loopBytes !== undefined) m.world.deviceBytes.set(loop, o.loopBytes);
    m.mountFs(sb.mountPoint, loop);
  }
}

const grow = (flags: Partial<GrowFlags>, io: TestIo = testIo(m)) => growCommand({ config: sb.config, ...flags }, io);
const recordedBytes = async (): Promise<number> => (JSON.parse(await readFile(sb.config, 'utf8')) as Config).image.sizeBytes;
const text = (io: TestIo): string => io.reporter.lines.join('\n');
const fsBlocks = (): number | undefined => m.world.superblocks.get(sb.image)?.blockCount;
/** The dry-run's `! …` lines, without their indentation. */
const bangs = (io: TestIo): string[] => io.reporter.lines.filter((l) => l.startsWith('  ! ')).map((l) => l.slice(4));

/** A clock that moves a quarter of a second each time it is read (for how long the filesystem was away). */
function ticking(): () => Date {
  let t = Date.parse('2025-01-02T03:04:05.000Z');
  return () => new Date((t += 250));
}

class ProgressReporter extends MemoryReporter {
  readonly progressed: string[] = [];
  progress(text: string): void {
    this.progressed.push(text);
  }
}

/** The fake machine's probes, counting how often anything was asked. */
function counted(): { probes: Probes; calls: () => number } {
  let n = 0;
  const probes = new Proxy(m.probes, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver) as unknown;
      return typeof v === 'function' ? (...args: unknown[]) => (n++, (v as (...a: unknown[]) => unknown)(...args)) : v;
    },
  });
  return { probes, calls: () => n };
}

/** The offline resize2fs, keeping what it overwrites in an undo file next to the config. */
const OFFLINE = (): string => `resize2fs -z ${sb.configDir}/logs/resize2fs-${UUID}.e2undo ${sb.image}`;
/** …as a dry-run shows it: with the undo file's directory, and its removal once the resize is done. */
const offlinePlan = (): string[] => [
  `mkdir -p -m 0700 ${sb.configDir}/logs`,
  expect.stringMatching(new RegExp(`^write ${sb.configDir}/logs/resize2fs-${UUID}\\.e2undo\\.before\\.json \\(the filesystem before the resize\\) \\(mode 0600, \\d+ bytes, atomic\\)$`)) as string,
  OFFLINE(),
  `rm ${sb.configDir}/logs/resize2fs-${UUID}.e2undo  (the resize finished: nothing to undo)`,
  `rm ${sb.configDir}/logs/resize2fs-${UUID}.e2undo.before.json  (and its record)`,
];
const truncate = (bytes = 3 * GiB): string => `truncate '--size=>${bytes}' ${sb.image}`;
/** The offline path after the online resize: unmount, e2fsck -f, resize2fs on the image, mount again (a new, buffered loop device). */
const offlineAfter = (): string[] => [
  `sync --file-system ${sb.mountPoint}`,
  `umount ${sb.mountPoint}`,
  `e2fsck -f -p -C 1 ${sb.image}`,
  OFFLINE(),
  `mount -t ext4 -o loop,noatime,noinit_itable ${sb.image} ${sb.mountPoint}`,
];

describe('hbs grow: a mounted filesystem', () => {
  it('grows online where the kernel allows it: file, loop device, ext4, then the config', async () => {
    await plainStack();
    const io = testIo(m);
    const out = await grow({ size: '3G' }, io);
    expect(m.ran).toEqual([truncate(), 'losetup --set-capacity /dev/loop0', 'resize2fs /dev/loop0']);
    expect(out).toMatchObject({ path: 'online', fromBytes: GiB, targetBytes: 3 * GiB, fsBefore: GiB, fsAfter: { blockCount: blocks(3 * GiB) } });
    expect(m.world.files.get(sb.image)?.sizeBytes).toBe(3 * GiB);
    expect(m.world.deviceBytes.get('/dev/loop0')).toBe(3 * GiB);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
    expect(m.world.mounts.get(sb.mountPoint)?.source).toBe('/dev/loop0');
    expect(await recordedBytes()).toBe(3 * GiB);
    const t = text(io);
    expect(t).toContain('image file  1 GiB → 3 GiB');
    expect(t).toContain('ext4        1 GiB → 3 GiB (786432 blocks of 4096 bytes)');
    expect(t).toContain('stayed mounted');
  });

  it('takes the offline path with --offline when the kernel refuses the online resize (EPERM), and says how long it was away', async () => {
    await plainStack();
    m.failNext(['resize2fs', '/dev/loop0'], EPERM);
    const io = testIo(m, { deps: { now: ticking() } });
    const out = await grow({ size: '3G', offline: true }, io);
    expect(m.ran).toEqual([truncate(), 'losetup --set-capacity /dev/loop0', 'resize2fs /dev/loop0', ...offlineAfter()]);
    expect(out.path).toBe('offline');
    expect(out.offlineMs).toBeGreaterThan(0);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
    expect(m.world.mounts.get(sb.mountPoint)?.source).toBe('/dev/loop1');
    expect(m.loopOf(sb.image)?.directIo).toBe(false);
    expect(await recordedBytes()).toBe(3 * GiB);
    const t = text(io);
    expect(t).toContain('refused to grow the mounted filesystem online: resize2fs: Permission denied to resize filesystem');
    expect(t).toMatch(/unmounted for \d+\.\d s/);
  });

  it('without --offline and without a terminal, stops on EPERM telling to pass --offline; the filesystem stays mounted; a re-run with --offline finishes', async () => {
    await plainStack();
    m.failNext(['resize2fs', '/dev/loop0'], EPERM);
    const e = await rejection(grow({ size: '3G' }));
    expect(e.exitCode).toBe(EXIT.failed);
    expect(e.hint).toMatch(/re-run with --offline/);
    expect(e.message).toContain('re-running the same hbs grow finishes it');
    expect(m.ran).toEqual([truncate(), 'losetup --set-capacity /dev/loop0', 'resize2fs /dev/loop0']);
    expect(m.world.mounts.has(sb.mountPoint)).toBe(true);
    expect(fsBlocks()).toBe(blocks(GiB));
    expect(await recordedBytes()).toBe(GiB);

    m.failNext(['resize2fs', '/dev/loop0'], EPERM);
    const io = testIo(m);
    await grow({ size: '3G', offline: true }, io);
    expect(text(io)).toContain('Resuming: the image file is already 3 GiB, but ext4 inside spans only 1 GiB');
    expect(m.ran.slice(3)).toEqual(['resize2fs /dev/loop0', ...offlineAfter()]);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
    expect(await recordedBytes()).toBe(3 * GiB);
  });

  it('asks in a terminal when the refusal comes as a surprise, and goes offline on yes', async () => {
    await plainStack();
    m.failNext(['resize2fs', '/dev/loop0'], EPERM);
    const p = scriptedPrompter([true]);
    expect((await grow({ size: '3G' }, testIo(m, { prompter: p }))).path).toBe('offline');
    expect(p.asked).toHaveLength(1);
    expect(p.asked[0]).toContain(`Unmount ${sb.mountPoint}`);
    expect(m.ran.slice(3)).toEqual(offlineAfter());
  });

  it('stops with exit 130 when the person says no, leaving the filesystem mounted', async () => {
    await plainStack();
    m.failNext(['resize2fs', '/dev/loop0'], EPERM);
    const e = await rejection(grow({ size: '3G' }, testIo(m, { prompter: scriptedPrompter([false]) })));
    expect(e.exitCode).toBe(EXIT.aborted);
    expect(m.ran).not.toContain(`umount ${sb.mountPoint}`);
    expect(m.world.mounts.get(sb.mountPoint)?.source).toBe('/dev/loop0');
    expect(await recordedBytes()).toBe(GiB);
  });

  it('knows up front when the kernel will refuse (no CAP_SYS_RESOURCE): without consent nothing is changed', async () => {
    await plainStack();
    m.world.canResizeOnline = false;
    const e = await rejection(grow({ size: '3G' }));
    expect(e.exitCode).toBe(EXIT.failed);
    expect(e.message).toContain('CAP_SYS_RESOURCE');
    expect(e.message).toContain('nothing was changed');
    expect(e.hint).toContain('--offline');
    expect(m.ran).toEqual([]);
    expect(m.world.files.get(sb.image)?.sizeBytes).toBe(GiB);
  });

  it('asks once, before any change, when the refusal is certain; then the kernel refuses and the offline path runs without a second question', async () => {
    await plainStack();
    m.world.canResizeOnline = false;
    let ranWhenAsked = -1;
    const p = scriptedPrompter([true]);
    const confirm = p.confirm;
    p.confirm = (q) => ((ranWhenAsked = m.ran.length), confirm(q));
    expect((await grow({ size: '3G' }, testIo(m, { prompter: p }))).path).toBe('offline');
    expect(p.asked).toHaveLength(1);
    expect(ranWhenAsked).toBe(0);
    expect(m.ran).toEqual([truncate(), 'losetup --set-capacity /dev/loop0', 'resize2fs /dev/loop0', ...offlineAfter()]);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
  });

  it('shows e2fsck progress: a line per pass, percentages for the spinner', async () => {
    await plainStack();
    m.world.canResizeOnline = false;
    m.failNext(['e2fsck'], { exitCode: 0, stdout: PROGRESS });
    const io: TestIo = { ...testIo(m), reporter: new ProgressReporter() };
    await grow({ size: '3G', offline: true }, io);
    const t = text(io);
    expect(t).toContain('e2fsck pass 1 of 5: inodes, blocks and sizes');
    expect(t).toContain('e2fsck pass 5 of 5: group summary');
    expect(t).toContain('e2fsck: clean');
    expect((io.reporter as ProgressReporter).progressed).toEqual(expect.arrayContaining(['pass 1 of 5, 0%', 'pass 1 of 5, 50%', 'pass 5 of 5, 100%']));
  });

  it('leaves the filesystem unmounted and unresized when e2fsck will not fix it unattended', async () => {
    await plainStack();
    m.world.canResizeOnline = false;
    m.failNext(['e2fsck'], { exitCode: 4, stdout: '1 0 8 /img\n/img: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY.\n' });
    const e = await rejection(grow({ size: '3G', offline: true }));
    expect(e.message).toMatch(/e2fsck could not repair .* \(exit 4\); the filesystem was not resized and is left unmounted/);
    expect(e.details).toContain('UNEXPECTED INCONSISTENCY');
    expect(e.hint).toContain(`e2fsck -f ${sb.image}`);
    expect(e.hint).toContain('re-run the same hbs grow');
    expect(m.ran.at(-1)).toBe(`e2fsck -f -p -C 1 ${sb.image}`);
    expect(m.world.mounts.has(sb.mountPoint)).toBe(false);
    expect(fsBlocks()).toBe(blocks(GiB));
    expect(await recordedBytes()).toBe(GiB);
  });

  it('names what keeps the mount busy; a re-run once it is free picks up where it stopped', async () => {
    await plainStack();
    m.world.canResizeOnline = false;
    m.world.holders.set(sb.mountPoint, [{ pid: 4242, command: 'rsync -a /srv/ /mnt/', via: 'cwd' }]);
    m.failNext(['umount', sb.mountPoint], { exitCode: 32, stderr: `umount: ${sb.mountPoint}: target is busy.\n` });
    const e = await rejection(grow({ size: '3G', offline: true }));
    expect(e.message).toContain('is busy; these processes hold it');
    expect(e.message).toContain('pid 4242 (cwd): rsync -a /srv/ /mnt/');
    expect(e.hint).toContain('re-run the same hbs grow');
    expect(m.world.mounts.has(sb.mountPoint)).toBe(true);
    expect(await recordedBytes()).toBe(GiB);

    m.world.holders.clear();
    const before = m.ran.length;
    await grow({ size: '3G', offline: true });
    // The file and the loop device have their new size already: only the filesystem is left.
    expect(m.ran.slice(before)).toEqual(['resize2fs /dev/loop0', ...offlineAfter()]);
    expect(await recordedBytes()).toBe(3 * GiB);
  });

  it('detaches a loop device the unmount left attached before it checks the image', async () => {
    await plainStack({ autoclear: false });
    m.world.canResizeOnline = false;
    expect((await grow({ size: '3G', offline: true })).path).toBe('offline');
    expect(m.ran.slice(3, 7)).toEqual([`sync --file-system ${sb.mountPoint}`, `umount ${sb.mountPoint}`, 'losetup --detach /dev/loop0', `e2fsck -f -p -C 1 ${sb.image}`]);
    expect(m.world.loops.map((l) => l.name)).toEqual(['/dev/loop1']);
  });

  it('a loop device nothing can detach: stops before e2fsck, naming what holds it', async () => {
    await plainStack({ autoclear: false });
    m.world.canResizeOnline = false;
    m.doNothingNext(['losetup', '--detach']);
    m.world.holders.set('/dev/loop0', [{ pid: 4242, command: 'sleep infinity', via: 'mounted at /srv/x in its own mount namespace' }]);
    const err = await rejection(grow({ size: '3G', offline: true }));
    expect(err.message).toBe(`${sb.image} is still attached as /dev/loop0`);
    expect(err.details).toContain('pid 4242 (mounted at /srv/x in its own mount namespace): sleep infinity');
    expect(m.ran.some((l) => l.startsWith('e2fsck') || l.startsWith('resize2fs -z')), m.ran.join('\n')).toBe(false);
  });
});

describe('hbs grow: an unmounted filesystem', () => {
  /** An undo file (and hbs's mark of the filesystem before that resize) left by an earlier hbs grow. */
  async function leftUndo(log: UndoLog | undefined, mark: object | undefined): Promise<string> {
    const undo = `${sb.configDir}/logs/resize2fs-${UUID}.e2undo`;
    await mkdir(`${sb.configDir}/logs`, { recursive: true });
    await writeFile(undo, 'what resize2fs overwrote');
    if (mark) await writeFile(`${undo}.before.json`, JSON.stringify(mark));
    if (log) m.world.undoLogs.set(undo, log);
    return undo;
  }

  it('a resize2fs that was killed halfway (its undo file is there): undone first (e2undo -f), then checked and grown again', async () => {
    // The superblock of a half-done resize may already claim the new size: only the undo file tells.
    await plainStack({ mounted: false, recorded: GiB, fileBytes: 3 * GiB, fsBytes: 3 * GiB });
    const undo = await leftUndo(undefined, { blockCount: blocks(GiB) });
    m.world.undoBlocks.set(sb.image, blocks(GiB));
    const io = testIo(m);
    await grow({ size: '3G' }, io);
    expect(m.ran).toEqual([`e2undo -f ${undo} ${sb.image}`, `e2fsck -f -p -C 1 ${sb.image}`, OFFLINE()]);
    expect(text(io)).toContain('did not finish: the resize was killed halfway: putting back what it had overwritten');
    expect(fsBlocks()).toBe(blocks(3 * GiB));
    expect(await recordedBytes()).toBe(3 * GiB);
    await expect(readFile(undo)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(readFile(`${undo}.before.json`)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('an undo file of a resize killed before it wrote anything (no header): removed, nothing replayed', async () => {
    await plainStack({ mounted: false, recorded: GiB, fileBytes: 3 * GiB, fsBytes: GiB });
    const undo = await leftUndo({ state: 'blank' }, { blockCount: blocks(GiB) });
    await grow({ size: '3G' });
    expect(m.ran.filter((l) => l.startsWith('e2undo'))).toEqual([]);
    await expect(readFile(undo)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(fsBlocks()).toBe(blocks(3 * GiB));
  });

  it('an undo file of a resize that finished (only its removal was killed): removed, the resize is kept', async () => {
    await plainStack({ mounted: false, recorded: GiB, fileBytes: 3 * GiB, fsBytes: 3 * GiB });
    const undo = await leftUndo({ state: 'finished', matches: true }, { blockCount: blocks(GiB) });
    m.world.undoBlocks.set(sb.image, blocks(GiB));
    await grow({ size: '3G' });
    expect(m.ran.filter((l) => l.startsWith('e2undo'))).toEqual([]);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
    await expect(readFile(undo)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a resize2fs that stopped with an error (finished, same size, the filesystem untouched since): e2undo without -f', async () => {
    await plainStack({ mounted: false, recorded: GiB, fileBytes: 3 * GiB, fsBytes: GiB });
    const undo = await leftUndo({ state: 'finished', matches: true }, { blockCount: blocks(GiB) });
    await grow({ size: '3G' });
    expect(m.ran.slice(0, 1)).toEqual([`e2undo ${undo} ${sb.image}`]);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
  });

  it.each([
    ['finished, but the filesystem changed since (e2undo -n refuses it)', { state: 'finished', matches: false } as const, { blockCount: 0 }],
    ['interrupted, and nothing records the filesystem before it', { state: 'interrupted' } as const, undefined],
    ['interrupted, and mounted since (the mount count moved on)', { state: 'interrupted' } as const, { blockCount: 0, mountCount: 3 }],
  ])('an undo file that no longer applies (%s): set aside, never replayed', async (_what, log, mark) => {
    await plainStack({ mounted: false, recorded: GiB, fileBytes: 3 * GiB, fsBytes: GiB });
    m.ext4(sb.image, UUID, { blockCount: blocks(GiB), history: { mountCount: 4 } });
    const undo = await leftUndo(log, mark && { ...mark, blockCount: blocks(GiB) });
    const io = testIo(m);
    await grow({ size: '3G' }, io);
    expect(m.ran.filter((l) => l.startsWith('e2undo'))).toEqual([]);
    expect(m.ran[0]).toMatch(new RegExp(`^mv --no-clobber -- ${undo} ${undo}\\.stale-`));
    expect(text(io)).toContain('is kept aside, not replayed');
    expect(fsBlocks()).toBe(blocks(3 * GiB));
  });

  it('records the filesystem before the offline resize (what only a mount or e2fsck changes), and removes it after', async () => {
    await plainStack({ mounted: false });
    m.ext4(sb.image, UUID, { blockCount: blocks(GiB), history: { mountCount: 2, lastMount: 'Wed Dec  2 09:00:00 2026', lastChecked: 'Wed Dec  2 09:01:00 2026' } });
    let seen: string | undefined;
    m.onRun = async (line) => {
      if (line.startsWith('resize2fs -z')) seen = await readFile(`${sb.configDir}/logs/resize2fs-${UUID}.e2undo.before.json`, 'utf8');
    };
    await grow({ size: '3G' });
    expect(JSON.parse(seen!)).toEqual({ blockCount: blocks(GiB), mountCount: 2, lastMount: 'Wed Dec  2 09:00:00 2026', lastChecked: 'Wed Dec  2 09:01:00 2026' });
    await expect(readFile(`${sb.configDir}/logs/resize2fs-${UUID}.e2undo.before.json`)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('extends the file, checks and grows ext4 offline, and mounts nothing', async () => {
    await plainStack({ mounted: false });
    m.world.canResizeOnline = false;
    const io = testIo(m);
    const out = await grow({ size: '3G' }, io);
    expect(out.path).toBe('offline');
    expect(out.offlineMs).toBeUndefined();
    expect(m.ran).toEqual([truncate(), `e2fsck -f -p -C 1 ${sb.image}`, OFFLINE()]);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
    expect(m.world.mounts.has(sb.mountPoint)).toBe(false);
    expect(m.world.loops).toEqual([]);
    expect(text(io)).toContain('offline (it was not mounted)');
    expect(await recordedBytes()).toBe(3 * GiB);
  });

  it('stops when the image changed size between the look and the change', async () => {
    await plainStack();
    m.world.canResizeOnline = false;
    // Someone else grows the file while the person answers the question.
    const p = scriptedPrompter([true]);
    const confirm = p.confirm;
    p.confirm = (q) => (m.fileSize(sb.image, 2 * GiB), confirm(q));
    const e = await rejection(grow({ size: '3G' }, testIo(m, { prompter: p })));
    expect(e.message).toMatch(/changed under hbs grow: it was 1073741824 bytes, now 2147483648 bytes; nothing was changed/);
    expect(m.ran).toEqual([]);
    expect(await recordedBytes()).toBe(GiB);
  });
});

describe('hbs grow: resuming', () => {
  it('finishes a grow that stopped after the file grew (same relative request), and says so', async () => {
    await plainStack({ recorded: GiB, fileBytes: 3 * GiB, fsBytes: GiB, loopBytes: GiB });
    m.world.canResizeOnline = false;
    const io = testIo(m);
    const out = await grow({ size: '+2G', offline: true }, io);
    expect(out.path).toBe('offline');
    expect(m.ran).toEqual(['losetup --set-capacity /dev/loop0', 'resize2fs /dev/loop0', ...offlineAfter()]);
    const t = text(io);
    expect(t).toMatch(/^Resuming: the image file is already 3 GiB, but ext4 inside spans only 1 GiB/m);
    expect(t).toMatch(/• Extend the image file — .* is already 3 GiB/);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
    expect(await recordedBytes()).toBe(3 * GiB);
  });

  it('skips the loop refresh when the loop device already has the new size', async () => {
    await plainStack({ fileBytes: 3 * GiB, fsBytes: GiB });
    expect((await grow({ size: '3G' })).path).toBe('online');
    expect(m.ran).toEqual(['resize2fs /dev/loop0']);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
  });

  it('only records the size when file and filesystem were grown but the config was not', async () => {
    await plainStack({ fileBytes: 3 * GiB });
    m.world.canResizeOnline = false;
    const out = await grow({ size: '3G' });
    expect(out.path).toBe('config-only');
    expect(m.ran).toEqual([]);
    expect(await recordedBytes()).toBe(3 * GiB);
  });
});

describe('hbs grow: refusals change nothing', () => {
  const refused = async (flags: Partial<GrowFlags>, state: PlainState = { recorded: 3 * GiB }) => {
    await plainStack(state);
    const before = await readFile(sb.config, 'utf8');
    const e = await rejection(grow(flags));
    expect(m.ran).toEqual([]);
    expect(await readFile(sb.config, 'utf8')).toBe(before);
    return e;
  };

  it('refuses a smaller size with exit 2 and the current size', async () => {
    const e = await refused({ size: '2G' });
    expect(e).toBeInstanceOf(UsageError);
    expect(e.message).toContain('current size, 3 GiB (3221225472 bytes)');
    expect(e.message).toContain('never shrinks');
  });

  it('refuses the same size with exit 2', async () => {
    const e = await refused({ size: '3G' });
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.message).toContain('not larger than');
  });

  it('refuses a negative size: hbs grow never shrinks', async () => {
    const e = await refused({ size: '-1G' });
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.message).toContain('never shrinks');
  });

  it('refuses a size the box cannot hold, with the figures; --force grows anyway', async () => {
    const state = { recorded: 3 * GiB, mounted: false, box: { totalBytes: 1000 * GiB, freeBytes: 100 * GiB } };
    const e = await refused({ size: '+200G' }, state);
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.message).toMatch(/203 GiB.* does not fit the box: .*occupies 5 MiB now.* 100 GiB free of 1000 GiB/);
    expect(e.hint).toContain('--force');
    await grow({ size: '+200G', force: true });
    expect(m.ran[0]).toBe(truncate(203 * GiB));
    expect(await recordedBytes()).toBe(203 * GiB);
  });

  it('refuses an image attached somewhere besides its mount point', async () => {
    await plainStack({ recorded: 3 * GiB });
    const extra = m.attach(sb.image);
    const e = await rejection(grow({ size: '4G' }));
    expect(e.message).toContain(`also attached as ${extra}`);
    expect(m.ran).toEqual([]);
  });

  it('refuses while another machine holds the lock', async () => {
    await plainStack();
    await writeLock(sb, otherLock);
    const e = await rejection(grow({ size: '3G' }));
    expect(e.message).toContain('other-host');
    expect(m.ran).toEqual([]);
  });

  it('refuses when the box is not mounted: the image cannot be reached', async () => {
    await plainStack({ mounted: false });
    m.world.mounts.delete(sb.boxMount);
    const e = await rejection(grow({ size: '3G' }));
    expect(e.message).toMatch(/the box is down: .* nothing was changed/);
    expect(e.hint).toContain('hbs mount');
    expect(m.ran).toEqual([]);
  });

  it('checks --size, the config and root before it looks at the machine', async () => {
    await plainStack();
    const { probes, calls } = counted();
    const io = (uid = 0): TestIo => ({ ...testIo(m), probes, preflight: { ...testIo(m).preflight!, uid: () => uid } });
    expect((await rejection(growCommand({ config: sb.config, size: '1.5.0G' }, io(1000)))).exitCode).toBe(EXIT.usage);
    expect((await rejection(growCommand({ config: sb.config }, io()))).message).toMatch(/^missing: --size/);
    const noConfig = await rejection(growCommand({ config: `${sb.root}/nope.json`, size: '3G' }, io()));
    expect(noConfig).toBeInstanceOf(UsageError);
    expect(noConfig.message).toContain('nope.json');
    const notRoot = await rejection(growCommand({ config: sb.config, size: '3G' }, io(1000)));
    expect(notRoot).toBeInstanceOf(PreflightError);
    expect(notRoot.exitCode).toBe(EXIT.preflight);
    expect(notRoot.message).toContain('root privileges');
    expect(calls()).toBe(0);
    expect(m.ran).toEqual([]);
  });
});

describe('hbs grow --dry-run', () => {
  it('prints the online plan and, where the kernel will refuse, the offline fallback; changes nothing (golden)', async () => {
    await plainStack();
    m.world.canResizeOnline = false;
    const io = testIo(m);
    const out = await grow({ size: '+2G', dryRun: true }, io);
    expect(out.path).toBe('dry-run');
    expect(m.ran).toEqual([]);
    expect(bangs(io)).toEqual([
      truncate(),
      'losetup --set-capacity /dev/loop0',
      'resize2fs /dev/loop0',
      `sync --file-system ${sb.mountPoint}`,
      `umount ${sb.mountPoint}`,
      `e2fsck -f -p -C 1 ${sb.image}`,
      ...offlinePlan(),
      `mount -t ext4 -o loop,noatime,noinit_itable ${sb.image} ${sb.mountPoint}`,
      expect.stringMatching(new RegExp(`^write ${sb.config} \\(mode 0600, \\d+ bytes, atomic\\)$`)),
    ]);
    expect(text(io)).toContain('a real run needs it: --offline');
    expect(m.world.files.get(sb.image)?.sizeBytes).toBe(GiB);
    expect(await recordedBytes()).toBe(GiB);
    await expectGolden('grow-dry-run.txt', io.reporter.lines, sb.root);
  });

  it('prints only the online plan where online resize may work', async () => {
    await plainStack();
    const io = testIo(m);
    await grow({ size: '3G', dryRun: true }, io);
    expect(bangs(io).some((l) => l.includes('umount'))).toBe(false);
    expect(text(io)).toContain('If the kernel refuses the online resize, hbs offers the offline path');
    expect(m.ran).toEqual([]);
  });

  it('prints the offline plan for an unmounted filesystem', async () => {
    await plainStack({ mounted: false });
    const io = testIo(m);
    await grow({ size: '3G', dryRun: true }, io);
    expect(bangs(io).slice(0, 7)).toEqual([truncate(), `e2fsck -f -p -C 1 ${sb.image}`, ...offlinePlan()]);
    expect(m.ran).toEqual([]);
  });
});
