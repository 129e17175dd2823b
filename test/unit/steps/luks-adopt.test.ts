/**
 * `hbs init --adopt` on an encrypted image (a reinstalled server that lost its config): the plans
 * with the recording runner, which fails on any command it was not told to expect — so a
 * luksFormat, luksAddKey or mkfs anywhere in these runs fails the test.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DryRunRunner } from '../../../src/core/dry-run-runner.js';
import type { HbsError } from '../../../src/core/errors.js';
import { AbortError, EXIT } from '../../../src/core/errors.js';
import { execute } from '../../../src/core/plan.js';
import { RecordingRunner, type Expectation } from '../../../src/core/recording-runner.js';
import { formatCmd, type Cmd } from '../../../src/core/runner.js';
import { askExistingPassphrase } from '../../../src/init/encrypt.js';
import type { EncryptOptions } from '../../../src/init/options.js';
import type { Prompter } from '../../../src/init/prompter.js';
import { initStepsFor, runSteps } from '../../../src/init/run-init.js';
import { decideOnExistingImage } from '../../../src/init/wizard.js';
import { configSchema, serializeConfig } from '../../../src/lib/config.js';
import { passphraseKey, WrongKeyError, type LuksKey } from '../../../src/lib/luks.js';
import { ExistingImageError, imageStep } from '../../../src/steps/image.js';
import { luksFormatStep, luksOpenStep } from '../../../src/steps/luks.js';
import { mkfsStep } from '../../../src/steps/mkfs.js';
import { MemoryReporter } from '../../../src/ui/reporter.js';
import { directIoOn } from '../canned.js';
import {
  blkid,
  findmnt,
  FIXTURE_KEY,
  GiB,
  HOST,
  keyscan,
  listTree,
  makeCtx,
  makeOpts,
  makeSandbox,
  modeOf,
  recordedConfig,
  rejection,
  statImage,
  verifyTab,
  writeCalls,
  type Sandbox,
} from './helpers.js';

const PASS = 'the old passphrase, kept offline';
const MAPPER = 'hbs-filesystem';
const LUKS_UUID = '6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const FS_UUID = 'c0ffee00-1234-4567-89ab-cdef01234567';
const CLEAN = { stderr: '\n0 parse errors, 0 errors, 0 warnings\n' };

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
  await mkdir(sb.boxMount); // the box is mounted (box-mount ran before the image step)
});
afterEach(async () => {
  await sb.cleanup();
});

const backupPath = (): string => join(sb.configDir, `${MAPPER}.luks-header`);
function encryptOpts(over: Partial<EncryptOptions> = {}): EncryptOptions {
  return { mapperName: MAPPER, passphrase: true, headerBackup: backupPath(), unattendedKeyFile: null, ...over };
}

/** `hbs init --adopt --luks-passphrase-stdin` (no --size) as the command layer hands it to the steps. */
function adoptCtx(runner: RecordingRunner | DryRunRunner, keys: LuksKey[] = [passphraseKey(PASS)], encrypt: EncryptOptions | undefined = encryptOpts()) {
  const ctx = makeCtx(sb, { runner, opts: { adopt: true, sizeGiven: false, encrypt } });
  ctx.luksKeys = keys;
  ctx.state.hostKey = { ...FIXTURE_KEY };
  return ctx;
}

/** The steps from the image on, in INIT order (everything before it is the same as for any init). */
const fromImage = (): ReturnType<typeof initStepsFor> => {
  const steps = initStepsFor({ encrypt: encryptOpts() });
  return steps.slice(steps.findIndex((s) => s.id === 'image'));
};

const imageProbes = (): Expectation[] => [
  statImage(sb.image, { size: 100 * GiB, blocks: 32768 }),
  blkid(sb.image, { TYPE: 'crypto_LUKS', VERSION: '2', UUID: LUKS_UUID }),
];
const testKey = (exitCode = 0, stdin: string | Uint8Array = PASS): Expectation => ({
  argv: ['cryptsetup', 'open', '--test-passphrase', '--type', 'luks2', '--key-file', '-', sb.image],
  write: false,
  stdin,
  exitCode,
  stderr: exitCode === 2 ? 'No key available with this passphrase.\n' : '',
});
const mapperClosed: Expectation = { argv: ['cryptsetup', 'status', MAPPER], write: false, exitCode: 4 };
const openCmd = (): Expectation => ({ argv: ['cryptsetup', 'open', '--type', 'luks2', '--key-file', '-', sb.image, MAPPER], write: true, stdin: PASS });

