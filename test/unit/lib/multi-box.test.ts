/** Several stacks on one machine: the defaults derived from a config's name, collisions with other configs, removal helpers. */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { completeAnswers } from '../../../src/commands/init/answers.js';
import { encryptOptionsFor } from '../../../src/commands/init/encrypt.js';
import { mergeBlock, removeBlock } from '../../../src/core/block.js';
import { EXIT } from '../../../src/core/errors.js';
import { configName, defaultMapperName, pathDefaults } from '../../../src/lib/config-name.js';
import { serializeConfig, type Config } from '../../../src/lib/config.js';
import { unpinHost } from '../../../src/lib/host-keys.js';
import { mergeAuthorizedKeys, parseOpenSshPublicKey, removeFromAuthorizedKeys } from '../../../src/lib/rfc4716.js';
import { assertNoCollision, collisionWith, siblingConfigs } from '../../../src/lib/siblings.js';
import { stackFromConfig } from '../../../src/lib/stack.js';
import { configUnitName, isUnitOf, templateOf, unitName } from '../../../src/lib/systemd.js';
import { encryptedConfig, makeConfig, makeSandbox, rejection, type Sandbox } from '../../support/sandbox.js';

describe('defaults derived from the config name', () => {
  it('the default config keeps the names hbs always had', () => {
    expect(configName('/etc/hbs/config.json')).toBeUndefined();
    expect(pathDefaults('/etc/hbs/config.json')).toEqual({ boxMount: '/srv/backup/hetzner-backup-space', mountPoint: '/srv/backup/backup' });
    expect(defaultMapperName('filesystem.img', '/etc/hbs/config.json')).toBe('hbs-filesystem');
    expect(encryptOptionsFor({ image: 'filesystem.img', config: '/etc/hbs/config.json' }, { luksUnattended: true })).toMatchObject({
      mapperName: 'hbs-filesystem',
      headerBackup: '/etc/hbs/hbs-filesystem.luks-header',
      unattendedKeyFile: '/etc/hbs/hbs-filesystem.key',
    });
  });

  it('/etc/hbs/NAME.json puts NAME into the mapping, header backup, kept key and the mount points', () => {
    expect(configName('/etc/hbs/offsite.json')).toBe('offsite');
    expect(pathDefaults('/etc/hbs/offsite.json')).toEqual({ boxMount: '/srv/backup/offsite/hetzner-backup-space', mountPoint: '/srv/backup/offsite/backup' });
    expect(encryptOptionsFor({ image: 'filesystem.img', config: '/etc/hbs/offsite.json' }, { luksUnattended: true })).toMatchObject({
      mapperName: 'hbs-offsite-filesystem',
      headerBackup: '/etc/hbs/hbs-offsite-filesystem.luks-header',
      unattendedKeyFile: '/etc/hbs/hbs-offsite-filesystem.key',
    });
    // Characters a mapper name cannot hold become _.
    expect(defaultMapperName('filesystem.img', '/etc/hbs/my box.json')).toBe('hbs-my_box-filesystem');
  });

  it('init --yes fills in the derived mount points for another config, so two configs never share them', () => {
    const base = { user: 'u1', size: '10G', hostKeyFingerprint: undefined };
    const a = completeAnswers({ ...base, config: '/etc/hbs/a.json' });
    const b = completeAnswers({ ...base, config: '/etc/hbs/b.json' });
    expect([a.boxMount, a.mountPoint]).toEqual(['/srv/backup/a/hetzner-backup-space', '/srv/backup/a/backup']);
    expect([b.boxMount, b.mountPoint]).toEqual(['/srv/backup/b/hetzner-backup-space', '/srv/backup/b/backup']);
    expect(completeAnswers({ ...base }).boxMount).toBe('/srv/backup/hetzner-backup-space');
  });

  it('unit names: one rule for every kind; the templates they come from', () => {
    expect(unitName('/etc/hbs/config.json')).toBe('hbs-mount@etc-hbs-config.json.service');
    expect(configUnitName('/etc/hbs/a.json', 'backup', 'timer')).toBe('hbs-backup@etc-hbs-a.json.timer');
    expect(isUnitOf('hbs-backup@etc-hbs-a.json.timer', '/etc/hbs/a.json')).toBe(true);
    expect(isUnitOf('hbs-mount@etc-hbs-a.json.service', '/etc/hbs/a.json')).toBe(true);
    expect(isUnitOf('hbs-mount@etc-hbs-ab.json.service', '/etc/hbs/a.json')).toBe(false);
    expect(isUnitOf('hbs-mount@.service', '/etc/hbs/a.json')).toBe(false);
    expect(isUnitOf('other-mount@etc-hbs-a.json.service', '/etc/hbs/a.json')).toBe(false);
    expect(templateOf('hbs-backup@etc-hbs-a.json.timer')).toBe('hbs-backup@.timer');
  });
});

