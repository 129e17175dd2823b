import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HbsError } from '../../../src/core/errors.js';
import { CONFIG_VERSION, configSchema, imagePath, readConfig, serializeConfig, type Config } from '../../../src/lib/config.js';

const valid = (): Config => ({
  version: 1,
  box: { user: 'u123456', host: 'u123456.your-storagebox.de', port: 23, remotePath: '' },
  ssh: {
    key: '/root/.ssh/hbs_ed25519',
    knownHosts: '/etc/hbs/known_hosts',
    hostKeyFingerprint: 'SHA256:IPO0h5HyjBPiuHLl2CJ+YWmg7nSQF1B3vAiI9SBVVCk',
  },
  boxMount: '/srv/backup/hetzner-backup-space',
  image: { name: 'filesystem.img', sizeBytes: 100 * 1024 ** 3, uuid: '3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b', label: 'hbs' },
  filesystem: { mountPoint: '/srv/backup/backup', mountOptions: ['noatime'] },
  fstab: '/etc/fstab',
});

/** The issue paths zod reports for a value, as `a.b` strings. */
function issuePaths(data: unknown): string[] {
  const r = configSchema.safeParse(data);
  return r.success ? [] : r.error.issues.map((i) => i.path.join('.'));
}

describe('configSchema', () => {
  it('accepts a valid config, also with fstab null, and returns it unchanged', () => {
    expect(CONFIG_VERSION).toBe(1);
    expect(configSchema.parse(valid())).toEqual(valid());
    const noFstab = { ...valid(), fstab: null };
    expect(configSchema.parse(noFstab)).toEqual(noFstab);
  });

  it.each([0, 2, '1', undefined])('rejects version %j', (version) => {
    expect(issuePaths({ ...valid(), version })).toEqual(['version']);
  });

  it('rejects missing fields, naming each', () => {
    const c: { box: { user?: string }; boxMount?: string } = valid();
    delete c.box.user;
    delete c.boxMount;
    expect(issuePaths(c).sort()).toEqual(['box.user', 'boxMount']);
    expect(issuePaths({ version: 1 }).sort()).toEqual(['box', 'boxMount', 'filesystem', 'fstab', 'image', 'ssh']);
  });

  it.each([
    ['image.uuid', (c: Config) => void (c.image.uuid = 'not-a-uuid')],
    ['box.port', (c: Config) => void (c.box.port = 0)],
    ['box.port', (c: Config) => void (c.box.port = 65536)],
    ['box.port', (c: Config) => void (c.box.port = 22.5)],
    ['image.sizeBytes', (c: Config) => void (c.image.sizeBytes = 0)],
    ['ssh.hostKeyFingerprint', (c: Config) => void (c.ssh.hostKeyFingerprint = 'MD5:aa:bb')],
    ['box.user', (c: Config) => void (c.box.user = '')],
    ['filesystem.mountOptions.0', (c: Config) => void ((c.filesystem.mountOptions as unknown[])[0] = 1)],
  ])('rejects a bad %s', (path, spoil) => {
    const c = valid();
    spoil(c);
    expect(issuePaths(c)).toEqual([path]);
  });
});

describe('imagePath / serializeConfig', () => {
  it('puts the image under the box mount', () => {
    expect(imagePath(valid())).toBe('/srv/backup/hetzner-backup-space/filesystem.img');
  });

  it('serializes as indented JSON with a final newline that parses back', () => {
    const text = serializeConfig(valid());
    expect(text.endsWith('}\n')).toBe(true);
    expect(text).toContain('\n  "version": 1,\n');
    expect(configSchema.parse(JSON.parse(text))).toEqual(valid());
  });
});

describe('readConfig', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hbs-config-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const write = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  async function failure(path: string): Promise<HbsError> {
    try {
      await readConfig(path);
    } catch (err) {
      expect(err).toBeInstanceOf(HbsError);
      return err as HbsError;
    }
    throw new Error(`readConfig(${path}) did not throw`);
  }

  it('returns undefined for a missing file', async () => {
    await expect(readConfig(join(dir, 'nope.json'))).resolves.toBeUndefined();
  });

  it('reads a valid config', async () => {
    await expect(readConfig(write('ok.json', serializeConfig(valid())))).resolves.toEqual(valid());
  });

  it('throws HbsError (exit 2) with one line per bad field for invalid content', async () => {
    const c = valid() as unknown as { image: { uuid: string }; box: { port: unknown } };
    c.image.uuid = 'nope';
    c.box.port = '23';
    const path = write('bad.json', JSON.stringify(c));
    const err = await failure(path);
    expect(err.exitCode).toBe(2);
    const lines = err.message.split('\n');
    expect(lines[0]).toBe(`config ${path} is invalid:`);
    expect(lines.slice(1).sort()).toEqual([expect.stringMatching(/^ {2}box\.port: \S/), expect.stringMatching(/^ {2}image\.uuid: \S/)]);
  });

  it('throws HbsError (exit 2) naming the file for bad JSON', async () => {
    const path = write('broken.json', '{"version": 1,');
    const err = await failure(path);
    expect(err.exitCode).toBe(2);
    expect(err.message).toBe(`config ${path} is not valid JSON`);
    expect(err.hint).toMatch(/fix or remove it/);
  });

  it('throws HbsError (exit 2) for JSON that is not an object', async () => {
    const err = await failure(write('array.json', '[]'));
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(/is invalid:/);
  });

  it('passes on errors other than a missing file', async () => {
    await expect(readConfig(dir)).rejects.toMatchObject({ code: 'EISDIR' });
  });
});
