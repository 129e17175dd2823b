import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DryRunRunner } from '../../../src/core/dry-run-runner.js';
import { EXIT, HbsError, UsageError } from '../../../src/core/errors.js';
import type { Action, Step } from '../../../src/core/plan.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import type { InitContext } from '../../../src/init/context.js';
import { initStepsFor, INIT_STEPS, runSteps } from '../../../src/init/run-init.js';
import type { EncryptOptions } from '../../../src/init/options.js';
import { passphraseKey } from '../../../src/lib/luks.js';
import { serializeConfig } from '../../../src/lib/config.js';
import { sshKeyStep } from '../../../src/steps/ssh-key.js';
import {
  blkid,
  boxMounted,
  findmnt,
  FIXTURE_KEY,
  FIXTURE_PUB,
  fstabBlock,
  GiB,
  HOST,
  keyscan,
  listTree,
  loopMounted,
  losetup,
  makeCtx,
  makeSandbox,
  mke2fsVersion,
  readText,
  recordedConfig,
  rejection,
  sftpProbe,
  sshfsOptions,
  SSHFS_SOURCE,
  statFs,
  statImage,
  writeCalls,
  type Sandbox,
} from './helpers.js';

const GOLDEN = resolve(import.meta.dirname, '../../golden/init-dry-run.txt');
const GOLDEN_ENCRYPT = resolve(import.meta.dirname, '../../golden/init-encrypt-dry-run.txt');
const KEYSCAN = `[${HOST}]:23 ${FIXTURE_KEY.type} ${FIXTURE_KEY.blob}\n`;

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

/** INIT_STEPS (or the given steps), unchanged, except that every planned file write is also kept for the test. */
function capturingSteps(writes: Extract<Action, { kind: 'write' }>[], steps: readonly Step<InitContext>[] = INIT_STEPS): Step<InitContext>[] {
  return steps.map((s) => ({
    id: s.id,
    title: s.title,
    check: (ctx) => s.check(ctx),
    plan: async (ctx) => {
      const actions = await s.plan(ctx);
      for (const a of actions) if (a.kind === 'write') writes.push(a);
      return actions;
    },
  }));
}

/**
 * Temp paths become `<tmp>`; the byte counts of written files are given as they would be with
 * `<tmp>` in their content, so the transcript does not depend on where the temp dir is.
 */
function stableTranscript(lines: readonly string[], writes: readonly Extract<Action, { kind: 'write' }>[]): string {
  const text = lines
    .map((line) => {
      const m = /write (\S+) \(mode (\d{4}), (\d+) bytes, atomic\)/.exec(line);
      if (!m) return line;
      const w = writes.find((x) => x.path === m[1]);
      if (!w) throw new Error(`no captured write for: ${line}`);
      expect(Number(m[3])).toBe(Buffer.byteLength(w.content));
      const stable = Buffer.byteLength(w.content.split(sb.root).join('<tmp>'));
      return line.replace(`${m[3]} bytes`, `${stable} bytes`);
    })
    .join('\n');
  return text.split(sb.root).join('<tmp>') + '\n';
}

async function compareGolden(actual: string, file = GOLDEN): Promise<void> {
  if (process.env.UPDATE_GOLDEN === '1') {
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, actual);
    return;
  }
  let golden: string;
  try {
    golden = await readFile(file, 'utf8');
  } catch {
    throw new Error(`${file} is missing; run with UPDATE_GOLDEN=1 to write it`);
  }
  expect(actual).toBe(golden);
}

