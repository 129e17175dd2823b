import { mkdir, readFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { passphraseKey, type LuksKey } from '../../../../src/lib/luks.js';
import { initStepsFor } from '../../../../src/commands/init/steps.js';
import { luksFormatStep, luksOpenStep } from '../../../../src/steps/init/luks.js';
import type { FakeMachine } from '../../../support/fake-machine.js';
import { encryptOpts, fakeBox, initCtx, MAPPER, modeOf, runSteps } from '../../../support/init.js';
import { BOX_SOURCE, makeSandbox, PASSPHRASE, rejection, type Sandbox } from '../../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
  await m.mountBox(sb.boxMount, BOX_SOURCE);
});
afterEach(async () => {
  await sb.cleanup();
});

const keyFile: LuksKey = { kind: 'keyfile', bytes: Buffer.from([0, 1, 2, 255, 10, 13]), label: 'key file /root/k' };

describe('init --encrypt steps', () => {
  it('LUKS format and open come between the image and mkfs, only with --encrypt; crypttab before fstab only with --luks-unattended', () => {
    expect(initStepsFor({}).map((s) => s.id)).not.toContain('luks-format');
    const ids = initStepsFor({ encrypt: { unattendedKeyFile: null } }).map((s) => s.id);
    expect(ids.slice(ids.indexOf('image'), ids.indexOf('mkfs') + 1)).toEqual(['image', 'luks-format', 'crypt-open', 'mkfs']);
    expect(ids).not.toContain('crypttab');
    expect(initStepsFor({ encrypt: { unattendedKeyFile: '/etc/hbs/k' } }).map((s) => s.id).slice(-4)).toEqual(['loop-buffered', 'crypttab', 'fstab', 'boot-unit']);
  });

  it('never luksFormats an image this run did not create', async () => {
    const ctx = initCtx(sb, m, { opts: { encrypt: encryptOpts(sb) }, luksKeys: [passphraseKey(PASSPHRASE)] });
    const [o] = await runSteps(ctx, m, [luksFormatStep]);
    expect(o).toMatchObject({ status: 'already', detail: 'the image is the recorded LUKS2 container; not formatted again' });
    await expect(luksFormatStep.plan(ctx)).rejects.toThrow('refusing to luksFormat an image this run did not create');
    expect(m.ran).toEqual([]);
  });

  it('a key file as the only key: the unattended key file gets its bytes, binary intact (0400, in a 0700 directory)', async () => {
    const keep = `${sb.configDir}/${MAPPER}.key`;
    const ctx = initCtx(sb, m, {
      opts: { encrypt: encryptOpts(sb, { passphrase: false, keyFile: { path: '/root/k', generated: false, keep: true }, unattendedKeyFile: keep }) },
      luksKeys: [keyFile],
      state: { image: { created: true } },
    });
    await runSteps(ctx, m, [luksFormatStep]);
    expect(Buffer.from(m.commands[0]!.stdin!)).toEqual(Buffer.from(keyFile.bytes));
    expect(await readFile(keep)).toEqual(Buffer.from(keyFile.bytes));
    expect(await modeOf(keep)).toBe(0o400);
    expect(await modeOf(sb.configDir)).toBe(0o700);
  });

  it('the container this run formatted is opened without looking for ext4 in it (it is empty until mkfs)', async () => {
    const ctx = initCtx(sb, m, { opts: { encrypt: encryptOpts(sb) }, luksKeys: [passphraseKey(PASSPHRASE)], state: { image: { created: true } } });
    await mkdir(sb.configDir, { recursive: true });
    await runSteps(ctx, m, [luksFormatStep, luksOpenStep]);
    expect(m.ran.slice(-1)).toEqual([`cryptsetup open --type luks2 --key-file - ${sb.image} ${MAPPER} <<(stdin)`]);
    expect(m.world.mappings.get(MAPPER)?.backing).toBe(sb.image);
    expect(ctx.stack.fs.uuid).toBeUndefined();
  });

  it('any other container must hold an ext4 once opened; else it is closed again', async () => {
    m.luksImage(sb.image, [PASSPHRASE]);
    const ctx = initCtx(sb, m, { opts: { encrypt: encryptOpts(sb), adopt: true }, luksKeys: [passphraseKey(PASSPHRASE)] });
    const err = await rejection(runSteps(ctx, m, [luksOpenStep]));
    expect(err.message).toContain('holds no filesystem hbs recognises, not ext4; closed it again');
    expect(m.ran.at(-1)).toBe(`cryptsetup close ${MAPPER}`);
  });

  it('a mapping of that name open on another file is refused (exit 2)', async () => {
    m.openMapping(MAPPER, '/srv/elsewhere.img');
    const ctx = initCtx(sb, m, { opts: { encrypt: encryptOpts(sb) }, luksKeys: [passphraseKey(PASSPHRASE)], state: { image: { created: true } } });
    const err = await rejection(runSteps(ctx, m, [luksOpenStep]));
    expect(err.exitCode).toBe(2);
    expect(err.message).toBe(`/dev/mapper/${MAPPER} is open on /srv/elsewhere.img, not ${sb.image}`);
  });
});
