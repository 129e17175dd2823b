import { readFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UsageError } from '../../../../src/core/errors.js';
import { parseCrypttabLine } from '../../../../src/lib/crypttab.js';
import { assertCrypttabWritable, crypttabEntry, crypttabStep } from '../../../../src/steps/init/crypttab.js';
import type { FakeMachine } from '../../../support/fake-machine.js';
import { encryptOpts, fakeBox, initCtx, initOpts, MAPPER, runSteps } from '../../../support/init.js';
import { makeSandbox, type Sandbox } from '../../../support/sandbox.js';

let sb: Sandbox;
let m: FakeMachine;
beforeEach(async () => {
  sb = await makeSandbox();
  m = fakeBox(sb);
});
afterEach(async () => {
  await sb.cleanup();
});

const keep = () => `${sb.configDir}/${MAPPER}.key`;

describe('crypttab step', () => {
  it('the line holds the key file path (never its content) and parses back into the four fields systemd-cryptsetup gets', async () => {
    const ctx = initCtx(sb, m, { opts: { encrypt: encryptOpts(sb, { unattendedKeyFile: keep(), crypttab: sb.crypttab }) } });
    await runSteps(ctx, m, [crypttabStep], { dryRun: true });
    const line = `${MAPPER} ${sb.image} ${keep()} luks,_netdev,nofail,headless=true`;
    expect(ctx.reporter.lines).toEqual([
      `  ! back up ${sb.crypttab} (if it exists), then write its hbs block (${sb.config}) — the line that opens the image at boot; the rest of the file stays as it is:`,
      `  !   | ${line}`,
      '✔ crypttab line (opens the image at boot) — would change (not done: dry-run)',
    ]);
    await expect(readFile(sb.crypttab)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(parseCrypttabLine(line)).toEqual({ name: MAPPER, source: sb.image, keyFile: keep(), options: ['luks', '_netdev', 'nofail', 'headless=true'] });
  });

  it('skipped without --luks-unattended, and with --no-crypttab', async () => {
    for (const [encrypt, detail] of [
      [encryptOpts(sb), 'skipped (no --luks-unattended)'],
      [encryptOpts(sb, { unattendedKeyFile: keep(), crypttab: null }), 'skipped (--no-crypttab)'],
    ] as const) {
      const [o] = await runSteps(initCtx(sb, m, { opts: { encrypt } }), m, [crypttabStep]);
      expect(o).toMatchObject({ status: 'already', detail });
    }
  });

  it('paths crypttab cannot hold are a usage error; none without a crypttab line', () => {
    const o = initOpts(sb, { boxMount: `${sb.root}/my box`, encrypt: encryptOpts(sb, { unattendedKeyFile: keep(), crypttab: sb.crypttab }) });
    expect(() => assertCrypttabWritable(o)).toThrow(UsageError);
    expect(() => assertCrypttabWritable({ ...o, encrypt: encryptOpts(sb, { unattendedKeyFile: keep(), crypttab: null }) })).not.toThrow();
    expect(crypttabEntry({ ...o, encrypt: encryptOpts(sb) })).toBeUndefined();
  });
});
