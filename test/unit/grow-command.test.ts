import { readFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, PreflightError, UsageError } from '../../src/core/errors.js';
import type { Expectation } from '../../src/core/recording-runner.js';
import { directIoOn } from './canned.js';
import type { GrowCliFlags } from '../../src/commands/grow.js';
import {
  answering,
  backFile,
  DEV,
  findmntMp,
  geometry,
  GiB,
  loops,
  makeGrowSandbox,
  probes,
  type ProgressReporter,
  recordedSize,
  statImage,
  type GrowRun,
  type GrowRunOptions,
  type GrowSandbox,
  rejection,
  runGrow,
  setupRun,
  text,
  writes,
  type MachineState,
} from './grow-fixtures.js';

let sb: GrowSandbox;
beforeEach(async () => {
  sb = await makeGrowSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

const B1G = GiB / 4096;
const B3G = (3 * GiB) / 4096;
const EPERM = { exitCode: 1, stderr: 'resize2fs 1.47.0 (5-Feb-2023)\nresize2fs: Permission denied to resize filesystem\n' };
const PROGRESS = '1 0 8 /img\n1 4 8 /img\n1 8 8 /img\n2 0 5 /img\n2 5 5 /img\n3 0 2 /img\n4 0 8 /img\n5 0 16 /img\n5 16 16 /img\nhbs-backup: 11/65536 files (0.0% non-contiguous), 12955/262144 blocks\n';

// The changes, literally, in the order hbs makes them.
const recheck = (size = GiB): Expectation => statImage(sb, size);
const truncate = (bytes = 3 * GiB): Expectation => ({ argv: ['truncate', `--size=>${bytes}`, sb.image], write: true });
const loopSize = (bytes: number): Expectation => ({ argv: ['blockdev', '--getsize64', DEV], write: false, stdout: `${bytes}\n` });
const setCapacity: Expectation = { argv: ['losetup', '--set-capacity', DEV], write: true };
const resizeOnline = (answer: Partial<Expectation> = {}): Expectation => ({ argv: ['resize2fs', DEV], write: true, ...answer });
const umount = (answer: Partial<Expectation> = {}): Expectation => ({ argv: ['umount', sb.mountPoint], write: true, ...answer });
const e2fsck = (answer: Partial<Expectation> = {}): Expectation => ({ argv: ['e2fsck', '-f', '-p', '-C', '1', sb.image], write: true, stdout: PROGRESS, ...answer });
const resizeOffline = (): Expectation => ({ argv: ['resize2fs', sb.image], write: true });
/** Mount again, then the loop device under it (found with findmnt) switched to direct I/O. */
const remount = (): Expectation[] => [
  { argv: ['mount', '-t', 'ext4', '-o', 'loop,noatime', sb.image, sb.mountPoint], write: true },
  findmntMp(sb, true),
  ...directIoOn(DEV),
];
/** The check afterwards: the image's size, where it is mounted, the filesystem's block count. */
const verify = (mounted: boolean, blocks = B3G, size = 3 * GiB): Expectation[] => [
  statImage(sb, size),
  findmntMp(sb, mounted),
  ...(mounted ? [backFile(sb)] : []),
  geometry(mounted ? DEV : sb.image, blocks),
];
/** The offline path after an online refusal: a fresh look, then unmount → e2fsck → resize2fs → mount. */
const offlineAfterRefusal = (): Expectation[] => [
  ...probes(sb, { fileBytes: 3 * GiB, fsBlocks: B1G, mounted: true, allocatedBytes: 5 * 2 ** 20 }),
  umount(),
  loops(sb, []),
  e2fsck(),
  resizeOffline(),
  ...remount(),
];

type Run = GrowRun;
const setup = setupRun;
const grow = (run: Run, flags: GrowCliFlags, o: GrowRunOptions = {}): ReturnType<typeof runGrow> => runGrow(sb, run, flags, o);
const mounted1G = { fileBytes: GiB, fsBlocks: B1G, mounted: true, allocatedBytes: 5 * 2 ** 20 };

describe('hbs grow: a mounted filesystem', () => {
  it('grows online where the kernel allows it: file, loop device, ext4, then the config', async () => {
    const run = setup([...probes(sb, mounted1G), recheck(), truncate(), loopSize(GiB), setCapacity, resizeOnline(), ...verify(true)]);
    const out = await grow(run, { size: '3G' });
    run.runner.assertDone();
    expect(out).toMatchObject({ path: 'online', fromBytes: GiB, targetBytes: 3 * GiB, fsBefore: GiB, fsAfter: { blockCount: B3G } });
    expect(await recordedSize(sb)).toBe(3 * GiB);
    expect(text(run.reporter)).toContain('image file  1 GiB → 3 GiB');
    expect(text(run.reporter)).toContain('ext4        1 GiB → 3 GiB (786432 blocks of 4096 bytes)');
    expect(text(run.reporter)).toContain('stayed mounted');
  });

  it('takes the offline path with --offline when the kernel refuses the online resize (EPERM)', async () => {
    const run = setup([...probes(sb, mounted1G), recheck(), truncate(), loopSize(GiB), setCapacity, resizeOnline(EPERM), ...offlineAfterRefusal(), ...verify(true)]);
    const out = await grow(run, { size: '3G', offline: true });
    run.runner.assertDone();
    expect(out.path).toBe('offline');
    expect(out.offlineMs).toBeGreaterThan(0);
    expect(await recordedSize(sb)).toBe(3 * GiB);
    const t = text(run.reporter);
    expect(t).toContain('refused to grow the mounted filesystem online: resize2fs: Permission denied to resize filesystem');
    expect(t).toMatch(/unmounted for \d+\.\d s/);
  });

  it('without --offline and without a terminal, fails on EPERM telling to pass --offline; a re-run finishes', async () => {
    const run = setup([...probes(sb, mounted1G), recheck(), truncate(), loopSize(GiB), setCapacity, resizeOnline(EPERM)]);
    const e = await rejection(grow(run, { size: '3G' }));
    run.runner.assertDone();
    expect(e.exitCode).toBe(EXIT.failed);
    expect(e.hint).toMatch(/re-run with --offline/);
    expect(e.message).toContain('re-running the same hbs grow finishes it');
    expect(writes(run.runner)).not.toContain(`umount ${sb.mountPoint}`);
    expect(await recordedSize(sb)).toBe(GiB);
  });

  it('asks in a terminal when the refusal comes as a surprise, and goes offline on yes', async () => {
    const prompter = answering(true);
    const run = setup([...probes(sb, mounted1G), recheck(), truncate(), loopSize(GiB), setCapacity, resizeOnline(EPERM), ...offlineAfterRefusal(), ...verify(true)]);
    expect((await grow(run, { size: '3G' }, { prompter })).path).toBe('offline');
    expect(prompter.asked).toHaveLength(1);
    expect(prompter.asked[0]).toContain(`Unmount ${sb.mountPoint}`);
  });

  it('stops with exit 130 when the person says no, leaving the filesystem mounted', async () => {
    const run = setup([...probes(sb, mounted1G), recheck(), truncate(), loopSize(GiB), setCapacity, resizeOnline(EPERM)]);
    const e = await rejection(grow(run, { size: '3G' }, { prompter: answering(false) }));
    expect(e.exitCode).toBe(EXIT.aborted);
    run.runner.assertDone();
  });

  it('knows up front when the kernel will refuse (no CAP_SYS_RESOURCE): without consent nothing is changed', async () => {
    const run = setup(probes(sb, mounted1G));
    const e = await rejection(grow(run, { size: '3G' }, { cap: false }));
    run.runner.assertDone();
    expect(e.exitCode).toBe(EXIT.failed);
    expect(e.message).toContain('CAP_SYS_RESOURCE');
    expect(e.message).toContain('nothing was changed');
    expect(e.hint).toContain('--offline');
    expect(writes(run.runner)).toEqual([]);
  });

  it('asks once, before any change, when the refusal is certain; then runs the fallback', async () => {
    const prompter = answering(true);
    const run = setup([...probes(sb, mounted1G), recheck(), truncate(), loopSize(GiB), setCapacity, resizeOnline(EPERM), ...offlineAfterRefusal(), ...verify(true)]);
    expect((await grow(run, { size: '3G' }, { prompter, cap: false })).path).toBe('offline');
    expect(prompter.asked).toHaveLength(1);
    expect(run.runner.calls.filter((c) => c.write !== false)[0]?.argv[0]).toBe('truncate');
  });

  it('shows e2fsck progress: a line per pass, percentages for the spinner', async () => {
    const run = setup([...probes(sb, mounted1G), recheck(), truncate(), loopSize(GiB), setCapacity, resizeOnline(EPERM), ...offlineAfterRefusal(), ...verify(true)]);
    await grow(run, { size: '3G', offline: true });
    const t = text(run.reporter);
    expect(t).toContain('e2fsck pass 1 of 5: inodes, blocks and sizes');
    expect(t).toContain('e2fsck pass 5 of 5: group summary');
    expect(t).toContain('e2fsck: clean');
    expect((run.reporter as ProgressReporter).progressed).toEqual(expect.arrayContaining(['pass 1 of 5, 0%', 'pass 1 of 5, 50%', 'pass 5 of 5, 100%']));
  });

  it('leaves the filesystem unmounted and unresized when e2fsck will not fix it unattended', async () => {
    const run = setup([
      ...probes(sb, mounted1G), recheck(), truncate(), loopSize(GiB), setCapacity, resizeOnline(EPERM),
      ...probes(sb, { ...mounted1G, fileBytes: 3 * GiB }), umount(), loops(sb, []),
      e2fsck({ exitCode: 4, stdout: '1 0 8 /img\n/img: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY.\n' }),
    ]);
    const e = await rejection(grow(run, { size: '3G', offline: true }));
    run.runner.assertDone();
    expect(e.message).toMatch(/e2fsck found problems .* not resized and is left unmounted/);
    expect(e.details).toContain('UNEXPECTED INCONSISTENCY');
    expect(e.hint).toContain(`e2fsck -f ${sb.image}`);
    expect(await recordedSize(sb)).toBe(GiB);
  });

  it('names what keeps the mount busy and resumes later', async () => {
    const run = setup([
      ...probes(sb, mounted1G), recheck(), truncate(), loopSize(GiB), setCapacity, resizeOnline(EPERM),
      ...probes(sb, { ...mounted1G, fileBytes: 3 * GiB }), umount({ exitCode: 32, stderr: `umount: ${sb.mountPoint}: target is busy.\n` }),
    ]);
    const e = await rejection(grow(run, { size: '3G', offline: true }));
    expect(e.message).toContain('target is busy');
    expect(e.hint).toContain('re-run the same hbs grow');
  });

  it('detaches a loop device the unmount left attached before touching the image', async () => {
    const run = setup([
      ...probes(sb, mounted1G), recheck(), truncate(), loopSize(GiB), setCapacity, resizeOnline(EPERM),
      ...probes(sb, { ...mounted1G, fileBytes: 3 * GiB }), umount(),
      ...Array.from({ length: 51 }, () => loops(sb, [DEV])),
      { argv: ['losetup', '--detach', DEV], write: true },
      e2fsck(), resizeOffline(), ...remount(), ...verify(true),
    ]);
    expect((await grow(run, { size: '3G', offline: true })).path).toBe('offline');
    run.runner.assertDone();
  });
});

describe('hbs grow: an unmounted filesystem', () => {
  it('extends the file, checks and grows ext4 offline, and does not mount anything', async () => {
    const run = setup([...probes(sb, { ...mounted1G, mounted: false }), recheck(), truncate(), e2fsck(), resizeOffline(), ...verify(false)]);
    const out = await grow(run, { size: '3G' }, { cap: false });
    run.runner.assertDone();
    expect(out.path).toBe('offline');
    expect(out.offlineMs).toBeUndefined();
    expect(writes(run.runner)).toEqual([`truncate --size=>${3 * GiB} ${sb.image}`, `e2fsck -f -p -C 1 ${sb.image}`, `resize2fs ${sb.image}`]);
    expect(text(run.reporter)).toContain('offline (it was not mounted)');
  });

  it('stops when the image changed size between the look and the change', async () => {
    const run = setup([...probes(sb, { ...mounted1G, mounted: false }), recheck(2 * GiB)]);
    const e = await rejection(grow(run, { size: '3G' }));
    expect(e.message).toMatch(/changed while hbs was planning .* nothing was changed/);
    expect(writes(run.runner)).toEqual([]);
  });
});

describe('hbs grow: resuming', () => {
  it('finishes a grow that stopped after the file grew (same relative request), and says so', async () => {
    await sb.cleanup();
    sb = await makeGrowSandbox(GiB);
    const state = { fileBytes: 3 * GiB, fsBlocks: B1G, mounted: true, allocatedBytes: 5 * 2 ** 20 };
    const run = setup([...probes(sb, state), loopSize(GiB), setCapacity, resizeOnline(EPERM), ...offlineAfterRefusal(), ...verify(true)]);
    const out = await grow(run, { size: '+2G', offline: true }, { cap: false });
    run.runner.assertDone();
    expect(out.path).toBe('offline');
    expect(writes(run.runner)).not.toContainEqual(expect.stringMatching(/^truncate/));
    const t = text(run.reporter);
    expect(t).toMatch(/^Resuming: the image file is already 3 GiB, but ext4 inside spans only 1 GiB/m);
    expect(t).toMatch(/• Extend the image file — .* is already 3 GiB/);
    expect(await recordedSize(sb)).toBe(3 * GiB);
  });

  it('skips the loop refresh when the loop device already has the new size', async () => {
    const state = { fileBytes: 3 * GiB, fsBlocks: B1G, mounted: true, allocatedBytes: 0 };
    const run = setup([...probes(sb, state), loopSize(3 * GiB), resizeOnline(), ...verify(true)]);
    expect((await grow(run, { size: '3G' })).path).toBe('online');
    expect(writes(run.runner)).toEqual([`resize2fs ${DEV}`]);
  });

  it('only records the size when file and filesystem were grown but the config was not', async () => {
    const run = setup([...probes(sb, { fileBytes: 3 * GiB, fsBlocks: B3G, mounted: true, allocatedBytes: 0 }), ...verify(true)]);
    const out = await grow(run, { size: '3G' }, { cap: false });
    run.runner.assertDone();
    expect(out.path).toBe('config-only');
    expect(writes(run.runner)).toEqual([]);
    expect(await recordedSize(sb)).toBe(3 * GiB);
  });
});

describe('hbs grow: refusals change nothing', () => {
  const refused = async (flags: GrowCliFlags, state: MachineState = { fileBytes: 3 * GiB, fsBlocks: B3G, mounted: true, allocatedBytes: 0 }, recorded = 3 * GiB) => {
    await sb.cleanup();
    sb = await makeGrowSandbox(recorded);
    const before = await readFile(sb.config, 'utf8');
    const run = setup(probes(sb, state));
    const e = await rejection(grow(run, flags));
    expect(writes(run.runner)).toEqual([]);
    expect(await readFile(sb.config, 'utf8')).toBe(before);
    return e;
  };

  it('refuses a smaller size with exit 2 and the current size', async () => {
    const e = await refused({ size: '2G' });
    expect(e).toBeInstanceOf(UsageError);
    expect(e.message).toContain('current size, 3 GiB (3221225472 bytes)');
  });

  it('refuses the same size with exit 2', async () => {
    const e = await refused({ size: '3G' });
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.message).toContain('not larger than');
  });

  it('refuses a size the box cannot hold, with the figures, unless --force', async () => {
    const e = await refused({ size: '+200G' }, { fileBytes: 3 * GiB, fsBlocks: B3G, mounted: false, allocatedBytes: 0, freeBytes: 100 * GiB });
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.message).toMatch(/203 GiB.* does not fit the box: .*100 GiB free of 1000 GiB/);
  });

  it('checks --size before anything else, and needs a config and root', async () => {
    const run = setup([]);
    expect((await rejection(grow(run, { size: '1.5.0G' }, { uid: 1000 }))).exitCode).toBe(EXIT.usage);
    expect((await rejection(grow(run, {}))).message).toMatch(/^missing: --size/);
    const noConfig = await rejection(grow(run, { size: '3G', config: `${sb.root}/nope.json` }));
    expect(noConfig).toBeInstanceOf(UsageError);
    expect(noConfig.message).toContain('nope.json');
    const notRoot = await rejection(grow(run, { size: '3G' }, { uid: 1000 }));
    expect(notRoot).toBeInstanceOf(PreflightError);
    expect(notRoot.exitCode).toBe(EXIT.preflight);
    expect(run.runner.calls).toEqual([]);
  });

  it('refuses an image attached somewhere besides its mount point', async () => {
    const e = await refused({ size: '4G' }, { fileBytes: 3 * GiB, fsBlocks: B3G, mounted: true, allocatedBytes: 0, extraLoops: ['/dev/loop7'] });
    expect(e.message).toContain('also attached as /dev/loop7');
  });
});

