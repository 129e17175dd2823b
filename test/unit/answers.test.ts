import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/core/errors.js';
import { checkGiven, completeAnswers, validateAnswer, type GivenAnswers } from '../../src/commands/init/answers.js';
import { DEFAULTS } from '../../src/commands/init/options.js';
import { FINGERPRINT_RE, isInside, isSystemDir, portSchema, USER_RE } from '../../src/lib/validate.js';

const FP = 'SHA256:IPO0h5HyjBPiuHLl2CJ+YWmg7nSQF1B3vAiI9SBVVCk';

/** The UsageError a call throws (sync or async). */
async function usageError(f: () => unknown): Promise<UsageError> {
  try {
    await f();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(2);
    return err as UsageError;
  }
  throw new Error('expected a UsageError, nothing was thrown');
}

const show = (v: string): string => JSON.stringify(v);

/** Each bad value for each flag; the message must name the flag and the value. */
const BAD: [keyof GivenAnswers, string, string][] = [
  ...['abc', '-5G', '0', '10X', '1.5.0G', '1M'].map((v) => ['size', '--size', v] as [keyof GivenAnswers, string, string]),
  ...['root', 'u12a', 'u123-sub', 'U123', '', 'u123 ', 'u12345678901'].map((v) => ['user', '--user', v] as [keyof GivenAnswers, string, string]),
  ...['a b', 'h;rm -rf /', '$(x)', 'h|x', '', '-oProxyCommand=x', 'h`x`', 'a..b'].map((v) => ['host', '--host', v] as [keyof GivenAnswers, string, string]),
  ...['0', '65536', '-1', '22x', '', '1e3', '0x17'].map((v) => ['port', '--port', v] as [keyof GivenAnswers, string, string]),
  ...['backup', './backup', 'srv/backup', ''].map((v) => ['mountPoint', '--mount-point', v] as [keyof GivenAnswers, string, string]),
  ...['box', '/a,b', '/a"b'].map((v) => ['boxMount', '--box-mount', v] as [keyof GivenAnswers, string, string]),
  ...['key', '/root/.ssh/a,b', '/root/.ssh/"k"'].map((v) => ['sshKey', '--ssh-key', v] as [keyof GivenAnswers, string, string]),
  ...['a/b', '..', '../x', '/abs', '.', '-x', 'x\ny', ''].map((v) => ['image', '--image', v] as [keyof GivenAnswers, string, string]),
  ...['../x', 'a/../b', '-x', 'a\tb'].map((v) => ['remotePath', '--remote-path', v] as [keyof GivenAnswers, string, string]),
  ...['SHA256:abc', 'sha256:IPO0h5HyjBPiuHLl2CJ+YWmg7nSQF1B3vAiI9SBVVCk', 'MD5:aa:bb', FP + 'x', FP.replace('+', '!'), 'IPO0h5HyjBPiuHLl2CJ+YWmg7nSQF1B3vAiI9SBVVCk'].map(
    (v) => ['hostKeyFingerprint', '--host-key-fingerprint', v] as [keyof GivenAnswers, string, string],
  ),
  ['fstab', '--fstab', 'etc/fstab'],
  ['config', '--config', 'config.json'],
];