/** Never any of these on an adopted image. */
const FORMATTING = /^(cryptsetup (luksFormat|luksAddKey|luksErase|erase|reencrypt)|mkfs|mke2fs|wipefs|truncate|dd)\b/;
function assertNothingFormatted(calls: readonly Cmd[]): void {
  for (const c of calls) expect(c.argv.join(' ')).not.toMatch(FORMATTING);
}
function assertNoSecret(calls: readonly Cmd[], lines: readonly string[]): void {
  for (const c of calls) {
    expect(c.argv.join(' ')).not.toContain(PASS);
    expect(formatCmd(c)).not.toContain(PASS);
  }
  for (const l of lines) expect(l).not.toContain(PASS);
}

/** cryptsetup writes the backup (0400); the recording runner only answers, so stand in for it. */
function writesBackup(runner: RecordingRunner): void {
  const run = runner.run.bind(runner);
  runner.run = async (cmd) => {
    const r = await run(cmd);
    if (cmd.argv[1] === 'luksHeaderBackup') await writeFile(cmd.argv[cmd.argv.length - 1]!, 'LUKS header', { mode: 0o400 });
    return r;
  };
}

describe('init --adopt on a LUKS image not recorded here', () => {
  it('with the right key: checks it, backs up the header, opens, reads the ext4, writes config and fstab, mounts; never formats', async () => {
    const fstabDir = sb.tempDir('hbs-fstab-');
    const runner = new RecordingRunner([
      ...imageProbes(),
      testKey(), // luks-format: the key, read-only, before any change
      { argv: ['cryptsetup', 'luksHeaderBackup', sb.image, '--header-backup-file', backupPath()], write: true },
      mapperClosed, // luks-open
      openCmd(),
      blkid(`/dev/mapper/${MAPPER}`, { LABEL: 'hbs-backup', UUID: FS_UUID, BLOCK_SIZE: '4096', TYPE: 'ext4' }),
      findmnt(sb.mountPoint), // fs-mount
      { argv: ['mount', '-t', 'ext4', '-o', 'noatime,noinit_itable', `/dev/mapper/${MAPPER}`, sb.mountPoint], write: true },
      findmnt(sb.mountPoint, { source: `/dev/mapper/${MAPPER}`, fstype: 'ext4' }), // loop direct I/O under the mapping
      { argv: ['cryptsetup', 'status', MAPPER], write: false, stdout: `/dev/mapper/${MAPPER} is active and is in use.\n  type:    LUKS2\n  device:  /dev/loop0\n  loop:    ${sb.image}\n` },
      ...directIoOn('/dev/loop0'),
      verifyTab(join(fstabDir, 'block'), CLEAN), // fstab
      verifyTab(join(fstabDir, 'before'), CLEAN),
      verifyTab(join(fstabDir, 'after'), CLEAN),
    ]);
    writesBackup(runner);
    const ctx = adoptCtx(runner);

    const outcomes = await runSteps(ctx, fromImage());

    runner.assertDone();
    assertNothingFormatted(runner.calls);
    assertNoSecret(runner.calls, ctx.reporter.lines);
    expect(outcomes.map((o) => `${o.id}:${o.status}`)).toEqual([
      'image:already',
      'luks-format:done',
      'luks-open:done',
      'mkfs:already',
      'config:done',
      'fs-mount:done',
      'fstab:done',
    ]);
    expect(ctx.state.image).toMatchObject({ created: false, adopted: true, uuid: FS_UUID, sizeBytes: 100 * GiB });
    const cfg = configSchema.parse(JSON.parse(await readFile(sb.config, 'utf8')));
    expect(cfg.image).toEqual({ name: 'filesystem.img', sizeBytes: 100 * GiB, uuid: FS_UUID, label: 'hbs-backup' });
    expect(cfg.filesystem.mountOptions).toEqual(['noatime', 'noinit_itable']);
    expect(cfg.encryption).toEqual({ type: 'luks2', mapperName: MAPPER, keys: ['passphrase'], headerBackup: backupPath(), unattendedKeyFile: null });
    expect(JSON.stringify(cfg)).not.toContain(PASS);
    expect(await modeOf(backupPath())).toBe(0o600);
    expect(await readFile(sb.fstab, 'utf8')).toContain(`/dev/mapper/${MAPPER} ${sb.mountPoint} ext4 noauto,_netdev,nofail,noatime,noinit_itable`);
    expect(ctx.reporter.lines.map((l) => l.split(sb.root).join('<tmp>')).filter((l) => !l.startsWith('  '))).toEqual([
      `• Sparse image file on the box — adopting <tmp>/box/filesystem.img as it is (100 GiB, LUKS2 encrypted, UUID ${LUKS_UUID}); never formatted`,
      `✔ LUKS2 encryption on the image — adopted as it is (LUKS UUID ${LUKS_UUID}): passphrase opens it; never formatted`,
      '✔ Open the encrypted image',
      `• ext4 filesystem in the image — adopted: ext4 UUID ${FS_UUID} in /dev/mapper/${MAPPER}; not formatted`,
      '✔ Write the config',
      '✔ Mount the filesystem',
      '✔ fstab entries',
    ]);
  });

  it('with a wrong key: one-line error, exit 2, and nothing changed (no backup, no open, no config, no fstab)', async () => {
    const runner = new RecordingRunner([...imageProbes(), testKey(2, 'not it')]);
    const ctx = adoptCtx(runner, [passphraseKey('not it')]);
    const before = await listTree(sb.root);

    const err = await rejection(runSteps(ctx, fromImage()));

    runner.assertDone();
    expect(err).toBeInstanceOf(WrongKeyError);
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`the passphrase does not open ${sb.image} (no key slot matches); nothing was changed`);
    expect(err.message).not.toContain('\n');
    expect(writeCalls(runner)).toEqual([]);
    expect(await listTree(sb.root)).toEqual(before);
    expect(ctx.reporter.lines.at(-1)).toBe('✖ LUKS2 encryption on the image');
  });

  it('every key given must fit: a passphrase that opens it and a key file that does not is refused', async () => {
    const keyFile: LuksKey = { kind: 'keyfile', bytes: Buffer.from([9, 8, 7]), label: 'key file /root/old.key' };
    const runner = new RecordingRunner([...imageProbes(), testKey(), testKey(2, keyFile.bytes)]);
    const ctx = adoptCtx(runner, [passphraseKey(PASS), keyFile], encryptOpts({ keyFile: { path: '/root/old.key', generated: false, keep: true } }));
    const err = await rejection(runSteps(ctx, fromImage()));
    expect(err.message).toBe(`the key file /root/old.key does not open ${sb.image} (no key slot matches); nothing was changed`);
    expect(writeCalls(runner)).toEqual([]);
  });

  it('without --adopt: still refused and untouched, with or without --encrypt; the hint says --adopt', async () => {
    for (const encrypt of [undefined, encryptOpts()]) {
      const runner = new RecordingRunner(imageProbes());
      const ctx = makeCtx(sb, { runner, opts: { encrypt } });
      ctx.luksKeys = [passphraseKey(PASS)];
      const err = await rejection(imageStep.check(ctx));
      expect(err).toBeInstanceOf(ExistingImageError);
      expect((err as ExistingImageError).kind).toBe('encrypted');
      expect((err as HbsError).exitCode).toBe(EXIT.failed);
      expect(err.message).toBe(
        `${sb.image} already exists on the box (100 GiB, LUKS2 encrypted, UUID ${LUKS_UUID}) and is not the image recorded in ${sb.config}; hbs left it untouched`,
      );
      expect((err as HbsError).hint).toMatch(/never reformatted.*re-run with --adopt and its passphrase \(--luks-passphrase-stdin.*--luks-key-file PATH/);
      expect(writeCalls(runner)).toEqual([]);
    }
  });

  it('--adopt without any key: exit 2 naming the ways to give one (the wizard asks instead)', async () => {
    const runner = new RecordingRunner(imageProbes());
    const ctx = makeCtx(sb, { runner, opts: { adopt: true, sizeGiven: false } });
    const err = await rejection(imageStep.check(ctx));
    expect(err).toBeInstanceOf(ExistingImageError);
    expect((err as ExistingImageError).kind).toBe('encrypted');
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${sb.image} is LUKS2 encrypted, UUID ${LUKS_UUID} (100 GiB): adopting it needs its key`);
    expect((err as HbsError).hint).toContain('--luks-passphrase-stdin');
    expect((err as HbsError).hint).toContain('--luks-key-file PATH');
  });

  it('--adopt with a key on a plain ext4 image: refused (encrypting it would mean formatting it), exit 2', async () => {
    const runner = new RecordingRunner([statImage(sb.image, { size: 10 * GiB, blocks: 8 }), blkid(sb.image, { TYPE: 'ext4', UUID: FS_UUID })]);
    const err = await rejection(imageStep.check(adoptCtx(runner)));
    expect(err).toBeInstanceOf(ExistingImageError);
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toMatch(/plain \(unencrypted\) ext4 image, so --encrypt cannot use it; hbs left it untouched$/);
    expect((err as HbsError).hint).toContain('without --encrypt');
  });

  it('a header backup already there: kept when it is this header, refused (nothing run) when it is another one', async () => {
    await mkdir(sb.configDir, { recursive: true });
    await writeFile(backupPath(), 'header');
    const same = new RecordingRunner([...imageProbes(), testKey(), blkid(backupPath(), { TYPE: 'crypto_LUKS', VERSION: '2', UUID: LUKS_UUID })]);
    const ctx = adoptCtx(same);
    expect((await imageStep.check(ctx)).done).toBe(true);
    expect(await luksFormatStep.check(ctx)).toEqual({
      done: true,
      detail: `adopted as it is (LUKS UUID ${LUKS_UUID}): passphrase opens it; never formatted; header backup ${backupPath()} is there`,
    });
    same.assertDone();

    const other = new RecordingRunner([...imageProbes(), testKey(), blkid(backupPath(), { TYPE: 'crypto_LUKS', VERSION: '2', UUID: 'another' })]);
    const ctx2 = adoptCtx(other);
    await imageStep.check(ctx2);
    const err = await rejection(luksFormatStep.check(ctx2));
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
    expect(err.message).toMatch(/exists already and is not this image's header \(LUKS UUID another, the image has 6a1b/);
    expect(writeCalls(other)).toEqual([]);
    expect(await readFile(backupPath(), 'utf8')).toBe('header');
  });

  it('--luks-unattended: the given key goes to a 0400 file (a new one only), and the fstab line mounts at boot', async () => {
    const keep = join(sb.configDir, `${MAPPER}.key`);
    const runner = new RecordingRunner([...imageProbes(), testKey(), { argv: ['cryptsetup', 'luksHeaderBackup', sb.image, '--header-backup-file', backupPath()] }]);
    writesBackup(runner);
    const ctx = adoptCtx(runner, undefined, encryptOpts({ unattendedKeyFile: keep }));
    await imageStep.check(ctx);
    expect((await luksFormatStep.check(ctx)).done).toBe(false);
    await execute(await luksFormatStep.plan(ctx), { runner, print: () => undefined, verbose: false, now: () => new Date() });
    runner.assertDone();
    expect(await modeOf(keep)).toBe(0o400);
    expect(await readFile(keep, 'utf8')).toBe(PASS);
  });

  it('an unattended key file already there that does not open the image: refused, never overwritten', async () => {
    const keep = join(sb.configDir, `${MAPPER}.key`);
    await mkdir(sb.configDir, { recursive: true });
    await writeFile(keep, 'stale key');
    const runner = new RecordingRunner([...imageProbes(), testKey(), testKey(2, 'stale key')]);
    const ctx = adoptCtx(runner, undefined, encryptOpts({ unattendedKeyFile: keep }));
    await imageStep.check(ctx);
    const err = await rejection(luksFormatStep.check(ctx));
    expect(err.message).toBe(`${keep} exists already and does not open ${sb.image}`);
    expect(await readFile(keep, 'utf8')).toBe('stale key');
  });

  it('no ext4 inside the opened image: closes the mapping again and stops; mkfs is refused all the same', async () => {
    const runner = new RecordingRunner([
      mapperClosed,
      openCmd(),
      blkid(`/dev/mapper/${MAPPER}`), // nothing recognised
      { argv: ['cryptsetup', 'close', MAPPER], write: true },
    ]);
    const ctx = adoptCtx(runner);
    ctx.state.image.adopted = true;
    ctx.state.luks = { formatted: false, adopted: { uuid: LUKS_UUID } };
    expect(await luksOpenStep.check(ctx)).toEqual({ done: false });
    const err = await rejection(execute(await luksOpenStep.plan(ctx), { runner, print: () => undefined, verbose: false, now: () => new Date() }));
    expect(err.message).toBe(
      `/dev/mapper/${MAPPER} (the opened ${sb.image}) holds no filesystem hbs recognises, not ext4; hbs formats nothing it did not create, and closed /dev/mapper/${MAPPER} again`,
    );
    runner.assertDone();
    expect(await mkfsStep.check(ctx)).toEqual({ done: false });
    expect((await rejection(mkfsStep.plan(ctx))).message).toBe('refusing to format an image this run did not create');
    expect((await rejection(luksFormatStep.plan({ ...ctx, state: { ...ctx.state, luks: { formatted: false } } }))).message).toMatch(/refusing to luksFormat/);
  });

  it('a mapping already open on the image (by hand): its ext4 is read there, nothing is opened again', async () => {
    const status = `/dev/mapper/${MAPPER} is active.\n  type:    LUKS2\n  cipher:  aes-xts-plain64\n  device:  /dev/loop0\n  loop:    ${sb.image}\n`;
    const runner = new RecordingRunner([{ argv: ['cryptsetup', 'status', MAPPER], write: false, stdout: status }, blkid(`/dev/mapper/${MAPPER}`, { TYPE: 'ext4', UUID: FS_UUID })]);
    const ctx = adoptCtx(runner);
    ctx.state.image.adopted = true;
    ctx.state.luks = { formatted: false, adopted: { uuid: LUKS_UUID } };
    expect(await luksOpenStep.check(ctx)).toEqual({ done: true, detail: `/dev/mapper/${MAPPER} is open (/dev/loop0)` });
    expect(ctx.state.image.uuid).toBe(FS_UUID);
    runner.assertDone();
  });

  it('the old server still holds the lock: refused before the image is even opened', async () => {
    await writeFile(`${sb.image}.hbs-lock`, JSON.stringify({ hostname: 'old-server', machineId: 'ffffffffffffffffffffffffffffffff', pid: 1, config: '/etc/hbs/config.json', time: '2025-01-01T00:00:00.000Z' }));
    const runner = new RecordingRunner([mapperClosed]);
    const ctx = adoptCtx(runner);
    ctx.state.luks = { formatted: false, adopted: { uuid: LUKS_UUID } };
    const err = await rejection(luksOpenStep.check(ctx));
    expect(err.message).toContain('old-server');
    expect(writeCalls(runner)).toEqual([]);
  });

  it('dry-run: probes and checks the key (read-only), prints the backup, open and config, never a format and never the secret', async () => {
    const inner = new RecordingRunner([...imageProbes(), testKey(), mapperClosed, findmnt(sb.mountPoint)]);
    const reporter = new MemoryReporter();
    const runner = new DryRunRunner(inner, (l) => reporter.line(l));
    const ctx = { ...adoptCtx(inner), runner, reporter, opts: makeOpts(sb, { adopt: true, sizeGiven: false, encrypt: encryptOpts(), dryRun: true }) };
    const before = await listTree(sb.root);

    await runSteps(ctx, fromImage());

    inner.assertDone();
    expect(writeCalls(inner)).toEqual([]);
    expect(await listTree(sb.root)).toEqual(before);
    const text = reporter.lines.join('\n').split(sb.root).join('<tmp>');
    expect(text).not.toContain(PASS);
    expect(text).not.toMatch(/luksFormat|luksAddKey|mkfs|truncate/);
    expect(reporter.lines.filter((l) => l.startsWith('  ! ')).map((l) => l.split(sb.root).join('<tmp>'))).toEqual([
      '  ! mkdir -p -m 0700 <tmp>/etc/hbs',
      '  ! cryptsetup luksHeaderBackup <tmp>/box/filesystem.img --header-backup-file <tmp>/etc/hbs/hbs-filesystem.luks-header',
      '  ! chmod 0600 <tmp>/etc/hbs/hbs-filesystem.luks-header',
      '  ! cryptsetup open --type luks2 --key-file - <tmp>/box/filesystem.img hbs-filesystem <<(stdin)',
      '  ! check that /dev/mapper/hbs-filesystem holds an ext4 filesystem and read its UUID (blkid; if not: close it again and stop, nothing is formatted)',
      '  ! mkdir -p -m 0700 <tmp>/etc/hbs',
      "  ! write <tmp>/etc/hbs/config.json (mode 0600, atomic) with the adopted image's ext4 UUID, read once it is open",
      '  ! mkdir -p -m 0755 <tmp>/mnt',
      "  ! write the lock <tmp>/box/filesystem.img.hbs-lock (this machine's hostname, machine-id, pid, time)",
      '  ! mount -t ext4 -o noatime,noinit_itable /dev/mapper/hbs-filesystem <tmp>/mnt',
      '  ! losetup --direct-io=on <the loop device under <tmp>/mnt> (if the kernel refuses, it stays buffered)',
      '  ! findmnt --verify the new hbs block, and <tmp>/fstab with it (no new errors allowed)',
      '  ! back up <tmp>/fstab, then write it atomically with the block between the BEGIN/END markers',
    ]);
    expect(text).toContain('• ext4 filesystem in the image — adopted: its ext4 UUID is read once it is open; never formatted');
  });

  it('dry-run without the key (not needed to print the plan): no key check, the same commands', async () => {
    const inner = new RecordingRunner([...imageProbes(), mapperClosed, findmnt(sb.mountPoint)]);
    const reporter = new MemoryReporter();
    const runner = new DryRunRunner(inner, (l) => reporter.line(l));
    const ctx = { ...adoptCtx(inner, []), runner, reporter };
    await runSteps(ctx, fromImage());
    inner.assertDone(); // no `cryptsetup open --test-passphrase` expected, none ran
    expect(reporter.lines.filter((l) => l.startsWith('  ! cryptsetup'))).toHaveLength(2);
  });

  it('dry-run of a whole reinstall (box not mounted yet): the adoption is shown, never a create, luksFormat or mkfs', async () => {
    await rm(sb.boxMount, { recursive: true });
    const inner = new RecordingRunner([
      findmnt(sb.boxMount), // targets
      findmnt(sb.mountPoint),
      keyscan(`[${HOST}]:23 ${FIXTURE_KEY.type} ${FIXTURE_KEY.blob}\n`), // host-key
      findmnt(sb.boxMount), // box-mount
      findmnt(sb.mountPoint), // fs-mount
    ]);
    const reporter = new MemoryReporter();
    const opts = makeOpts(sb, { adopt: true, sizeGiven: false, encrypt: encryptOpts(), dryRun: true, hostKeyFingerprint: FIXTURE_KEY.fingerprint });
    const ctx = { ...adoptCtx(inner), opts, reporter, runner: new DryRunRunner(inner, (l) => reporter.line(l)) };
    await runSteps(ctx);
    inner.assertDone();
    expect(writeCalls(inner)).toEqual([]);
    const text = reporter.lines.join('\n').split(sb.root).join('<tmp>');
    expect(text).not.toContain(PASS);
    expect(text).not.toMatch(/luksFormat|luksAddKey|mkfs|truncate|create <tmp>/);
    expect(text).toContain('• Sparse image file on the box — --adopt: <tmp>/box/filesystem.img is used as it is (LUKS, checked once the box is mounted); never formatted');
    expect(text).toContain('  ! cryptsetup luksHeaderBackup <tmp>/box/filesystem.img');
    expect(text).toContain('  ! cryptsetup open --type luks2 --key-file - <tmp>/box/filesystem.img hbs-filesystem <<(stdin)');
    expect(text).toContain('• ext4 filesystem in the image — adopted: its ext4 UUID is read once it is open; never formatted');
  });

  it('a re-run after the adoption finds everything recorded and done', async () => {
    await mkdir(sb.configDir, { recursive: true });
    const prior = {
      ...recordedConfig(sb, { image: { uuid: FS_UUID }, mountOptions: ['noatime', 'noinit_itable'] }),
      encryption: { type: 'luks2' as const, mapperName: MAPPER, keys: ['passphrase' as const], headerBackup: backupPath(), unattendedKeyFile: null },
    };
    await writeFile(sb.config, serializeConfig(prior));
    const runner = new RecordingRunner(imageProbes());
    const ctx = adoptCtx(runner);
    ctx.state.existingConfig = prior;
    expect((await imageStep.check(ctx)).detail).toMatch(/is the LUKS2 image recorded in/);
    expect(await luksFormatStep.check(ctx)).toEqual({ done: true, detail: 'the image is the recorded LUKS2 container; not formatted again' });
  });
});

describe('the wizard on an encrypted image it found', () => {
  const prompter = (answers: (string | boolean)[], asked: string[]): Prompter => ({
    input: () => Promise.reject(new Error('no input expected')),
    password: (q) => {
      asked.push(q.message);
      return Promise.resolve(answers.shift() as string);
    },
    confirm: (q) => {
      asked.push(q.message);
      return Promise.resolve(answers.shift() as boolean);
    },
  });
  const found = (): ExistingImageError =>
    new ExistingImageError(`${sb.image} already exists on the box (100 GiB, LUKS2 encrypted, UUID ${LUKS_UUID}) and is not the image recorded in ${sb.config}; hbs left it untouched`, 'encrypted', 'h');

  it('says it is encrypted, offers adoption, then asks for the key', async () => {
    const asked: string[] = [];
    const opts = makeOpts(sb);
    let askedKey = 0;
    const ok = await decideOnExistingImage(found(), opts, prompter([true], asked), { needsKey: () => true, askKey: () => Promise.resolve(void askedKey++) });
    expect(ok).toBe(true);
    expect(opts.adopt).toBe(true);
    expect(askedKey).toBe(1);
    expect(asked[0]).toContain('It is encrypted (LUKS). Adopt it as it is (no luksFormat, no mkfs, the data stays)? You need its passphrase.');
  });

  it('"no" leaves it alone', async () => {
    const err = await rejection(decideOnExistingImage(found(), makeOpts(sb), prompter([false], []), { needsKey: () => true, askKey: () => Promise.reject(new Error('not asked')) }));
    expect(err).toBeInstanceOf(AbortError);
  });

  it('asks the passphrase once per attempt, checked against the image; three wrong ones stop with exit 2', async () => {
    const asked: string[] = [];
    const right = new RecordingRunner([testKey(2, 'typo'), testKey(0, PASS)]);
    const reporter = new MemoryReporter();
    const key = await askExistingPassphrase(prompter(['typo', PASS], asked), reporter, right, sb.image);
    expect(Buffer.from(key.bytes).toString()).toBe(PASS);
    expect(asked).toHaveLength(2);
    expect(asked[1]).toContain('(attempt 2 of 3)');
    expect(reporter.lines.join('\n')).toContain('does not open');

    const wrong = new RecordingRunner([testKey(2, 'a'), testKey(2, 'b'), testKey(2, 'c')]);
    const err = await rejection(askExistingPassphrase(prompter(['a', 'b', 'c'], []), new MemoryReporter(), wrong, sb.image));
    expect(err).toBeInstanceOf(WrongKeyError);
    expect((err as HbsError).exitCode).toBe(EXIT.usage);
  });
});
