import { chmod, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/core/errors.js';
import { execute, type Action } from '../../../src/core/plan.js';
import { DryRunRunner } from '../../../src/core/dry-run-runner.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { configSchema } from '../../../src/lib/config.js';
import { parseCrypttabLine } from '../../../src/lib/crypttab.js';
import type { EncryptOptions } from '../../../src/init/options.js';
import { initStepsFor } from '../../../src/init/run-init.js';
import { buildConfig } from '../../../src/steps/config.js';
import { assertCrypttabWritable, crypttabStep } from '../../../src/steps/crypttab.js';
import { FIXED_NOW, FIXED_UUID, FIXTURE_KEY, listTree, makeCtx, makeSandbox, modeOf, readText, rejection, type Sandbox } from './helpers.js';

let sb: Sandbox;
let crypttab: string;
let keyFile: string;
beforeEach(async () => {
  sb = await makeSandbox();
  crypttab = join(sb.root, 'crypttab');
  keyFile = join(sb.configDir, 'hbs-filesystem.key');
});
afterEach(async () => {
  await sb.cleanup();
});

const MAPPER = 'hbs-filesystem';
const OTHER = '# <target name> <source device> <key file> <options>\ncryptswap /dev/sda2 /dev/urandom swap,cipher=aes-xts-plain64\nhome UUID=1234 none luks,discard\n';

function unattended(over: Partial<EncryptOptions> = {}): EncryptOptions {
  return { mapperName: MAPPER, passphrase: true, headerBackup: join(sb.configDir, `${MAPPER}.luks-header`), unattendedKeyFile: keyFile, crypttab, ...over };
}

/** The block, spelled out: the key file's path, never its content. */
function expectedBlock(): string {
  return [
    `# BEGIN hbs managed block (${sb.config}): edit with hbs, not by hand`,
    `${MAPPER} ${sb.image} ${keyFile} luks,_netdev,nofail,headless=true`,
    `# END hbs managed block (${sb.config})`,
    '',
  ].join('\n');
}

function onlyTask(actions: Action[]): Extract<Action, { kind: 'task' }> {
  expect(actions).toHaveLength(1);
  const [a] = actions;
  if (a?.kind !== 'task') throw new Error('expected one task');
  return a;
}

const ctxFor = (encrypt: EncryptOptions | undefined) => makeCtx(sb, { runner: new RecordingRunner(), opts: { encrypt } });

describe('crypttab step (--luks-unattended)', () => {
  it('creates a missing crypttab with mode 0600, the hbs block only, and no backup', async () => {
    const ctx = ctxFor(unattended());
    await expect(crypttabStep.check(ctx)).resolves.toEqual({ done: false });
    await onlyTask(await crypttabStep.plan(ctx)).run();
    expect(await readText(crypttab)).toBe(expectedBlock());
    expect(await modeOf(crypttab)).toBe(0o600);
    expect(ctx.reporter.lines).toEqual([]);
    expect((await listTree(sb.root)).filter((p) => p.includes('hbs-backup'))).toEqual([]);
  });

  it('merges into an existing crypttab: other lines byte for byte, its mode kept, a backup first', async () => {
    await writeFile(crypttab, OTHER.trimEnd()); // no final newline
    await chmod(crypttab, 0o644);
    const ctx = ctxFor(unattended());
    await onlyTask(await crypttabStep.plan(ctx)).run();
    expect(await readText(crypttab)).toBe(OTHER + expectedBlock());
    expect(await modeOf(crypttab)).toBe(0o644);
    const backup = `${crypttab}.hbs-backup-20250102T030405Z`;
    expect(await readText(backup)).toBe(OTHER.trimEnd());
    expect(ctx.reporter.lines).toEqual([`  backup: ${backup}`]);
  });

  it('a re-run is done, and the block written is what check expects (idempotent)', async () => {
    await writeFile(crypttab, OTHER);
    const first = ctxFor(unattended());
    await onlyTask(await crypttabStep.plan(first)).run();
    const after = await readText(crypttab);
    await expect(crypttabStep.check(ctxFor(unattended()))).resolves.toEqual({ done: true, detail: `${crypttab} already has the hbs block` });
    // Even when planned again, the content does not change (one block, not two).
    await onlyTask(await crypttabStep.plan(ctxFor(unattended()))).run();
    expect(await readText(crypttab)).toBe(after);
    expect(after.split('# BEGIN hbs').length).toBe(2);
  });

  it('replaces an outdated hbs block in place, keeping the lines around it', async () => {
    const old = expectedBlock().replace(sb.image, `${sb.boxMount}/old.img`);
    await writeFile(crypttab, `${OTHER}${old}# mine\nbackup /dev/sdb1 none luks\n`);
    const ctx = ctxFor(unattended());
    await expect(crypttabStep.check(ctx)).resolves.toEqual({ done: false });
    await onlyTask(await crypttabStep.plan(ctx)).run();
    expect(await readText(crypttab)).toBe(`${OTHER}${expectedBlock()}# mine\nbackup /dev/sdb1 none luks\n`);
  });

  it('the line parses back into the four fields systemd-cryptsetup gets', () => {
    const line = expectedBlock().split('\n')[1]!;
    expect(parseCrypttabLine(line)).toEqual({ name: MAPPER, source: sb.image, keyFile, options: ['luks', '_netdev', 'nofail', 'headless=true'] });
  });

  it('a dry-run prints the line (key file path only) and writes nothing', async () => {
    const printed: string[] = [];
    const ctx = ctxFor(unattended());
    await execute(await crypttabStep.plan(ctx), { runner: new DryRunRunner(new RecordingRunner(), (l) => printed.push(l)), print: (l) => printed.push(l), verbose: false, now: () => FIXED_NOW });
    expect(printed).toEqual([
      `! back up ${crypttab} (if it exists; a new one gets mode 0600), then write it atomically with this line between the BEGIN/END markers:`,
      `!   ${MAPPER} ${sb.image} ${keyFile} luks,_netdev,nofail,headless=true`,
    ]);
    expect(await readdir(sb.root)).not.toContain('crypttab');
  });

  it('is not written without --luks-unattended, nor with --no-crypttab', async () => {
    await writeFile(crypttab, OTHER);
    for (const [encrypt, detail] of [
      [unattended({ unattendedKeyFile: null, crypttab: undefined }), 'skipped (no --luks-unattended)'],
      [unattended({ crypttab: null }), 'skipped (--no-crypttab)'],
    ] as const) {
      const ctx = ctxFor(encrypt);
      await expect(crypttabStep.check(ctx)).resolves.toEqual({ done: true, detail });
      expect(await crypttabStep.plan(ctx)).toEqual([]);
    }
    expect(await readText(crypttab)).toBe(OTHER);
    // Not even in the step list: plain and attended encrypted inits never see it.
    expect(initStepsFor({}).map((s) => s.id)).not.toContain('crypttab');
    expect(initStepsFor({ encrypt: unattended({ unattendedKeyFile: null, crypttab: undefined }) }).map((s) => s.id)).not.toContain('crypttab');
    const ids = initStepsFor({ encrypt: unattended() }).map((s) => s.id);
    expect(ids.slice(-3)).toEqual(['fs-mount', 'crypttab', 'fstab']);
  });

  it('refuses paths crypttab cannot hold (systemd does not unescape), before anything changes', async () => {
    const ctx = makeCtx(sb, { runner: new RecordingRunner(), opts: { encrypt: unattended(), boxMount: join(sb.root, 'my box') } });
    const err = await rejection(crypttabStep.check(ctx));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(/image path ".*my box\/filesystem.img" has white space/);
    expect(() => assertCrypttabWritable(ctx.opts)).toThrow(UsageError);
    expect(() => assertCrypttabWritable({ ...ctx.opts, encrypt: unattended({ crypttab: null }) })).not.toThrow();
  });

  it('the config records where the line is (for an uninstall), and only with --luks-unattended', () => {
    const ctx = ctxFor(unattended());
    ctx.state.image = { created: true, uuid: FIXED_UUID };
    ctx.state.hostKey = { type: FIXTURE_KEY.type, blob: FIXTURE_KEY.blob, fingerprint: FIXTURE_KEY.fingerprint };
    expect(configSchema.parse(buildConfig(ctx)).encryption).toMatchObject({ unattendedKeyFile: keyFile, crypttab });
    ctx.opts.encrypt = unattended({ crypttab: null });
    expect(configSchema.parse(buildConfig(ctx)).encryption?.crypttab).toBeNull();
    ctx.opts.encrypt = unattended({ unattendedKeyFile: null, crypttab: undefined });
    expect(Object.keys(configSchema.parse(buildConfig(ctx)).encryption ?? {})).not.toContain('crypttab');
  });
});
