import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/core/errors.js';
import type { Expectation } from '../../src/core/recording-runner.js';
import { formatCmd } from '../../src/core/runner.js';
import type { GrowCliFlags } from '../../src/commands/grow.js';
import type { Prompter } from '../../src/init/prompter.js';
import type { Config } from '../../src/lib/config.js';
import { WrongKeyError } from '../../src/lib/luks.js';
import { directIoOn } from './canned.js';
import {
  CRYPT_LOOP,
  cryptStatus,
  findmntMapper,
  geometry,
  GiB,
  luksProbes,
  makeLuksSandbox,
  MAPPER,
  mapperSize,
  NAME,
  OFFSET,
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
  type LuksState,
} from './grow-fixtures.js';

let sb: GrowSandbox;
beforeEach(async () => {
  sb = await makeLuksSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

const PASS = 'correct horse battery staple';
/** ext4's blocks in an image of `bytes`: everything after the 16 MiB LUKS2 header. */
const blocks = (bytes: number): number => (bytes - OFFSET) / 4096;
const EPERM = { exitCode: 1, stderr: 'resize2fs 1.47.0 (5-Feb-2023)\nresize2fs: Permission denied to resize filesystem\n' };

// The commands, literally, in the order hbs runs them.
const testKey = (answer: Partial<Expectation> = {}): Expectation => ({
  argv: ['cryptsetup', 'open', '--test-passphrase', '--type', 'luks2', '--key-file', '-', sb.image],
  write: false,
  stdin: PASS,
  ...answer,
});
const recheck = (size = GiB): Expectation => statImage(sb, size);
const truncate = (bytes = 3 * GiB): Expectation => ({ argv: ['truncate', `--size=>${bytes}`, sb.image], write: true });
const loopSize = (bytes: number): Expectation => ({ argv: ['blockdev', '--getsize64', CRYPT_LOOP], write: false, stdout: `${bytes}\n` });
const setCapacity: Expectation = { argv: ['losetup', '--set-capacity', CRYPT_LOOP], write: true };
const cryptResize: Expectation = { argv: ['cryptsetup', 'resize', '--key-file', '-', NAME], write: true, stdin: PASS };
const resizeOnline = (answer: Partial<Expectation> = {}): Expectation => ({ argv: ['resize2fs', MAPPER], write: true, ...answer });
const openExp = (): Expectation => ({ argv: ['cryptsetup', 'open', '--type', 'luks2', '--key-file', '-', sb.image, NAME], write: true, stdin: PASS });
const mapperUuid = (uuid = '3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b'): Expectation => ({
  argv: ['blkid', '--probe', '--output', 'export', MAPPER],
  write: false,
  stdout: `DEVNAME=${MAPPER}\nUUID=${uuid}\nTYPE=ext4\n`,
});
const e2fsck: Expectation = { argv: ['e2fsck', '-f', '-p', '-C', '1', MAPPER], write: true, stdout: 'hbs-backup: 11/65536 files (0.0% non-contiguous), 12955/262144 blocks\n' };
const resizeOffline: Expectation = { argv: ['resize2fs', MAPPER], write: true };
const close: Expectation = { argv: ['cryptsetup', 'close', NAME], write: true };
const umount = (): Expectation => ({ argv: ['umount', sb.mountPoint], write: true });
/** Mount the (still open) mapping again; the loop device under it kept its direct I/O through the unmount. */
const remount = (): Expectation[] => [
  { argv: ['mount', '-t', 'ext4', '-o', 'noatime,noinit_itable', MAPPER, sb.mountPoint], write: true },
  findmntMapper(sb, true),
  cryptStatus(sb, true, 'keyring', 3 * GiB - OFFSET),
  ...directIoOn(CRYPT_LOOP, true),
];
/** The check afterwards: the image's size, what is mounted, the filesystem's block count on the mapping. */
const verify = (mounted: boolean, size = 3 * GiB): Expectation[] => [
  statImage(sb, size),
  findmntMapper(sb, mounted),
  ...(mounted ? [cryptStatus(sb, true, 'keyring', size - OFFSET)] : []),
  geometry(MAPPER, blocks(size)),
];

const mounted1G: LuksState = { fileBytes: GiB, fsBlocks: blocks(GiB), mounted: true, allocatedBytes: 22 * 2 ** 20 };
const closed1G: LuksState = { ...mounted1G, mounted: false };

type Run = GrowRun;
const setup = setupRun;
/** --luks-key-stdin reads the right passphrase unless a test says otherwise. */
const grow = (run: Run, flags: GrowCliFlags, o: GrowRunOptions = {}): ReturnType<typeof runGrow> => runGrow(sb, run, flags, { stdin: PASS, ...o });
const recordedConfig = async (): Promise<Config> => JSON.parse(await readFile(sb.config, 'utf8')) as Config;

/** Nothing the runner saw or the person was shown holds the passphrase; where it went on stdin, it is also a secret to redact. */
function assertNoLeak(run: Run): void {
  for (const c of run.runner.calls) {
    expect(c.argv.join(' ')).not.toContain(PASS);
    expect(formatCmd(c)).not.toContain(PASS);
    if (c.stdin !== undefined && Buffer.from(c.stdin).length > 0) expect(c.secrets).toContain(PASS);
  }
  expect(text(run.reporter)).not.toContain(PASS);
}

describe('hbs grow, encrypted and mounted: online', () => {
  it('checks the key, then file → loop → cryptsetup resize (key on stdin) → resize2fs on the mapping → config', async () => {
    const run = setup([
      ...luksProbes(sb, mounted1G),
      testKey(),
      recheck(),
      truncate(),
      loopSize(GiB),
      setCapacity,
      mapperSize(GiB - OFFSET),
      cryptResize,
      resizeOnline(),
      ...verify(true),
    ]);
    const out = await grow(run, { size: '3G', luksKeyStdin: true });
    run.runner.assertDone();
    expect(out).toMatchObject({ path: 'online', fromBytes: GiB, targetBytes: 3 * GiB, fsBefore: GiB - OFFSET, fsAfter: { blockCount: blocks(3 * GiB) } });
    expect(writes(run.runner)).toEqual([
      `truncate --size=>${3 * GiB} ${sb.image}`,
      `losetup --set-capacity ${CRYPT_LOOP}`,
      `cryptsetup resize --key-file - ${NAME}`,
      `resize2fs ${MAPPER}`,
    ]);
    assertNoLeak(run);
    const t = text(run.reporter);
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

  it('falls back offline on an EPERM the person agrees to: unmount, e2fsck and resize2fs on the open mapping, mount it with noinit_itable; no second key', async () => {
    const run = setup([
      ...luksProbes(sb, mounted1G),
      testKey(),
      recheck(),
      truncate(),
      loopSize(GiB),
      setCapacity,
      mapperSize(GiB - OFFSET),
      cryptResize,
      resizeOnline(EPERM),
      // A fresh look: the mapping has the new size already, so no key is needed again.
      ...luksProbes(sb, { ...mounted1G, fileBytes: 3 * GiB }),
      umount(),
      e2fsck,
      resizeOffline,
      ...remount(),
      ...verify(true),
    ]);
    const asked: string[] = [];
    const prompter = { confirm: (q: { message: string }) => (asked.push(q.message), Promise.resolve(true)) } as unknown as Prompter;
    const out = await grow(run, { size: '3G', luksKeyStdin: true }, { prompter });
    run.runner.assertDone();
    expect(out.path).toBe('offline');
    expect(asked).toHaveLength(1);
    expect(run.stdinReads).toBe(1);
    expect(writes(run.runner)).not.toContain(`cryptsetup close ${NAME}`);
    assertNoLeak(run);
    expect(await recordedSize(sb)).toBe(3 * GiB);
  });

  it('with --offline goes offline from the start: unmount, then loop → cryptsetup resize → e2fsck → resize2fs on the open mapping → mount; never the online resize', async () => {
    const run = setup([
      ...luksProbes(sb, mounted1G),
      testKey(),
      recheck(),
      truncate(),
      umount(),
      loopSize(GiB),
      setCapacity,
      mapperSize(GiB - OFFSET),
      cryptResize,
      e2fsck,
      resizeOffline,
      ...remount(),
      ...verify(true),
    ]);
    const out = await grow(run, { size: '3G', offline: true, luksKeyStdin: true });
    run.runner.assertDone();
    expect(out.path).toBe('offline');
    expect(out.offlineMs).toBeGreaterThanOrEqual(0);
    expect(writes(run.runner)).toEqual([
      `truncate --size=>${3 * GiB} ${sb.image}`,
      `umount ${sb.mountPoint}`,
      `losetup --set-capacity ${CRYPT_LOOP}`,
      `cryptsetup resize --key-file - ${NAME}`,
      `e2fsck -f -p -C 1 ${MAPPER}`,
      `resize2fs ${MAPPER}`,
      `mount -t ext4 -o noatime,noinit_itable ${MAPPER} ${sb.mountPoint}`,
    ]);
    expect(text(run.reporter)).toContain('growing offline (--offline)');
    assertNoLeak(run);
    expect(await recordedSize(sb)).toBe(3 * GiB);
  });

  it('resizes a mapping whose volume key is in the dm table (not the keyring) without asking for the key', async () => {
    const state: LuksState = { ...mounted1G, keyLocation: 'dm-crypt' };
    const run = setup([
      ...luksProbes(sb, state),
      recheck(),
      truncate(),
      loopSize(GiB),
      setCapacity,
      mapperSize(GiB - OFFSET),
      { argv: ['cryptsetup', 'resize', NAME], write: true },
      resizeOnline(),
      ...verify(true),
    ]);
    await grow(run, { size: '3G' });
    run.runner.assertDone();
    expect(run.runner.calls.some((c) => c.stdin !== undefined && Buffer.from(c.stdin).length > 0)).toBe(false);
  });
});

describe('hbs grow, encrypted and not mounted: offline', () => {
  it('opens the mapping (key on stdin), checks what it holds, e2fsck -f, resize2fs on it, verifies, closes, then records', async () => {
    const run = setup([
      ...luksProbes(sb, closed1G),
      testKey(),
      recheck(),
      truncate(),
      openExp(),
      mapperUuid(),
      geometry(MAPPER, blocks(GiB)),
      e2fsck,
      resizeOffline,
      ...verify(false),
      close,
    ]);
    const out = await grow(run, { size: '3G', luksKeyStdin: true }, { cap: false });
    run.runner.assertDone();
    expect(out.path).toBe('offline');
    expect(writes(run.runner)).toEqual([
      `truncate --size=>${3 * GiB} ${sb.image}`,
      `cryptsetup open --type luks2 --key-file - ${sb.image} ${NAME}`,
      `e2fsck -f -p -C 1 ${MAPPER}`,
      `resize2fs ${MAPPER}`,
      `cryptsetup close ${NAME}`,
    ]);
    assertNoLeak(run);
    expect(text(run.reporter)).toContain(`ext4 inside: behind the key until ${MAPPER} is open`);
    expect(text(run.reporter)).toContain('ext4        1008 MiB → 3.0 GiB (782336 blocks of 4096 bytes)');
    expect(await recordedSize(sb)).toBe(3 * GiB);
  });

  it('uses the unattended key file from the config when no flag is given', async () => {
    const keyFile = join(sb.root, 'etc', `${NAME}.key`);
    await writeFile(keyFile, PASS, { mode: 0o400 });
    const cfg = { ...sb.cfg, encryption: { ...sb.cfg.encryption!, unattendedKeyFile: keyFile } };
    await writeFile(sb.config, JSON.stringify(cfg, null, 2) + '\n');
    const run = setup([...luksProbes(sb, closed1G), testKey(), recheck(), truncate(), openExp(), mapperUuid(), geometry(MAPPER, blocks(GiB)), e2fsck, resizeOffline, ...verify(false), close]);
    expect((await grow(run, { size: '3G' })).path).toBe('offline');
    run.runner.assertDone();
    expect(run.stdinReads).toBe(0);
  });

  it('closes the mapping again and stops when it holds another filesystem', async () => {
    const run = setup([...luksProbes(sb, closed1G), testKey(), recheck(), truncate(), openExp(), mapperUuid('11111111-2222-4333-8444-555555555555'), close]);
    const e = await rejection(grow(run, { size: '3G', luksKeyStdin: true }));
    run.runner.assertDone();
    expect(e.message).toMatch(/does not hold the filesystem .* closed it again/);
    expect(await recordedSize(sb)).toBe(GiB);
  });
});

describe('hbs grow, encrypted: a mapping left open (not mounted)', () => {
  it('is refreshed and resized in place (key on stdin), checked and grown, and left open as it was found', async () => {
    const state: LuksState = { ...closed1G, open: true };
    const run = setup([
      ...luksProbes(sb, state),
      testKey(),
      recheck(),
      truncate(),
      loopSize(GiB),
      setCapacity,
      mapperSize(GiB - OFFSET),
      cryptResize,
      e2fsck,
      resizeOffline,
      ...verify(false),
    ]);
    expect((await grow(run, { size: '3G', luksKeyStdin: true })).path).toBe('offline');
    run.runner.assertDone();
    expect(writes(run.runner)).not.toContain(`cryptsetup close ${NAME}`);
    expect(writes(run.runner)).not.toContainEqual(expect.stringMatching(/^cryptsetup open/));
    assertNoLeak(run);
    expect(await recordedSize(sb)).toBe(3 * GiB);
  });
});

describe('hbs grow, encrypted: the key', () => {
  it('a wrong key: exit 2, checked before anything changes, nothing changed', async () => {
    const before = await readFile(sb.config, 'utf8');
    const run = setup([...luksProbes(sb, mounted1G), testKey({ exitCode: 2, stdin: 'not it' })]);
    const e = await rejection(grow(run, { size: '3G', luksKeyStdin: true }, { stdin: 'not it' }));
    run.runner.assertDone();
    expect(e).toBeInstanceOf(WrongKeyError);
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.message).toMatch(/does not open .* nothing was changed/);
    expect(writes(run.runner)).toEqual([]);
    expect(await readFile(sb.config, 'utf8')).toBe(before);
  });

  it('a prompt may be answered again after a wrong passphrase', async () => {
    const answers = ['wrong one', PASS];
    const prompter: Prompter = {
      input: () => Promise.reject(new Error('no input() expected')),
      confirm: () => Promise.reject(new Error('no confirm() expected')),
      password: () => Promise.resolve(answers.shift() ?? ''),
    };
    const run = setup([
      ...luksProbes(sb, closed1G),
      testKey({ exitCode: 2, stdin: 'wrong one' }),
      testKey(),
      recheck(),
      truncate(),
      openExp(),
      mapperUuid(),
      geometry(MAPPER, blocks(GiB)),
      e2fsck,
      resizeOffline,
      ...verify(false),
      close,
    ]);
    expect((await grow(run, { size: '3G' }, { prompter })).path).toBe('offline');
    expect(text(run.reporter)).toContain('does not open');
  });

  it('without a key flag, an unattended key or a terminal: exit 2 at once naming the flags; nothing changed, nothing read', async () => {
    const run = setup(luksProbes(sb, mounted1G));
    const e = await rejection(grow(run, { size: '3G' }));
    run.runner.assertDone();
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.message).toContain('needs the key');
    expect(e.hint).toContain('--luks-key-file');
    expect(e.hint).toContain('--luks-key-stdin');
    expect(writes(run.runner)).toEqual([]);
    expect(run.stdinReads).toBe(0);
  });

  it('refuses --luks-key-file together with --luks-key-stdin before looking at anything', async () => {
    const run = setup([]);
    const e = await rejection(grow(run, { size: '3G', luksKeyStdin: true, luksKeyFile: '/k' }));
    expect(e.exitCode).toBe(EXIT.usage);
    expect(run.runner.calls).toEqual([]);
  });
});

describe('hbs grow, encrypted: resuming', () => {
  it('a mounted grow that stopped after cryptsetup resize only runs resize2fs, and needs no key', async () => {
    const state: LuksState = { fileBytes: 3 * GiB, fsBlocks: blocks(GiB), mounted: true, allocatedBytes: 0 };
    const run = setup([...luksProbes(sb, state), loopSize(3 * GiB), mapperSize(3 * GiB - OFFSET), resizeOnline(), ...verify(true)]);
    const out = await grow(run, { size: '3G' });
    run.runner.assertDone();
    expect(out.path).toBe('online');
    expect(writes(run.runner)).toEqual([`resize2fs ${MAPPER}`]);
    expect(text(run.reporter)).toMatch(/Resuming: the image file is already 3 GiB, but ext4 inside spans only 1008 MiB/);
    expect(run.stdinReads).toBe(0);
  });

  it('a mounted grow that stopped after the loop refresh resizes the mapping (with the key) and ext4', async () => {
    const state: LuksState = { fileBytes: 3 * GiB, fsBlocks: blocks(GiB), mounted: true, allocatedBytes: 0, mapperBytes: GiB - OFFSET };
    const run = setup([...luksProbes(sb, state), testKey(), loopSize(3 * GiB), mapperSize(GiB - OFFSET), cryptResize, resizeOnline(), ...verify(true)]);
    await grow(run, { size: '+2G', luksKeyStdin: true });
    run.runner.assertDone();
    expect(writes(run.runner)).toEqual([`cryptsetup resize --key-file - ${NAME}`, `resize2fs ${MAPPER}`]);
  });

  it('an offline grow that stopped after the file grew: opens, reads ext4 inside, finishes, closes', async () => {
    const state: LuksState = { fileBytes: 3 * GiB, fsBlocks: 0, mounted: false, allocatedBytes: 0 };
    const run = setup([...luksProbes(sb, state), testKey(), openExp(), mapperUuid(), geometry(MAPPER, blocks(GiB)), e2fsck, resizeOffline, ...verify(false), close]);
    await grow(run, { size: '+2G', luksKeyStdin: true });
    run.runner.assertDone();
    expect(writes(run.runner)).not.toContainEqual(expect.stringMatching(/^truncate/));
    expect(text(run.reporter)).toMatch(/Resuming: the image file is already 3 GiB but the config records 1 GiB/);
    expect(await recordedSize(sb)).toBe(3 * GiB);
  });

  it('when ext4 inside already spans the file, e2fsck and resize2fs are skipped: only the config is recorded', async () => {
    const state: LuksState = { fileBytes: 3 * GiB, fsBlocks: 0, mounted: false, allocatedBytes: 0 };
    const run = setup([...luksProbes(sb, state), testKey(), openExp(), mapperUuid(), geometry(MAPPER, blocks(3 * GiB)), ...verify(false), close]);
    await grow(run, { size: '3G', luksKeyStdin: true });
    run.runner.assertDone();
    expect(writes(run.runner)).toEqual([`cryptsetup open --type luks2 --key-file - ${sb.image} ${NAME}`, `cryptsetup close ${NAME}`]);
    expect(await recordedSize(sb)).toBe(3 * GiB);
  });

  it('mounted and already grown: ext4 spanning the file minus the 16 MiB header is complete; only the config is recorded', async () => {
    const state: LuksState = { fileBytes: 3 * GiB, fsBlocks: blocks(3 * GiB), mounted: true, allocatedBytes: 0 };
    const run = setup([...luksProbes(sb, state), ...verify(true)]);
    const out = await grow(run, { size: '3G' });
    run.runner.assertDone();
    expect(out.path).toBe('config-only');
    expect(writes(run.runner)).toEqual([]);
    expect(await recordedSize(sb)).toBe(3 * GiB);
  });
});

describe('hbs grow --dry-run, encrypted', () => {
  it('prints the online plan with the key as a stdin marker; reads no key and shows no secret', async () => {
    const run = setup([...luksProbes(sb, mounted1G), loopSize(GiB), mapperSize(GiB - OFFSET)], true);
    const out = await grow(run, { size: '3G', dryRun: true, luksKeyStdin: true });
    run.runner.assertDone();
    expect(out.path).toBe('dry-run');
    expect(writes(run.runner)).toEqual([]);
    expect(run.stdinReads).toBe(0);
    const bang = run.reporter.lines.filter((l) => l.startsWith('  ! ')).map((l) => l.slice(4));
    expect(bang).toEqual([
      `re-check right before: ${sb.image} is still ${GiB} bytes (else stop)`,
      `truncate '--size=>${3 * GiB}' ${sb.image}`,
      `losetup --set-capacity ${CRYPT_LOOP}`,
      `cryptsetup resize --key-file - ${NAME} <<(stdin)`,
      `resize2fs ${MAPPER}`,
      expect.stringMatching(new RegExp(`^write ${sb.config} \\(mode 0600, \\d+ bytes, atomic\\)$`)),
    ]);
    expect(text(run.reporter)).not.toContain(PASS);
    expect(await recordedSize(sb)).toBe(GiB);
  });

  it('prints the offline plan for a closed mapping: openExp(), check, e2fsck, resize2fs, close', async () => {
    const run = setup(luksProbes(sb, closed1G), true);
    await grow(run, { size: '3G', dryRun: true, luksKeyStdin: true });
    run.runner.assertDone();
    const bang = run.reporter.lines.filter((l) => l.startsWith('  ! ')).map((l) => l.slice(4));
    expect(bang.slice(1, -1)).toEqual([
      `truncate '--size=>${3 * GiB}' ${sb.image}`,
      `cryptsetup open --type luks2 --key-file - ${sb.image} ${NAME} <<(stdin)`,
      `check that ${MAPPER} holds ext4 UUID ${sb.cfg.image.uuid} (else close it and stop), and read its size (dumpe2fs -h)`,
      `e2fsck -f -p -C 1 ${MAPPER}`,
      `resize2fs ${MAPPER}`,
      `cryptsetup close ${NAME}`,
    ]);
    expect(run.stdinReads).toBe(0);
  });

  it('fails like a real run when there would be no key', async () => {
    const run = setup(luksProbes(sb, closed1G), true);
    const e = await rejection(grow(run, { size: '3G', dryRun: true }));
    expect(e.exitCode).toBe(EXIT.usage);
    expect(e.hint).toContain('--luks-key-stdin');
  });
});
