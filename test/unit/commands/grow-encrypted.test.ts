import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { growCommand, type GrowFlags } from '../../../src/commands/grow/index.js';
import { EXIT } from '../../../src/core/errors.js';
import { formatCmd } from '../../../src/core/runner.js';
import type { Config } from '../../../src/lib/config.js';
import { WrongKeyError } from '../../../src/lib/luks.js';
import { FakeMachine } from '../../support/fake-machine.js';
import { expectGolden } from '../../support/golden.js';
import {
  BOX_SOURCE,
  encryptedConfig,
  GiB,
  makeSandbox,
  OTHER_UUID,
  ourLock,
  PASSPHRASE,
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

const NAME = 'hbs-filesystem';
const MAPPER = `/dev/mapper/${NAME}`;
/** cryptsetup's LUKS2 data offset for a file (the fake's too): 16 MiB of header before ext4. */
const OFFSET = 16 * 2 ** 20;
/** ext4's blocks in an image of `bytes`: everything after the header. */
const blocks = (bytes: number): number => (bytes - OFFSET) / 4096;
const EPERM = { exitCode: 1, stderr: 'resize2fs 1.47.0 (5-Feb-2023)\nresize2fs: Permission denied to resize filesystem\n' };

interface LuksState {
  recorded?: number;
  fileBytes?: number;
  /** ext4's size in the mapping, in bytes of the image it spans (default: the file). */
  fsImageBytes?: number;
  mounted?: boolean;
  /** The mapping is open (always when mounted). */
  open?: boolean;
  /** Sizes lagging behind the file (a grow that stopped halfway). */
  loopBytes?: number;
  mapperBytes?: number;
  keyLocation?: 'keyring' | 'dm-crypt';
  unattended?: boolean;
}

/** An encrypted stack, box up with this machine's lock; mounted unless told otherwise. */
async function luksStack(o: LuksState = {}): Promise<void> {
  const recorded = o.recorded ?? GiB;
  const fileBytes = o.fileBytes ?? recorded;
  const cfg = encryptedConfig(sb, { unattended: o.unattended });
  await writeConfig(sb, { ...cfg, image: { ...cfg.image, sizeBytes: recorded } });
  await putOnBox(sb, 'filesystem.img');
  await m.mountBox(sb.boxMount, BOX_SOURCE);
  await writeLock(sb, ourLock(sb));
  await mkdir(sb.mountPoint, { recursive: true });
  m.fileSize(sb.image, fileBytes, 22 * 2 ** 20);
  m.luksImage(sb.image, [PASSPHRASE]);
  m.ext4(MAPPER, UUID, { blockCount: blocks(o.fsImageBytes ?? fileBytes) });
  const mounted = o.mounted ?? true;
  if (mounted || o.open) {
    const loop = m.openMapping(NAME, sb.image, { keyLocation: o.keyLocation });
    if (o.loopBytes !== undefined) m.world.deviceBytes.set(loop, o.loopBytes);
    if (o.mapperBytes !== undefined) m.world.deviceBytes.set(MAPPER, o.mapperBytes);
  }
  if (mounted) m.mountFs(sb.mountPoint, MAPPER, 'rw,noatime,noinit_itable');
}

/** A test io with --luks-key-stdin's bytes (the passphrase unless told otherwise), counting the reads of stdin. */
function keyIo(o: { stdin?: string; prompter?: ReturnType<typeof scriptedPrompter>; now?: () => Date } = {}): TestIo & { stdinReads: () => number } {
  const io = testIo(m, { stdin: o.stdin ?? PASSPHRASE, prompter: o.prompter, deps: o.now ? { now: o.now } : {} });
  let reads = 0;
  const read = io.readStdinBytes!;
  return {
    ...io,
    readStdinBytes: () => (reads++, read()),
    stdinReads: () => reads,
  };
}

const grow = (flags: Partial<GrowFlags>, io: TestIo = keyIo()) => growCommand({ config: sb.config, ...flags }, io);
const recordedConfig = async (): Promise<Config> => JSON.parse(await readFile(sb.config, 'utf8')) as Config;
const text = (io: TestIo): string => io.reporter.lines.join('\n');
const fsBlocks = (): number | undefined => m.world.superblocks.get(MAPPER)?.blockCount;
const bangs = (io: TestIo): string[] => io.reporter.lines.filter((l) => l.startsWith('  ! ')).map((l) => l.slice(4));

const truncate = (bytes = 3 * GiB): string => `truncate '--size=>${bytes}' ${sb.image}`;
const open = (): string => `cryptsetup open --type luks2 --key-file - ${sb.image} ${NAME} <<(stdin)`;
const RESIZE = `cryptsetup resize --key-file - ${NAME} <<(stdin)`;
const E2FSCK = `e2fsck -f -p -C 1 ${MAPPER}`;
/** The offline resize2fs, keeping what it overwrites in an undo file next to the config. */
const OFFLINE = (): string => `resize2fs -z ${sb.configDir}/logs/resize2fs-${UUID}.e2undo ${MAPPER}`;
const MOUNT = (): string => `mount -t ext4 -o noatime,noinit_itable ${MAPPER} ${sb.mountPoint}`;

/** Nothing the machine ran or the person was shown holds the passphrase; where it went on stdin, it is also a secret to redact. */
function assertNoLeak(io: TestIo): void {
  for (const c of m.commands) {
    expect(c.argv.join(' ')).not.toContain(PASSPHRASE);
    expect(formatCmd(c)).not.toContain(PASSPHRASE);
    if (c.stdin !== undefined && Buffer.from(c.stdin).length > 0) expect(c.secrets).toContain(PASSPHRASE);
  }
  expect(text(io)).not.toContain(PASSPHRASE);
}

/** Records how many commands had run when the key was first checked. */
function watchKeyCheck(): { ranBefore: () => number | undefined } {
  let at: number | undefined;
  const test = m.probes.testKey;
  m.probes.testKey = (image, key) => ((at ??= m.ran.length), test(image, key));
  return { ranBefore: () => at };
}

describe('hbs grow, encrypted and mounted: online', () => {
  it('checks the key before any change, then file → loop → cryptsetup resize (key on stdin) → resize2fs on the mapping → config', async () => {
    await luksStack();
    const key = watchKeyCheck();
    const io = keyIo();
    const out = await grow({ size: '3G', luksKeyStdin: true }, io);
    expect(key.ranBefore()).toBe(0);
    expect(m.ran).toEqual([truncate(), 'losetup --set-capacity /dev/loop0', RESIZE, `resize2fs ${MAPPER}`]);
    expect(Buffer.from(m.commands[2]!.stdin!).toString()).toBe(PASSPHRASE);
    expect(out).toMatchObject({ path: 'online', fromBytes: GiB, targetBytes: 3 * GiB, fsBefore: GiB - OFFSET, fsAfter: { blockCount: blocks(3 * GiB) } });
    expect(m.world.deviceBytes.get(MAPPER)).toBe(3 * GiB - OFFSET);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
    assertNoLeak(io);
    const t = text(io);
    // ext4 spanning the file minus the header is a finished filesystem, not a grow that stopped halfway.
    expect(t).not.toContain('Resuming');
    expect(t).toContain('after a 16 MiB LUKS2 header');
    // What the kernel writes into the new groups' inode tables: 8 → 24 groups of 128 MiB, 2 MiB of inode table each.
    expect(t).toContain('inode tables (about 32 MiB here)');
    const cfg = await recordedConfig();
    expect(cfg.image.sizeBytes).toBe(3 * GiB);
    expect(cfg.filesystem.mountOptions).toEqual(['noatime', 'noinit_itable']);
    expect(cfg.encryption?.mapperName).toBe(NAME);
  });

  it('falls back offline on an EPERM the person agrees to: unmount, e2fsck and resize2fs on the open mapping, mount it again; no second key', async () => {
    await luksStack();
    m.failNext(['resize2fs', MAPPER], EPERM);
    const p = scriptedPrompter([true]);
    const io = keyIo({ prompter: p });
    const out = await grow({ size: '3G', luksKeyStdin: true }, io);
    expect(out.path).toBe('offline');
    expect(m.ran).toEqual([truncate(), 'losetup --set-capacity /dev/loop0', RESIZE, `resize2fs ${MAPPER}`, `sync --file-system ${sb.mountPoint}`, `umount ${sb.mountPoint}`, E2FSCK, OFFLINE(), MOUNT()]);
    expect(p.asked).toHaveLength(1);
    expect(io.stdinReads()).toBe(1);
    expect(m.world.mappings.has(NAME)).toBe(true);
    expect(m.loopOf(sb.image)?.directIo).toBe(false);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
    assertNoLeak(io);
    expect((await recordedConfig()).image.sizeBytes).toBe(3 * GiB);
  });

  it('with --offline goes offline from the start: unmount, then loop → cryptsetup resize → e2fsck → resize2fs on the open mapping → mount; never the online resize', async () => {
    await luksStack();
    const io = keyIo({ now: ticking() });
    const out = await grow({ size: '3G', offline: true, luksKeyStdin: true }, io);
    expect(out.path).toBe('offline');
    expect(out.offlineMs).toBeGreaterThan(0);
    expect(m.ran).toEqual([truncate(), `sync --file-system ${sb.mountPoint}`, `umount ${sb.mountPoint}`, 'losetup --set-capacity /dev/loop0', RESIZE, E2FSCK, OFFLINE(), MOUNT()]);
    expect(text(io)).toContain('growing offline (--offline)');
    expect(fsBlocks()).toBe(blocks(3 * GiB));
    expect(m.world.mounts.get(sb.mountPoint)?.source).toBe(MAPPER);
    assertNoLeak(io);
    expect((await recordedConfig()).image.sizeBytes).toBe(3 * GiB);
  });

  it('resizes a mapping whose volume key is in the dm table (not the keyring) without any key', async () => {
    await luksStack({ keyLocation: 'dm-crypt' });
    const io = testIo(m);
    await grow({ size: '3G' }, io);
    expect(m.ran).toEqual([truncate(), 'losetup --set-capacity /dev/loop0', `cryptsetup resize ${NAME}`, `resize2fs ${MAPPER}`]);
    expect(m.commands.some((c) => c.stdin !== undefined)).toBe(false);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
  });
});

describe('hbs grow, encrypted and not mounted: offline', () => {
  it('opens the mapping (key on stdin), checks what it holds, e2fsck -f, resize2fs on it, verifies, closes, then records', async () => {
    await luksStack({ mounted: false });
    m.world.canResizeOnline = false;
    const io = keyIo();
    const out = await grow({ size: '3G', luksKeyStdin: true }, io);
    expect(out.path).toBe('offline');
    expect(m.ran).toEqual([truncate(), open(), E2FSCK, OFFLINE(), `cryptsetup close ${NAME}`]);
    expect(m.world.mappings.size).toBe(0);
    expect(m.world.loops).toEqual([]);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
    assertNoLeak(io);
    expect(text(io)).toContain(`ext4 inside: behind the key until ${MAPPER} is open`);
    expect(text(io)).toContain('ext4        1008 MiB → 3.0 GiB (782336 blocks of 4096 bytes)');
    expect((await recordedConfig()).image.sizeBytes).toBe(3 * GiB);
  });

  it('uses the unattended key file from the config when no flag is given', async () => {
    await luksStack({ mounted: false, unattended: true });
    await writeFile(join(sb.configDir, 'hbs-filesystem.key'), PASSPHRASE, { mode: 0o400 });
    const io = keyIo();
    expect((await grow({ size: '3G' }, io)).path).toBe('offline');
    expect(io.stdinReads()).toBe(0);
    expect(m.ran).toContain(open());
  });

  it('closes the mapping again and stops when it holds another filesystem', async () => {
    await luksStack({ mounted: false });
    m.ext4(MAPPER, OTHER_UUID);
    const e = await rejection(grow({ size: '3G', luksKeyStdin: true }));
    expect(e.message).toMatch(new RegExp(`holds ext4 UUID ${OTHER_UUID}, not the ext4 UUID ${UUID} .* closed it again`));
    expect(m.ran).toEqual([truncate(), open(), `cryptsetup close ${NAME}`]);
    expect(m.world.mappings.size).toBe(0);
    expect((await recordedConfig()).image.sizeBytes).toBe(GiB);
  });
});

describe('hbs grow, encrypted: a mapping left open (not mounted)', () => {
  it('is refreshed and resized in place (key on stdin), checked and grown, and left open as it was found', async () => {
    await luksStack({ mounted: false, open: true });
    const io = keyIo();
    expect((await grow({ size: '3G', luksKeyStdin: true }, io)).path).toBe('offline');
    expect(m.ran).toEqual([truncate(), 'losetup --set-capacity /dev/loop0', RESIZE, E2FSCK, OFFLINE()]);
    expect(m.world.mappings.has(NAME)).toBe(true);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
    assertNoLeak(io);
    expect((await recordedConfig()).image.sizeBytes).toBe(3 * GiB);
  });
});

describe('hbs grow, encrypted: the key', () => {
  it('a wrong key: exit 2, checked before anything changes, nothing changed', async () => {
    await luksStack();
    const before = await readFile(sb.config, 'utf8');
    const e = await rejection(grow({ size: '3G', luksKeyStdin: true }, keyIo({ stdin: 'not it' })));
    expect(e).toBeInstanceOf(WrongKeyError);
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.message).toMatch(/does not open .* nothing was changed/);
    expect(m.ran).toEqual([]);
    expect(m.world.files.get(sb.image)?.sizeBytes).toBe(GiB);
    expect(await readFile(sb.config, 'utf8')).toBe(before);
  });

  it('a prompt may be answered again after a wrong passphrase', async () => {
    await luksStack({ mounted: false });
    const p = scriptedPrompter(['wrong one', PASSPHRASE]);
    const io = keyIo({ prompter: p });
    expect((await grow({ size: '3G' }, io)).path).toBe('offline');
    expect(p.asked).toHaveLength(2);
    expect(p.asked[1]).toContain('attempt 2 of 3');
    expect(text(io)).toContain('does not open');
    assertNoLeak(io);
  });

  it('without a key flag, an unattended key or a terminal: exit 2 at once naming the flags; nothing changed, nothing read', async () => {
    await luksStack();
    const io = keyIo();
    const e = await rejection(grow({ size: '3G' }, io));
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.message).toContain('needs its key, but none was given; nothing was changed');
    expect(e.hint).toContain('--luks-key-file');
    expect(e.hint).toContain('--luks-key-stdin');
    expect(m.ran).toEqual([]);
    expect(io.stdinReads()).toBe(0);
  });

  it('refuses --luks-key-file together with --luks-key-stdin before looking at anything', async () => {
    await luksStack();
    let probed = 0;
    const probes = new Proxy(m.probes, { get: (t, k, r) => (probed++, Reflect.get(t, k, r) as unknown) });
    const e = await rejection(grow({ size: '3G', luksKeyStdin: true, luksKeyFile: '/k' }, { ...keyIo(), probes }));
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.message).toContain('exclude each other');
    expect(probed).toBe(0);
    expect(m.ran).toEqual([]);
  });
});