describe('runSteps', () => {
  it('a first run in dry-run mode: probes only, prints every change, matches the golden transcript', async () => {
    const inner = new RecordingRunner([
      findmnt(sb.boxMount), // targets: box mount free
      findmnt(sb.mountPoint), // targets: mount point free
      keyscan(KEYSCAN), // host-key
      findmnt(sb.boxMount), // box-mount
      mke2fsVersion('1.47.0'), // mkfs: tuning
      findmnt(sb.mountPoint), // fs-mount
    ]);
    const ctx = makeCtx(sb, { runner: inner, opts: { hostKeyFingerprint: FIXTURE_KEY.fingerprint, dryRun: true } });
    ctx.runner = new DryRunRunner(inner, (l) => ctx.reporter.line(l));
    const before = await listTree(sb.root);
    const writes: Extract<Action, { kind: 'write' }>[] = [];

    const outcomes = await runSteps(ctx, capturingSteps(writes));

    inner.assertDone();
    expect(writeCalls(inner)).toEqual([]);
    expect(await listTree(sb.root)).toEqual(before);
    expect(before).toEqual([]);
    expect(sb.tempDirs).toEqual([]);
    expect(outcomes.map((o) => `${o.id}:${o.status}`)).toEqual([
      'targets:already',
      'host-key:planned',
      'ssh-key:planned',
      'key-upload:planned',
      'box-mount:planned',
      'box-guard:already',
      'box-space:already',
      'image:planned',
      'mkfs:planned',
      'config:planned',
      'fs-mount:planned',
      'fstab:planned',
    ]);
    expect([...ctx.state.simulated]).toEqual(outcomes.filter((o) => o.status === 'planned').map((o) => o.id));
    // the planned config and known_hosts are exactly what a real run would write
    expect(writes.map((w) => w.path)).toEqual([sb.knownHosts, sb.config]);
    expect(writes[0]?.content).toBe(KEYSCAN);
    expect(writes[1]?.content).toBe(serializeConfig(recordedConfig(sb, { mountOptions: ['noatime', 'noinit_itable'] })));

    const transcript = stableTranscript(ctx.reporter.lines, writes);
    // every change is a `!` line; nothing claims to be done
    expect(transcript).toContain("  ! sshfs -o 'reconnect,port=23,");
    expect(transcript).not.toMatch(/^ {2}\$ /m);
    await compareGolden(transcript);
  });

  it('a first run with --encrypt (passphrase + generated key file) in dry-run mode: no secret, matches its golden transcript', async () => {
    const PASS = 'golden secret passphrase';
    const inner = new RecordingRunner([
      findmnt(sb.boxMount), // targets: box mount free
      findmnt(sb.mountPoint), // targets: mount point free
      keyscan(KEYSCAN), // host-key
      findmnt(sb.boxMount), // box-mount
      findmnt(sb.mountPoint), // fs-mount (no mke2fs -V: inside LUKS the tuning is fixed)
    ]);
    const encrypt: EncryptOptions = {
      mapperName: 'hbs-filesystem',
      passphrase: true,
      keyFile: { path: '/dev/shm/hbs-filesystem.key', generated: true, keep: false },
      headerBackup: join(sb.configDir, 'hbs-filesystem.luks-header'),
      unattendedKeyFile: null,
    };
    const ctx = makeCtx(sb, { runner: inner, opts: { hostKeyFingerprint: FIXTURE_KEY.fingerprint, dryRun: true, encrypt } });
    ctx.runner = new DryRunRunner(inner, (l) => ctx.reporter.line(l));
    // A dry-run generates no key file; the passphrase (given on stdin) is held, never shown.
    ctx.luksKeys = [passphraseKey(PASS)];
    const writes: Extract<Action, { kind: 'write' }>[] = [];
    const cheap = process.env.HBS_TEST_CHEAP_PBKDF;
    delete process.env.HBS_TEST_CHEAP_PBKDF; // the golden shows cryptsetup's own PBKDF defaults
    try {
      await runSteps(ctx, capturingSteps(writes, initStepsFor(ctx.opts)));
    } finally {
      if (cheap !== undefined) process.env.HBS_TEST_CHEAP_PBKDF = cheap;
    }

    inner.assertDone();
    expect(writeCalls(inner)).toEqual([]);
    expect(await listTree(sb.root)).toEqual([]);
    const transcript = stableTranscript(ctx.reporter.lines, writes);
    expect(transcript).not.toContain(PASS);
    expect(transcript).toContain('  ! cryptsetup luksFormat --batch-mode --type luks2 --key-file - <tmp>/box/filesystem.img <<(stdin)');
    expect(transcript).toContain('/dev/mapper/hbs-filesystem');
    await compareGolden(transcript, GOLDEN_ENCRYPT);
  });

  it('a re-run where everything is in place: every step is already done and nothing runs', async () => {
    await mkdir(sb.configDir, { recursive: true });
    await writeFile(sb.config, serializeConfig(recordedConfig(sb)), { mode: 0o600 });
    await writeFile(sb.knownHosts, KEYSCAN, { mode: 0o600 });
    await mkdir(sb.sshDir);
    await writeFile(sb.sshKey, 'PRIVATE', { mode: 0o600 });
    await writeFile(`${sb.sshKey}.pub`, FIXTURE_PUB);
    await writeFile(sb.fstab, `UUID=1 / ext4 defaults 0 1\n${fstabBlock(sb)}`);
    await mkdir(sb.boxMount);
    await mkdir(sb.mountPoint);
    const snapshot = async (): Promise<Record<string, string>> => {
      const out: Record<string, string> = {};
      for (const p of await listTree(sb.root)) out[p] = p.endsWith('/') ? '' : await readText(join(sb.root, p));
      return out;
    };
    const before = await snapshot();

    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted), // targets
      findmnt(sb.mountPoint, loopMounted()),
      losetup('/dev/loop3', sb.image),
      keyscan(KEYSCAN), // host-key
      sftpProbe(sb, 0), // key-upload
      findmnt(sb.boxMount, boxMounted), // box-mount
      findmnt(sb.boxMount, boxMounted), // box-guard
      statFs(sb.boxMount, '4096 26214400 13107200\n'), // box-space: 50 GiB free, the recorded 100 GiB image counts as placed
      statImage(sb.image, { size: 100 * GiB, blocks: 4096 }), // image
      blkid(sb.image, { UUID: recordedConfig(sb).image.uuid, TYPE: 'ext4' }),
      findmnt(sb.mountPoint, loopMounted()), // fs-mount
      losetup('/dev/loop3', sb.image),
    ]);
    const ctx = makeCtx(sb, { runner });

    const outcomes = await runSteps(ctx);

    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
    expect(outcomes.every((o) => o.status === 'already')).toBe(true);
    expect(outcomes.map((o) => o.id)).toEqual(INIT_STEPS.map((s) => s.id));
    expect(ctx.reporter.lines.map((l) => l.split(sb.root).join('<tmp>'))).toEqual([
      '• Mount points are free — <tmp>/box, <tmp>/mnt',
      `• Pin the box host key — ${FIXTURE_KEY.fingerprint} already pinned in <tmp>/etc/hbs/known_hosts`,
      '• SSH key for the box — using <tmp>/ssh/hbs_ed25519',
      `• Key login to the box — u123456@${HOST} accepts <tmp>/ssh/hbs_ed25519`,
      `• Mount the box with sshfs — ${SSHFS_SOURCE} is mounted at <tmp>/box`,
      `• Check the box mount before writing — <tmp>/box is the sshfs mount of ${SSHFS_SOURCE}`,
      '• Space on the box — 50 GiB free of 100 GiB',
      `• Sparse image file on the box — <tmp>/box/filesystem.img is the image recorded in <tmp>/etc/hbs/config.json (100 GiB, UUID ${recordedConfig(sb).image.uuid})`,
      `• ext4 filesystem in the image — already ext4, UUID ${recordedConfig(sb).image.uuid}`,
      '• Write the config — <tmp>/etc/hbs/config.json is up to date',
      '• Mount the filesystem — <tmp>/box/filesystem.img is mounted at <tmp>/mnt (/dev/loop3)',
      '• fstab entries — <tmp>/fstab already has the hbs block',
    ]);
    expect(await snapshot()).toEqual(before);
    expect(sb.tempDirs).toEqual([]);
  });

  it('a dry-run after a reboot (config recorded, box not mounted) shows the mounts only, never a create or mkfs', async () => {
    await mkdir(sb.configDir, { recursive: true });
    // a real run's config holds a random UUID, not the one deps.uuid() would hand out now
    const cfg = recordedConfig(sb, { image: { uuid: '11111111-2222-4333-8444-555555555555' } });
    await writeFile(sb.config, serializeConfig(cfg), { mode: 0o600 });
    await writeFile(sb.knownHosts, KEYSCAN, { mode: 0o600 });
    await mkdir(sb.sshDir);
    await writeFile(sb.sshKey, 'PRIVATE', { mode: 0o600 });
    await writeFile(`${sb.sshKey}.pub`, FIXTURE_PUB);
    await writeFile(sb.fstab, fstabBlock(sb));
    const inner = new RecordingRunner([
      findmnt(sb.boxMount),
      findmnt(sb.mountPoint),
      keyscan(KEYSCAN),
      sftpProbe(sb, 0),
      findmnt(sb.boxMount),
      findmnt(sb.mountPoint),
    ]);
    const ctx = makeCtx(sb, { runner: inner, opts: { dryRun: true } });
    ctx.runner = new DryRunRunner(inner, (l) => ctx.reporter.line(l));
    const outcomes = await runSteps(ctx);
    inner.assertDone();
    expect(writeCalls(inner)).toEqual([]);
    expect(outcomes.filter((o) => o.status === 'planned').map((o) => o.id)).toEqual(['box-mount', 'fs-mount']);
    const changes = ctx.reporter.lines.filter((l) => l.startsWith('  ! ')).map((l) => l.split(sb.root).join('<tmp>'));
    expect(changes).toEqual([
      '  ! mkdir -p -m 0755 <tmp>/box',
      `  ! sshfs -o '${sshfsOptions(sb).split(sb.root).join('<tmp>')}' ${SSHFS_SOURCE} <tmp>/box`,
      '  ! mkdir -p -m 0755 <tmp>/mnt',
      "  ! write the lock <tmp>/box/filesystem.img.hbs-lock (this machine's hostname, machine-id, pid, time)",
      '  ! mount -t ext4 -o loop,noatime <tmp>/box/filesystem.img <tmp>/mnt',
      '  ! losetup --direct-io=on <the loop device under <tmp>/mnt> (if the kernel refuses, it stays buffered)',
    ]);
    expect(ctx.state.image.uuid).toBe(cfg.image.uuid);
  });

  it('a failing command becomes an error naming the step, with stderr as details and the re-run hint', async () => {
    const argv = ['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'hbs@testhost', '-f', sb.sshKey];
    const runner = new RecordingRunner([{ argv, exitCode: 1, stderr: 'Saving key failed: Permission denied\n' }]);
    const ctx = makeCtx(sb, { runner });
    const err = await rejection(runSteps(ctx, [sshKeyStep]));
    expect(err).toBeInstanceOf(HbsError);
    expect((err as HbsError).exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(`SSH key for the box: command failed (exit 1): ssh-keygen -q -t ed25519 -N '' -C hbs@testhost -f ${sb.sshKey}`);
    expect((err as HbsError).details).toBe('Saving key failed: Permission denied');
    expect((err as HbsError).hint).toContain('re-run `hbs init`');
    expect(ctx.reporter.lines).toEqual(['✖ SSH key for the box']);
  });

  it('usage errors from a step come through unchanged, and later steps do not run', async () => {
    const runner = new RecordingRunner([keyscan(KEYSCAN)]);
    const ctx = makeCtx(sb, { runner });
    const later: Step<InitContext> = {
      id: 'later',
      title: 'Later',
      check: () => Promise.reject(new Error('must not run')),
      plan: () => Promise.resolve([]),
    };
    const host = INIT_STEPS.find((s) => s.id === 'host-key')!;
    const err = await rejection(runSteps(ctx, [host, later]));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe(`--host-key-fingerprint is missing: the box offers ${FIXTURE_KEY.fingerprint} (ssh-ed25519)`);
    expect(ctx.reporter.lines).toEqual(['✖ Pin the box host key']);
  });
});
