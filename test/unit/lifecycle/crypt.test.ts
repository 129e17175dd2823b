import { directIoOn } from '../canned.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import type { Expectation } from '../../../src/core/recording-runner.js';
import { formatCmd } from '../../../src/core/runner.js';
import type { Config } from '../../../src/lib/config.js';
import { passphraseKey, WrongKeyError } from '../../../src/lib/luks.js';
import { mountStack } from '../../../src/lifecycle/mount-stack.js';
import { umountStack } from '../../../src/lifecycle/umount-stack.js';
import { argvs, blkid, boxMounted, dd, exists, findmnt, IMAGE_FACTS, lockText, loopList, makeConfig, makeCtx, makeSandbox, ourLock, rejection, statFs, statImage, UUID, write, writeCalls, type Sandbox } from './helpers.js';

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
  await mkdir(sb.boxMount);
});
afterEach(async () => {
  await sb.cleanup();
});

const NAME = 'hbs-filesystem';
const DEV = `/dev/mapper/${NAME}`;
const PASS = 'the right passphrase';
const encCfg = (): Config => ({
  ...makeConfig(sb),
  encryption: { type: 'luks2', mapperName: NAME, keys: ['passphrase'], headerBackup: `${sb.root}/h`, unattendedKeyFile: null },
});
const status = (open: boolean): Expectation => ({
  argv: ['cryptsetup', 'status', NAME],
  write: false,
  ...(open ? { stdout: `${DEV} is active.\n  type:    LUKS2\n  cipher:  aes-xts-plain64\n  device:  /dev/loop7\n  loop:    ${sb.image}\n` } : { exitCode: 4 }),
});
const testKey = (exitCode: number): Expectation => ({ argv: ['cryptsetup', 'open', '--test-passphrase', '--type', 'luks2', '--key-file', '-', sb.image], write: false, exitCode });
const boxUpFsDown = (): Expectation[] => [findmnt(sb.boxMount, boxMounted), statFs(sb.boxMount), loopList(), findmnt(sb.mountPoint)];
const imageIsLuks = (): Expectation[] => [statImage(sb.image, IMAGE_FACTS), blkid(sb.image, { TYPE: 'crypto_LUKS', VERSION: '2', UUID: 'luks-uuid' })];
const fsMounted = { source: DEV, fstype: 'ext4', options: 'rw,noatime' };

describe('encrypted image: mount and umount', () => {
  it('mount: key checked read-only first, then lock, open (key on stdin), ext4 UUID checked, mount the mapping', async () => {
    const runner = new RecordingRunner([
      ...boxUpFsDown(),
      ...imageIsLuks(),
      status(false), // checkFsTarget
      loopList(),
      status(false), // bringUpFs
      { ...testKey(0), stdin: PASS },
      { argv: ['cryptsetup', 'open', '--type', 'luks2', '--key-file', '-', sb.image, NAME], write: true, stdin: PASS },
      blkid(DEV, { TYPE: 'ext4', UUID }),
      write(['mount', '-t', 'ext4', '-o', 'noatime,nodev', DEV, sb.mountPoint]),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      findmnt(sb.mountPoint, fsMounted),
      status(true),
      dd(DEV),
      // the loop device cryptsetup set up under the mapping, switched to direct I/O
      status(true),
      ...directIoOn('/dev/loop7'),
    ]);
    const ctx = makeCtx(sb, runner, {}, encCfg());
    ctx.luks = { key: () => Promise.resolve(passphraseKey(PASS)) };
    expect(await mountStack(ctx)).toEqual({ box: 'already', fs: 'mounted' });
    runner.assertDone();
    for (const c of runner.calls) expect(formatCmd(c)).not.toContain(PASS);
    expect(await exists(sb.lock)).toBe(true);
  });

  it('a wrong key: a clear error, no lock, nothing opened or mounted', async () => {
    const runner = new RecordingRunner([...boxUpFsDown(), ...imageIsLuks(), status(false), loopList(), status(false), testKey(2)]);
    const ctx = makeCtx(sb, runner, {}, encCfg());
    ctx.luks = { key: () => Promise.resolve(passphraseKey('wrong')) };
    const err = await rejection(mountStack(ctx));
    expect(err).toBeInstanceOf(WrongKeyError);
    expect(err.message).toMatch(/does not open .*nothing was changed/);
    expect(writeCalls(runner)).toEqual([]);
    expect(await exists(sb.lock)).toBe(false);
  });

  it('at a prompt a wrong passphrase may be typed again', async () => {
    const runner = new RecordingRunner([...boxUpFsDown(), ...imageIsLuks(), status(false), loopList(), status(false), testKey(2), testKey(2), testKey(2)]);
    const ctx = makeCtx(sb, runner, {}, encCfg());
    const attempts: number[] = [];
    ctx.luks = { canRetry: true, key: (n) => (attempts.push(n), Promise.resolve(passphraseKey(`wrong ${n}`))) };
    expect(await rejection(mountStack(ctx))).toBeInstanceOf(WrongKeyError);
    expect(attempts).toEqual([1, 2, 3]);
    expect(ctx.reporter.lines.filter((l) => /does not open/.test(l))).toHaveLength(2);
    expect(writeCalls(runner)).toEqual([]);
  });

  it('a plain ext4 where the config says LUKS: refused before any key is asked', async () => {
    const runner = new RecordingRunner([...boxUpFsDown(), statImage(sb.image, IMAGE_FACTS), blkid(sb.image, { TYPE: 'ext4', UUID })]);
    const ctx = makeCtx(sb, runner, {}, encCfg());
    ctx.luks = { key: () => Promise.reject(new Error('must not ask')) };
    expect((await rejection(mountStack(ctx))).message).toMatch(/is not a LUKS container/);
  });

  it('umount: unmount, THEN close the mapping, then the box', async () => {
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      findmnt(sb.mountPoint, fsMounted),
      status(true),
      dd(DEV),
      write(['sync', '--file-system', sb.mountPoint]),
      write(['umount', sb.mountPoint]),
      status(true),
      write(['cryptsetup', 'close', NAME]),
      loopList(),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      write(['fusermount3', '-u', sb.boxMount]),
    ]);
    expect(await umountStack(makeCtx(sb, runner, {}, encCfg()))).toEqual({ fs: 'unmounted', box: 'unmounted' });
    runner.assertDone();
    expect(argvs(writeCalls(runner))).toEqual([
      ['sync', '--file-system', sb.mountPoint],
      ['umount', sb.mountPoint],
      ['cryptsetup', 'close', NAME],
      ['fusermount3', '-u', sb.boxMount],
    ]);
  });
});