describe('checkGiven', () => {
  it.each(BAD)('rejects %s %j naming flag and value', async (key, flag, value) => {
    const err = await usageError(() => checkGiven({ [key]: value }));
    expect(err.message.startsWith(`${flag}: `)).toBe(true);
    expect(err.message).toContain(show(value));
    expect(err.message.split('\n')).toHaveLength(1);
  });

  it.each([
    ['size', ' ', /--size: size is empty/],
    ['size', '', /--size: size is empty/],
  ] as const)('rejects size %j as empty', async (key, value, re) => {
    expect((await usageError(() => checkGiven({ [key]: value }))).message).toMatch(re);
  });

  it('lists every bad flag at once, one per line', async () => {
    const err = await usageError(() => checkGiven({ user: 'root', port: '22x', size: 'abc', host: 'u1.example' }));
    expect(err.message.split('\n')).toEqual([
      '--user: "root" is not a Storage Box account (u123456 or u123456-sub1)',
      '--port: "22x" is not a port (1-65535)',
      expect.stringMatching(/^--size: size "abc" /),
    ]);
  });

  it('accepts good values, skips undefined ones and accepts --no-fstab (null)', () => {
    expect(() =>
      checkGiven({
        user: 'u123456-sub12',
        host: 'u123456.your-storagebox.de',
        port: '22',
        remotePath: 'backups/hbs',
        image: 'filesystem.img',
        size: '1.5TiB',
        boxMount: '/mnt/box',
        mountPoint: '/mnt/my backup',
        sshKey: '/root/.ssh/id_hbs',
        hostKeyFingerprint: FP,
        fstab: null,
        config: undefined,
      }),
    ).not.toThrow();
    expect(() => checkGiven({ host: '192.0.2.1' })).not.toThrow();
    expect(() => checkGiven({ host: '2001:db8::1' })).not.toThrow();
    expect(() => checkGiven({})).not.toThrow();
  });
});

describe('completeAnswers', () => {
  it('lists every missing required flag', async () => {
    expect((await usageError(() => completeAnswers({}))).message).toBe('missing: --user, --size');
    expect((await usageError(() => completeAnswers({ user: 'u1' }))).message).toBe('missing: --size');
    expect((await usageError(() => completeAnswers({ size: '1G' }))).message).toBe('missing: --user');
  });

  it('--adopt: no --size is needed, and none is made up (the image on the box has its own)', () => {
    const a = completeAnswers({ user: 'u42' }, { adopt: true });
    expect(a.size).toBeUndefined();
    expect(a).toMatchObject({ user: 'u42', host: 'u42.your-storagebox.de' });
    expect((completeAnswers({ user: 'u42', size: '10G' }, { adopt: true })).size).toBe(10 * 1024 ** 3);
  });

  it('fills in defaults, derives the host from the user, and converts values', () => {
    expect(completeAnswers({ user: 'u42', size: '100G' })).toEqual({
      user: 'u42',
      host: 'u42.your-storagebox.de',
      port: 23,
      remotePath: '',
      image: DEFAULTS.image,
      size: 100 * 1024 ** 3,
      boxMount: DEFAULTS.boxMount,
      mountPoint: DEFAULTS.mountPoint,
      sshKey: DEFAULTS.sshKey,
      fstab: DEFAULTS.fstab,
      config: DEFAULTS.config,
    });
  });

  it('keeps given values, normalises paths and strips a trailing = from the fingerprint', () => {
    const a = completeAnswers(
      { user: 'u1', host: 'box.example', port: '22', size: '500GB', mountPoint: '/mnt//backup/./x/', boxMount: '/mnt/box/', hostKeyFingerprint: FP + '=', fstab: null },
      undefined,
    );
    expect(a).toMatchObject({ host: 'box.example', port: 22, size: 500e9, mountPoint: '/mnt/backup/x', boxMount: '/mnt/box', hostKeyFingerprint: FP, fstab: null });
  });

  it.each([
    ['the box mount itself', { mountPoint: '/mnt/box' }, '--mount-point', '"/mnt/box"'],
    ['inside the box mount', { mountPoint: '/mnt/box/fs' }, '--mount-point', '"/mnt/box/fs"'],
    ['the box mount with a trailing slash', { mountPoint: '/mnt/box/' }, '--mount-point', '"/mnt/box"'],
    ['a box mount inside the mount point', { mountPoint: '/mnt' }, '--box-mount', '"/mnt/box"'],
    ['/ as mount point', { mountPoint: '/' }, '--mount-point', '"/" is a system directory'],
    ['/etc as mount point', { mountPoint: '/etc' }, '--mount-point', '"/etc" is a system directory'],
    ['/usr/ as mount point', { mountPoint: '/usr/' }, '--mount-point', '"/usr" is a system directory'],
    ['/var as box mount', { boxMount: '/var' }, '--box-mount', '"/var" is a system directory'],
    ['/srv via .. as box mount', { boxMount: '/srv/x/..' }, '--box-mount', '"/srv" is a system directory'],
    ['an ssh key on the box mount', { sshKey: '/mnt/box/.ssh/k' }, '--ssh-key', 'not on the box mount'],
  ] as [string, GivenAnswers, string, string][])('rejects %s', async (_what, bad, flag, text) => {
    const given: GivenAnswers = { user: 'u1', size: '1G', boxMount: '/mnt/box', mountPoint: '/mnt/fs', ...bad };
    const err = await usageError(() => completeAnswers(given));
    const line = err.message.split('\n').find((l) => l.startsWith(`${flag}: `));
    expect(line, err.message).toBeDefined();
    expect(line).toContain(text);
  });

  it('allows a sibling whose name merely starts with the box mount', () => {
    const a = completeAnswers({ user: 'u1', size: '1G', boxMount: '/mnt/box', mountPoint: '/mnt/box-fs' });
    expect(a.mountPoint).toBe('/mnt/box-fs');
  });

  it('rejects bad given values too (checkGiven not called first)', async () => {
    const err = await usageError(() => completeAnswers({ user: 'u1', size: '1G', port: '65536', image: 'a/b' }));
    expect(err.message).toContain('--port: "65536" is not a port');
    expect(err.message).toContain('--image: image name "a/b"');
  });
});


