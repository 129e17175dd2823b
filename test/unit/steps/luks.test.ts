import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execute } from '../../../src/core/plan.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { formatCmd, type Cmd } from '../../../src/core/runner.js';
import type { EncryptOptions } from '../../../src/init/options.js';
import { initStepsFor, INIT_STEPS } from '../../../src/init/run-init.js';
import { buildConfig } from '../../../src/steps/config.js';
import { fsMountStep, mountArgv } from '../../../src/steps/fs-mount.js';
import { fstabEntries } from '../../../src/steps/fstab.js';
import { ExistingImageError, imageStep } from '../../../src/steps/image.js';
import { luksFormatStep, luksOpenStep } from '../../../src/steps/luks.js';
import { mkfsStep } from '../../../src/steps/mkfs.js';
import { configSchema } from '../../../src/lib/config.js';
import { passphraseKey, type LuksKey } from '../../../src/lib/luks.js';
import { blkid, FIXED_UUID, FIXTURE_KEY, findmnt, makeCtx, makeSandbox, modeOf, recordedConfig, rejection, statImage, type Sandbox } from './helpers.js';

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

const PASS = 'correct horse battery staple';
const MAPPER = 'hbs-filesystem';

function encryptOpts(over: Partial<EncryptOptions> = {}): EncryptOptions {
  return { mapperName: MAPPER, passphrase: true, headerBackup: join(sb.configDir, `${MAPPER}.luks-header`), unattendedKeyFile: null, ...over };
}

const keyFileKey: LuksKey = { kind: 'keyfile', bytes: Buffer.from([0, 1, 2, 255, 10, 13]), label: 'key file /dev/shm/k' };

/** No argv, log line or error text may carry a key; it reaches cryptsetup only on stdin. */
function assertNoSecretOutsideStdin(calls: readonly Cmd[], secrets: readonly string[]): void {
  for (const c of calls) {
    for (const s of secrets) {
      expect(c.argv.join(' ')).not.toContain(s);
      expect(formatCmd(c)).not.toContain(s);
    }
  }
}