describe('collisions with another config in the same directory', () => {
  let sb: Sandbox;
  beforeEach(async () => {
    sb = await makeSandbox();
    await mkdir(sb.configDir, { recursive: true });
  });
  afterEach(() => sb.cleanup());

  const other = (over: Partial<Config> = {}): Config =>
    makeConfig(sb, { boxMount: join(sb.root, 'b-box'), filesystem: { mountPoint: join(sb.root, 'b-mnt'), mountOptions: ['noatime'] }, image: { name: 'filesystem.img', sizeBytes: 1, uuid: '9d8c7b6a-5f4e-4d3c-9b2a-1f0e9d8c7b6a', label: 'x' }, box: { user: 'u2', host: 'u2.your-storagebox.de', port: 23, remotePath: '' }, ...over });
  const otherPath = (): string => join(sb.configDir, 'b.json');
  const clash = (mine: Config, theirs: Config): string | undefined => collisionWith(stackFromConfig(mine, sb.config), otherPath(), stackFromConfig(theirs, otherPath()));

  it('two boxes with the same image name and their own mounts do not collide', () => {
    expect(clash(makeConfig(sb), other())).toBeUndefined();
  });

  it('the same image on the same box, the same mount point, box mount, nested mounts: each named with the other config', () => {
    expect(clash(makeConfig(sb), other({ box: makeConfig(sb).box }))).toBe(`the image filesystem.img on u123456@u123456.your-storagebox.de:backup is the image of ${otherPath()} already`);
    expect(clash(makeConfig(sb), other({ filesystem: { mountPoint: sb.mountPoint, mountOptions: [] } }))).toBe(`--mount-point ${sb.mountPoint} is the mount point of ${otherPath()} already`);
    expect(clash(makeConfig(sb), other({ boxMount: sb.boxMount }))).toBe(`--box-mount ${sb.boxMount} is the box mount of ${otherPath()} already`);
    expect(clash(makeConfig(sb), other({ boxMount: join(sb.mountPoint, 'x') }))).toBe(`--mount-point ${sb.mountPoint} overlaps ${join(sb.mountPoint, 'x')}, the box mount of ${otherPath()} already`);
  });

  it('encrypted: the same mapping name, header backup or kept key', () => {
    const mine = encryptedConfig(sb, { unattended: true });
    const enc = mine.encryption!;
    expect(clash(mine, other({ encryption: { ...enc, headerBackup: '/x', unattendedKeyFile: '/y' } }))).toBe(`the mapping name hbs-filesystem (--luks-name) is the one of ${otherPath()} already`);
    expect(clash(mine, other({ encryption: { ...enc, mapperName: 'hbs-b', unattendedKeyFile: '/y' } }))).toBe(`the header backup ${enc.headerBackup} is the one of ${otherPath()} already`);
    expect(clash(mine, other({ encryption: { ...enc, mapperName: 'hbs-b', headerBackup: '/x' } }))).toBe(`the kept key ${enc.unattendedKeyFile} is the one of ${otherPath()} already`);
  });

  it('assertNoCollision reads the other *.json configs (skipping what is not a config) and refuses with exit 2', async () => {
    await writeFile(otherPath(), serializeConfig(other({ filesystem: { mountPoint: sb.mountPoint, mountOptions: [] } })));
    await writeFile(join(sb.configDir, 'package.json'), '{"name": "not hbs"}');
    await writeFile(join(sb.configDir, 'broken.json'), '{');
    expect((await siblingConfigs(sb.config)).map((s) => s.path)).toEqual([otherPath()]);
    const err = await rejection(assertNoCollision(stackFromConfig(makeConfig(sb), sb.config)));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`--mount-point ${sb.mountPoint} is the mount point of ${otherPath()} already`);
    // Itself is no collision (a re-run of init on the same config).
    await writeFile(sb.config, serializeConfig(makeConfig(sb)));
    await expect(assertNoCollision(stackFromConfig(makeConfig(sb), otherPath()))).rejects.toThrow(sb.config);
  });
});