describe('validate.ts helpers', () => {
  it('validateAnswer returns true or the message', () => {
    expect(validateAnswer('user', 'u1')).toBe(true);
    expect(validateAnswer('user', 'x')).toBe('"x" is not a Storage Box account (u123456 or u123456-sub1)');
    expect(validateAnswer('fstab', null)).toBe(true);
    expect(validateAnswer('size', '63M')).toBe('size "63M" is too small (at least 64M)');
    expect(validateAnswer('size', '64M')).toBe(true);
  });

  it('USER_RE takes accounts and sub-accounts only', () => {
    expect(['u1', 'u123456', 'u123456-sub1', 'u1-sub123456'].every((u) => USER_RE.test(u))).toBe(true);
    expect(['root', 'u', 'u1-sub', 'u1-sub1234567', 'u1-SUB1', 'xu1', 'u1\n'].some((u) => USER_RE.test(u))).toBe(false);
  });

  it('FINGERPRINT_RE wants SHA256: and 43 base64 characters', () => {
    expect(FINGERPRINT_RE.test(FP)).toBe(true);
    expect(FINGERPRINT_RE.test(FP + '=')).toBe(true);
    expect(FINGERPRINT_RE.test(FP.slice(0, -1))).toBe(false);
  });

  it('portSchema turns strings and numbers into port numbers', () => {
    expect(portSchema.parse('23')).toBe(23);
    expect(portSchema.parse(65535)).toBe(65535);
    expect(portSchema.safeParse('65536').success).toBe(false);
  });

  it('isInside matches the path itself and children, not name prefixes', () => {
    expect(isInside('/a/b', '/a/b')).toBe(true);
    expect(isInside('/a/b/c', '/a/b')).toBe(true);
    expect(isInside('/a/bc', '/a/b')).toBe(false);
    expect(isInside('/a', '/a/b')).toBe(false);
    expect(isInside('/anything', '/')).toBe(true);
  });

  it('isSystemDir knows / and the top-level system directories', () => {
    for (const d of ['/', '/etc', '/usr', '/var', '/home', '/root', '/tmp', '/srv']) expect(isSystemDir(d)).toBe(true);
    for (const d of ['/srv/backup', '/mnt', '/mnt/x', '/etc/x']) expect(isSystemDir(d)).toBe(false);
  });
});