describe('hbs grow, encrypted: resuming', () => {
  it('a mounted grow that stopped after cryptsetup resize only runs resize2fs, and needs no key', async () => {
    await luksStack({ fileBytes: 3 * GiB, fsImageBytes: GiB });
    const io = keyIo();
    const out = await grow({ size: '3G' }, io);
    expect(out.path).toBe('online');
    expect(m.ran).toEqual([`resize2fs ${MAPPER}`]);
    expect(text(io)).toMatch(/Resuming: the image file is already 3 GiB, but ext4 inside spans only 1008 MiB/);
    expect(io.stdinReads()).toBe(0);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
  });

  it('a mounted grow that stopped after the loop refresh resizes the mapping (with the key) and ext4', async () => {
    await luksStack({ fileBytes: 3 * GiB, fsImageBytes: GiB, mapperBytes: GiB - OFFSET });
    await grow({ size: '+2G', luksKeyStdin: true });
    expect(m.ran).toEqual([RESIZE, `resize2fs ${MAPPER}`]);
    expect(fsBlocks()).toBe(blocks(3 * GiB));
  });

  it('an offline grow that stopped after the file grew: opens, reads ext4 inside, finishes, closes', async () => {
    await luksStack({ mounted: false, fileBytes: 3 * GiB, fsImageBytes: GiB });
    const io = keyIo();
    await grow({ size: '+2G', luksKeyStdin: true }, io);
    expect(m.ran).toEqual([open(), E2FSCK, OFFLINE(), `cryptsetup close ${NAME}`]);
    expect(text(io)).toMatch(/Resuming: the image file is already 3 GiB but the config records 1 GiB/);
    expect(text(io)).toMatch(/• Read ext4's size — 1008 MiB \(258048 blocks\)/);
    expect((await recordedConfig()).image.sizeBytes).toBe(3 * GiB);
  });

  it('when ext4 inside already spans the file, e2fsck and resize2fs are skipped: only the config is recorded', async () => {
    await luksStack({ mounted: false, fileBytes: 3 * GiB });
    await grow({ size: '3G', luksKeyStdin: true });
    expect(m.ran).toEqual([open(), `cryptsetup close ${NAME}`]);
    expect((await recordedConfig()).image.sizeBytes).toBe(3 * GiB);
  });

  it('mounted and already grown: ext4 spanning the file minus the 16 MiB header is complete; only the config is recorded', async () => {
    await luksStack({ fileBytes: 3 * GiB });
    const out = await grow({ size: '3G' });
    expect(out.path).toBe('config-only');
    expect(m.ran).toEqual([]);
    expect((await recordedConfig()).image.sizeBytes).toBe(3 * GiB);
  });
});

describe('hbs grow --dry-run, encrypted', () => {
  it('prints the online plan with the key as a stdin marker; reads no key and shows no secret (golden)', async () => {
    await luksStack();
    const io = keyIo();
    const out = await grow({ size: '3G', dryRun: true, luksKeyStdin: true }, io);
    expect(out.path).toBe('dry-run');
    expect(m.ran).toEqual([]);
    expect(io.stdinReads()).toBe(0);
    expect(bangs(io)).toEqual([
      truncate(),
      'losetup --set-capacity /dev/loop0',
      RESIZE,
      `resize2fs ${MAPPER}`,
      expect.stringMatching(new RegExp(`^write ${sb.config} \\(mode 0600, \\d+ bytes, atomic\\)$`)),
    ]);
    expect(text(io)).not.toContain(PASSPHRASE);
    expect((await recordedConfig()).image.sizeBytes).toBe(GiB);
    await expectGolden('grow-encrypted-dry-run.txt', io.reporter.lines, sb.root);
  });

  it('prints the offline plan for a closed mapping: open, e2fsck, resize2fs, close; asks nobody', async () => {
    await luksStack({ mounted: false });
    const p = scriptedPrompter([]);
    const io = keyIo({ prompter: p });
    await grow({ size: '3G', dryRun: true }, io);
    expect(bangs(io).slice(0, -1)).toEqual([truncate(), open(), E2FSCK, `mkdir -p -m 0700 ${sb.configDir}/logs`, expect.stringMatching(/^write .*\.e2undo\.before\.json /) as string, OFFLINE(), `rm ${sb.configDir}/logs/resize2fs-${UUID}.e2undo  (the resize finished: nothing to undo)`, `rm ${sb.configDir}/logs/resize2fs-${UUID}.e2undo.before.json  (and its record)`, `cryptsetup close ${NAME}`]);
    expect(p.asked).toEqual([]);
    expect(m.ran).toEqual([]);
  });

  it('a key file is still checked (read-only) in a dry-run: a wrong one fails as in a real run; the plan shows only the stdin marker', async () => {
    await luksStack();
    const wrong = join(sb.root, 'wrong.key');
    const right = join(sb.root, 'right.key');
    await writeFile(wrong, 'not it');
    await writeFile(right, PASSPHRASE);
    const e = await rejection(grow({ size: '3G', dryRun: true, luksKeyFile: wrong }, testIo(m)));
    expect(e).toBeInstanceOf(WrongKeyError);
    const io = testIo(m);
    await grow({ size: '3G', dryRun: true, luksKeyFile: right }, io);
    expect(io.reporter.lines).toContain(`• The key opens the image — key file ${right} opens ${sb.image} (checked; nothing changed)`);
    expect(bangs(io)).toContain(RESIZE);
    expect(text(io)).not.toContain(PASSPHRASE);
    expect(m.ran).toEqual([]);
  });

  it('fails like a real run when there would be no key', async () => {
    await luksStack({ mounted: false });
    const e = await rejection(grow({ size: '3G', dryRun: true }, testIo(m)));
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.hint).toContain('--luks-key-stdin');
  });
});

/** A clock that moves a quarter of a second each time it is read. */
function ticking(): () => Date {
  let t = Date.parse('2025-01-02T03:04:05.000Z');
  return () => new Date((t += 250));
}
