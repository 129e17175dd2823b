/** `hbs init` with more than one config in the directory: derived defaults, collisions refused before anything changes. */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initCommand, type InitCliFlags } from '../../../src/commands/init/index.js';
import { EXIT } from '../../../src/core/errors.js';
import { serializeConfig, type Config } from '../../../src/lib/config.js';
import type { FakeMachine } from '../../support/fake-machine.js';
import { fakeBox, initFlags, PINNED } from '../../support/init.js';
import { encryptedConfig, makeSandbox, PASSPHRASE, rejection, testIo, type Sandbox, type TestIo } from '../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
  await mkdir(join(sb.root, 'ssh'), { recursive: true });
  await writeFile(sb.sshKey, 'fake private key\n', { mode: 0o600 });
  await writeFile(`${sb.sshKey}.pub`, m.world.publicKey);
  await mkdir(sb.configDir, { recursive: true });
  await writeFile(sb.knownHosts, PINNED, { mode: 0o600 });
  await writeFile(sb.fstab, 'UUID=1 / ext4 defaults 0 1');
});
afterEach(() => sb.cleanup());

const second = (): string => join(sb.configDir, 'offsite.json');
const init = (flags: InitCliFlags = {}, io: TestIo = testIo(m)) => initCommand(initFlags(sb, { config: second(), ...flags }), io);

/** The first config, already there: its stack in the sandbox, encrypted with the default names. */
async function firstConfig(over: Partial<Config> = {}): Promise<void> {
  await writeFile(sb.config, serializeConfig({ ...encryptedConfig(sb, { unattended: true }), fstab: sb.fstab, ...over }));
}

async function unchanged(before: { fstab: string; etc: string[] }): Promise<void> {
  expect(m.ran).toEqual([]);
  expect(await readFile(sb.fstab, 'utf8')).toBe(before.fstab);
  expect((await readdir(sb.configDir)).sort()).toEqual(before.etc);
}

describe('hbs init --config /etc/hbs/NAME.json next to another config', () => {
  it('an explicit mount point of the other config: exit 2, one line naming it, nothing changed', async () => {
    await firstConfig();
    const before = { fstab: await readFile(sb.fstab, 'utf8'), etc: (await readdir(sb.configDir)).sort() };
    const err = await rejection(init({ boxMount: join(sb.root, 'box2'), image: 'other.img' }));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`--mount-point ${sb.mountPoint} is the mount point of ${sb.config} already`);
    await unchanged(before);
  });

  it('the same image on the same box through another box mount: refused', async () => {
    await firstConfig();
    const before = { fstab: await readFile(sb.fstab, 'utf8'), etc: (await readdir(sb.configDir)).sort() };
    const err = await rejection(init({ boxMount: join(sb.root, 'box2'), mountPoint: join(sb.root, 'mnt2') }));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toContain(`is the image of ${sb.config} already`);
    await unchanged(before);
  });

  it('an explicit --luks-name of the other config: refused; the derived one does not collide (dry-run shows hbs-offsite-other)', async () => {
    await firstConfig();
    const flags: InitCliFlags = { boxMount: join(sb.root, 'box2'), mountPoint: join(sb.root, 'mnt2'), image: 'other.img', encrypt: true, luksPassphraseStdin: true, luksUnattended: true, crypttab: sb.crypttab };
    const before = { fstab: await readFile(sb.fstab, 'utf8'), etc: (await readdir(sb.configDir)).sort() };
    const err = await rejection(init({ ...flags, luksName: 'hbs-filesystem' }, testIo(m, { stdin: `${PASSPHRASE}\n` })));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`the mapping name hbs-filesystem (--luks-name) is the one of ${sb.config} already`);
    await unchanged(before);
    const io = testIo(m, { stdin: `${PASSPHRASE}\n` });
    await init({ ...flags, dryRun: true }, io);
    const text = io.reporter.lines.join('\n');
    expect(text).toContain('/dev/mapper/hbs-offsite-other');
    expect(text).toContain(join(sb.configDir, 'hbs-offsite-other.luks-header'));
    expect(text).toContain(join(sb.configDir, 'hbs-offsite-other.key'));
  });
});