describe('init --encrypt steps', () => {
  it('puts LUKS format and open between the image and mkfs, only with --encrypt', () => {
    expect(initStepsFor({})).toBe(INIT_STEPS);
    const ids = initStepsFor({ encrypt: encryptOpts() }).map((s) => s.id);
    expect(ids.slice(ids.indexOf('image'), ids.indexOf('mkfs') + 1)).toEqual(['image', 'luks-format', 'luks-open', 'mkfs']);
  });

  it('luksFormat with the passphrase on stdin, the key file into a second slot, a 0600 header backup', async () => {
    const image = sb.image;
    const backup = join(sb.configDir, `${MAPPER}.luks-header`);
    const runner = new RecordingRunner([
      { argv: ['cryptsetup', 'luksFormat', '--batch-mode', '--type', 'luks2', '--key-file', '-', image], stdin: PASS, write: true },
      { argv: ['cryptsetup', 'luksAddKey', '--batch-mode', '--key-file', '-', image, '/dev/shm/k'], stdin: PASS, write: true },
      { argv: ['cryptsetup', 'luksHeaderBackup', image, '--header-backup-file', backup], write: true },
    ]);
    const ctx = makeCtx(sb, {
      runner,
      opts: { encrypt: encryptOpts({ keyFile: { path: '/dev/shm/k', generated: true, keep: false } }) },
      state: { image: { created: true } },
    });
    ctx.luksKeys = [passphraseKey(PASS), keyFileKey];
    await expect(luksFormatStep.check(ctx)).resolves.toEqual({ done: false });
    const actions = await luksFormatStep.plan(ctx);
    // Stand in for cryptsetup writing the backup (it creates it 0400).
    const realRun = runner.run.bind(runner);
    runner.run = async (cmd) => {
      const r = await realRun(cmd);
      if (cmd.argv[1] === 'luksHeaderBackup') await writeFile(backup, 'header', { mode: 0o400 });
      return r;
    };
    await execute(actions, { runner, print: () => undefined, verbose: false, now: () => new Date() });
    runner.assertDone();
    expect(await modeOf(backup)).toBe(0o600);
    expect(await modeOf(sb.configDir)).toBe(0o700);
    assertNoSecretOutsideStdin(runner.calls, [PASS]);
  });

  it('a key file alone: its raw bytes on stdin, binary intact', async () => {
    const runner = new RecordingRunner([
      { argv: ['cryptsetup', 'luksFormat', '--batch-mode', '--type', 'luks2', '--key-file', '-', sb.image], stdin: keyFileKey.bytes },
    ]);
    const ctx = makeCtx(sb, { runner, opts: { encrypt: encryptOpts({ passphrase: false, keyFile: { path: '/k', generated: false, keep: true } }) }, state: { image: { created: true } } });
    ctx.luksKeys = [keyFileKey];
    const [format, ...rest] = await luksFormatStep.plan(ctx);
    expect(format).toMatchObject({ kind: 'run' });
    expect(rest.map((a) => a.kind)).toEqual(['mkdir', 'run', 'task']);
    if (format?.kind === 'run') await runner.run(format.cmd);
    runner.assertDone();
  });

  it('cheap PBKDF only when HBS_TEST_CHEAP_PBKDF=1', async () => {
    const ctx = makeCtx(sb, { runner: new RecordingRunner(), opts: { encrypt: encryptOpts() }, state: { image: { created: true } } });
    ctx.luksKeys = [passphraseKey(PASS)];
    process.env.HBS_TEST_CHEAP_PBKDF = '1';
    try {
      const [format] = await luksFormatStep.plan(ctx);
      expect(format?.kind === 'run' && format.cmd.argv).toEqual(['cryptsetup', 'luksFormat', '--batch-mode', '--type', 'luks2', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000', '--key-file', '-', sb.image]);
    } finally {
      delete process.env.HBS_TEST_CHEAP_PBKDF;
    }
  });

  it('never formats an image this run did not create', async () => {
    const ctx = makeCtx(sb, { runner: new RecordingRunner(), opts: { encrypt: encryptOpts() } });
    ctx.luksKeys = [passphraseKey(PASS)];
    expect((await luksFormatStep.check(ctx)).done).toBe(true);
    expect((await rejection(luksFormatStep.plan(ctx))).message).toMatch(/refusing to luksFormat/);
  });

  it('stops before any change when a header backup is already there', async () => {
    const e = encryptOpts();
    await writeFile(sb.root + '/hb', 'old');
    const runner = new RecordingRunner();
    const ctx = makeCtx(sb, { runner, opts: { encrypt: { ...e, headerBackup: sb.root + '/hb' } }, state: { image: { created: true } } });
    ctx.luksKeys = [passphraseKey(PASS)];
    expect((await rejection(luksFormatStep.plan(ctx))).message).toMatch(/exists already/);
    expect(runner.calls).toEqual([]);
  });

  it('unattended: the first key goes to a 0400 file', async () => {
    const keep = join(sb.configDir, `${MAPPER}.key`);
    const runner = new RecordingRunner([
      { argv: ['cryptsetup', 'luksFormat', '--batch-mode', '--type', 'luks2', '--key-file', '-', sb.image] },
      { argv: ['cryptsetup', 'luksHeaderBackup', sb.image, '--header-backup-file', join(sb.configDir, `${MAPPER}.luks-header`)] },
    ]);
    const ctx = makeCtx(sb, { runner, opts: { encrypt: encryptOpts({ unattendedKeyFile: keep }) }, state: { image: { created: true } } });
    ctx.luksKeys = [passphraseKey(PASS)];
    const actions = (await luksFormatStep.plan(ctx)).filter((a) => !(a.kind === 'task' && a.describe[0]?.startsWith('chmod')));
    await execute(actions, { runner, print: () => undefined, verbose: false, now: () => new Date() });
    expect(await modeOf(keep)).toBe(0o400);
  });

  it('open: key on stdin; done when the mapping is open on this image; refuses one on another file', async () => {
    const status = (loop: string): string => `/dev/mapper/${MAPPER} is active and is in use.\n  type:    LUKS2\n  cipher:  aes-xts-plain64\n  device:  /dev/loop0\n  loop:    ${loop}\n`;
    const st = { argv: ['cryptsetup', 'status', MAPPER], write: false };
    const runner = new RecordingRunner([
      { ...st, exitCode: 4 },
      { argv: ['cryptsetup', 'open', '--type', 'luks2', '--key-file', '-', sb.image, MAPPER], stdin: PASS, write: true },
      { ...st, stdout: status(sb.image) },
      { ...st, stdout: status('/elsewhere.img') },
    ]);
    const ctx = makeCtx(sb, { runner, opts: { encrypt: encryptOpts() } });
    ctx.luksKeys = [passphraseKey(PASS)];
    expect(await luksOpenStep.check(ctx)).toEqual({ done: false });
    const [open] = await luksOpenStep.plan(ctx);
    if (open?.kind === 'run') await runner.run(open.cmd);
    expect(await luksOpenStep.check(ctx)).toEqual({ done: true, detail: `/dev/mapper/${MAPPER} is open (/dev/loop0)` });
    expect((await rejection(luksOpenStep.check(ctx))).message).toMatch(/on \/elsewhere.img, not on/);
    runner.assertDone();
    assertNoSecretOutsideStdin(runner.calls, [PASS]);
  });

  it('mkfs formats the mapping with lazy init (a fresh mapping reads as noise), mounted with noinit_itable', async () => {
    const runner = new RecordingRunner(); // no mke2fs -V: the tuning does not depend on the version here
    const ctx = makeCtx(sb, { runner, opts: { encrypt: encryptOpts() }, state: { image: { created: true } } });
    expect(await mkfsStep.plan(ctx)).toEqual([
      {
        kind: 'run',
        cmd: {
          argv: ['mkfs.ext4', '-q', '-L', 'hbs-backup', '-U', FIXED_UUID, '-m', '0', '-e', 'remount-ro', '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard', `/dev/mapper/${MAPPER}`],
          timeoutMs: 30 * 60_000,
        },
      },
    ]);
    expect(ctx.state.mountOptions).toEqual(['noatime', 'noinit_itable']);
  });

  it('mounts the mapping without a loop option, and is done when it is mounted', async () => {
    expect(mountArgv(`/dev/mapper/${MAPPER}`, '/mnt', ['noatime'])).toEqual(['mount', '-t', 'ext4', '-o', 'noatime', `/dev/mapper/${MAPPER}`, '/mnt']);
    const runner = new RecordingRunner([findmnt(sb.mountPoint, { source: `/dev/mapper/${MAPPER}`, fstype: 'ext4' })]);
    const ctx = makeCtx(sb, { runner, opts: { encrypt: encryptOpts() } });
    expect(await fsMountStep.check(ctx)).toEqual({ done: true, detail: `/dev/mapper/${MAPPER} is mounted at ${sb.mountPoint}` });
  });

  it('records the encryption section (no secrets) and a noauto fstab line unless unattended', () => {
    const ctx = makeCtx(sb, { runner: new RecordingRunner(), opts: { encrypt: encryptOpts() }, state: { image: { created: true, uuid: FIXED_UUID }, mountOptions: ['noatime', 'noinit_itable'] } });
    ctx.state.hostKey = { type: FIXTURE_KEY.type, blob: FIXTURE_KEY.blob, fingerprint: FIXTURE_KEY.fingerprint };
    const cfg = buildConfig(ctx);
    expect(configSchema.parse(cfg).encryption).toEqual({
      type: 'luks2',
      mapperName: MAPPER,
      keys: ['passphrase'],
      headerBackup: join(sb.configDir, `${MAPPER}.luks-header`),
      unattendedKeyFile: null,
    });
    expect(JSON.stringify(cfg)).not.toContain(PASS);
    expect(fstabEntries(ctx)[1]).toMatchObject({ source: `/dev/mapper/${MAPPER}`, options: ['noauto', '_netdev', 'nofail', 'noatime', 'noinit_itable', `x-systemd.requires-mounts-for=${sb.boxMount}`] });
    ctx.opts.encrypt = encryptOpts({ unattendedKeyFile: '/etc/hbs/x.key' });
    expect(fstabEntries(ctx)[1]?.options[0]).toBe('_netdev');
  });

  it('a config without encryption stays valid', () => {
    expect(configSchema.parse(recordedConfig(sb)).encryption).toBeUndefined();
  });

  it('image: a LUKS file not recorded here is never formatted, with or without --encrypt', async () => {
    for (const encrypt of [undefined, encryptOpts()]) {
      const runner = new RecordingRunner([statImage(sb.image, { size: 1024 ** 3, blocks: 32768 }), blkid(sb.image, { TYPE: 'crypto_LUKS', VERSION: '2', UUID: 'abc' })]);
      const err = await rejection(imageStep.check(makeCtx(sb, { runner, opts: { encrypt } })));
      expect(err).toBeInstanceOf(ExistingImageError);
      expect(err.message).toMatch(/LUKS2 encrypted/);
    }
  });

  it('image: the recorded LUKS image is taken as it is', async () => {
    const runner = new RecordingRunner([statImage(sb.image, { size: 1024 ** 3, blocks: 32768 }), blkid(sb.image, { TYPE: 'crypto_LUKS', VERSION: '2', UUID: 'abc' })]);
    const prior = { ...recordedConfig(sb, { mountOptions: ['noatime', 'noinit_itable'] }), encryption: { type: 'luks2' as const, mapperName: MAPPER, keys: ['passphrase' as const], headerBackup: '/h', unattendedKeyFile: null } };
    const ctx = makeCtx(sb, { runner, opts: { encrypt: encryptOpts() }, state: { existingConfig: prior } });
    expect((await imageStep.check(ctx)).done).toBe(true);
    expect(ctx.state.image).toMatchObject({ created: false, uuid: FIXED_UUID });
    expect(ctx.state.mountOptions).toEqual(['noatime', 'noinit_itable']);
  });
});