describe('hbs grow --dry-run', () => {
  it('prints the online plan and, where the kernel will refuse, the offline fallback; changes nothing', async () => {
    const run = setup([...probes(sb, mounted1G), loopSize(GiB)], true);
    const out = await grow(run, { size: '+2G', dryRun: true }, { cap: false });
    run.runner.assertDone();
    expect(out.path).toBe('dry-run');
    expect(writes(run.runner)).toEqual([]);
    const bang = run.reporter.lines.filter((l) => l.startsWith('  ! ')).map((l) => l.slice(4));
    expect(bang).toEqual([
      `re-check right before: ${sb.image} is still ${GiB} bytes (else stop)`,
      `truncate '--size=>${3 * GiB}' ${sb.image}`,
      `losetup --set-capacity ${DEV}`,
      `resize2fs ${DEV}`,
      `umount ${sb.mountPoint}`,
      `wait until ${DEV} is detached (mount -o loop detaches it on unmount), else losetup --detach ${DEV}`,
      `e2fsck -f -p -C 1 ${sb.image}`,
      `resize2fs ${sb.image}`,
      `mount -t ext4 -o loop,noatime ${sb.image} ${sb.mountPoint}`,
      `losetup --direct-io=on <the loop device under ${sb.mountPoint}> (if the kernel refuses, it stays buffered)`,
      expect.stringMatching(new RegExp(`^write ${sb.config} \\(mode 0600, \\d+ bytes, atomic\\)$`)),
    ]);
    expect(text(run.reporter)).toContain('a real run needs it: --offline');
    expect(await recordedSize(sb)).toBe(GiB);
  });

  it('prints only the online plan where online resize may work', async () => {
    const run = setup([...probes(sb, mounted1G), loopSize(GiB)], true);
    await grow(run, { size: '3G', dryRun: true }, { cap: true });
    const bang = run.reporter.lines.filter((l) => l.startsWith('  ! '));
    expect(bang.some((l) => l.includes('umount'))).toBe(false);
    expect(text(run.reporter)).toContain('If the kernel refuses the online resize, hbs offers the offline path');
  });

  it('prints the offline plan for an unmounted filesystem', async () => {
    const run = setup(probes(sb, { ...mounted1G, mounted: false }), true);
    await grow(run, { size: '3G', dryRun: true });
    const bang = run.reporter.lines.filter((l) => l.startsWith('  ! ')).map((l) => l.slice(4));
    expect(bang.slice(1, 4)).toEqual([`truncate '--size=>${3 * GiB}' ${sb.image}`, `e2fsck -f -p -C 1 ${sb.image}`, `resize2fs ${sb.image}`]);
  });
});