describe('removal keeps every other byte', () => {
  const KEY = parseOpenSshPublicKey('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUiTSjaTBz44BEeedRSXHHI0WAZuFXeRYWa3+kxYYjo hbs@host');
  const OTHER = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl admin@laptop';

  it("authorized_keys: hbs's OpenSSH line and RFC4716 block go, other keys, comments, blank lines and a missing final newline stay", () => {
    const before = `# keys of this account\n${OTHER}\n\n---- BEGIN SSH2 PUBLIC KEY ----\nComment: "someone else"\nAAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n---- END SSH2 PUBLIC KEY ----\ncommand="borg serve" ${OTHER}`;
    const { text: merged } = mergeAuthorizedKeys(before, KEY);
    expect(merged).not.toBe(before);
    const r = removeFromAuthorizedKeys(merged, KEY.blob);
    expect(r.removed).toBe(2);
    // hbs added a newline at the end of the last line: that stays (the server reads both the same way).
    expect(r.text).toBe(before + '\n');
    expect(removeFromAuthorizedKeys(before, KEY.blob)).toEqual({ text: before, removed: 0 });
    // A key line with options is hbs's too when its blob is.
    expect(removeFromAuthorizedKeys(`no-pty ssh-ed25519 ${KEY.blob} x\n${OTHER}`, KEY.blob)).toEqual({ text: OTHER, removed: 1 });
  });

  it('known_hosts: only the lines for the box go', () => {
    const text = '[u1.your-storagebox.de]:23 ssh-ed25519 AAAA1\n# note\n[u2.your-storagebox.de]:23 ssh-ed25519 AAAA2';
    expect(unpinHost(text, '[u1.your-storagebox.de]:23')).toBe('# note\n[u2.your-storagebox.de]:23 ssh-ed25519 AAAA2');
  });

  it('fstab without a final newline: two configs add their blocks, removing them in either order gives back the file byte for byte', () => {
    const orig = '# custom\nUUID=1 / ext4 defaults 0 1\n/dev/sdb1 /data xfs defaults 0 2';
    const both = mergeBlock(mergeBlock(orig, '/etc/hbs/a.json', ['a line']), '/etc/hbs/b.json', ['b line']);
    expect(removeBlock(removeBlock(both, '/etc/hbs/a.json'), '/etc/hbs/b.json')).toBe(orig);
    expect(removeBlock(removeBlock(both, '/etc/hbs/b.json'), '/etc/hbs/a.json')).toBe(orig);
    // The first removed, the second block still stands on a line of its own.
    expect(removeBlock(both, '/etc/hbs/a.json')).toBe(`${orig}\n${mergeBlock('', '/etc/hbs/b.json', ['b line']).replace('by hand\n', 'by hand; hbs added the newline above\n')}`);
  });
});
