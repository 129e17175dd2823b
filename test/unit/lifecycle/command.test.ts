import { directIoOn } from '../canned.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, HbsError, UsageError } from '../../../src/core/errors.js';
import type { Expectation } from '../../../src/core/recording-runner.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { serializeConfig } from '../../../src/lib/config.js';
import type { Prompter } from '../../../src/init/prompter.js';
import { mountCommand, umountCommand, type LifecycleIo } from '../../../src/commands/lifecycle.js';
import { LockHeldError } from '../../../src/lifecycle/errors.js';
import { MemoryReporter } from '../../../src/ui/reporter.js';
import {
  backing,
  blkid,
  boxMounted,
  dd,
  EXT4_SIG,
  findmnt,
  freshLock,
  IMAGE_FACTS,
  lockText,
  LOOP,
  loopList,
  loopMounted,
  makeConfig,
  makeDeps,
  makeSandbox,
  mountImage,
  otherLock,
  readJson,
  rejection,
  statFs,
  statImage,
  writeCalls,
  type Sandbox,
} from './helpers.js';

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
  await mkdir(sb.configDir, { recursive: true });
  await writeFile(sb.config, serializeConfig(makeConfig(sb)), { mode: 0o600 });
  await mkdir(sb.boxMount);
  await writeFile(sb.lock, lockText(otherLock));
});
afterEach(async () => {
  await sb.cleanup();
});

const HOLDER = 'other-host (machine-id a1b2c3d4e5f6…, pid 4242, config /etc/hbs/config.json) since 2025-01-01T00:00:00.000Z';

/** One mount attempt that stops at the other machine's lock. */
const blockedAttempt = (): Expectation[] => [
  findmnt(sb.boxMount, boxMounted),
  statFs(sb.boxMount),
  loopList(),
  findmnt(sb.mountPoint),
  statImage(sb.image, IMAGE_FACTS),
  blkid(sb.image, EXT4_SIG),
];

/** The attempt after the lock is stolen: the same probes, then the mount and its check. */
const stealingAttempt = (): Expectation[] => [
  ...blockedAttempt(),
  loopList(),
  mountImage(sb),
  findmnt(sb.boxMount, boxMounted),
  statFs(sb.boxMount),
  findmnt(sb.mountPoint, loopMounted()),
  backing(LOOP, sb.image),
  dd(LOOP),
  ...directIoOn(LOOP),
];

interface FakePrompter extends Prompter {
  asked: { message: string; default?: boolean }[];
}

function prompterAnswering(answer: boolean): FakePrompter {
  const asked: FakePrompter['asked'] = [];
  return {
    asked,
    input: () => Promise.reject(new Error('no input question expected')),
    password: () => Promise.reject(new Error('no password question expected')),
    confirm: (q) => {
      asked.push(q);
      return Promise.resolve(answer);
    },
  };
}

function io(runner: RecordingRunner, prompter?: FakePrompter): LifecycleIo & { reporter: MemoryReporter } {
  return { reporter: new MemoryReporter(), runner, deps: makeDeps(), prompter: prompter ? () => Promise.resolve(prompter) : undefined };
}

describe('mountCommand and --steal-lock', () => {
  it('without --steal-lock: the LockHeldError itself, and no question', async () => {
    const runner = new RecordingRunner(blockedAttempt());
    const prompter = prompterAnswering(true);
    const err = await rejection(mountCommand({ config: sb.config }, io(runner, prompter)));
    expect(err).toBeInstanceOf(LockHeldError);
    expect((err as LockHeldError).holder).toBe(HOLDER);
    expect(prompter.asked).toEqual([]);
    runner.assertDone();
    expect(await readJson(sb.lock)).toEqual(otherLock);
  });

  it('--steal-lock without --yes and without a terminal: UsageError (exit 2), lock untouched', async () => {
    const runner = new RecordingRunner(blockedAttempt());
    const err = await rejection(mountCommand({ config: sb.config, stealLock: true }, io(runner)));
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(EXIT.usage);
    expect(err.message).toBe('--steal-lock needs a confirmation: answer the question in a terminal, or add --yes');
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
    expect(await readJson(sb.lock)).toEqual(otherLock);
  });

  it('--steal-lock, answered no: exit 130, nothing changed', async () => {
    const runner = new RecordingRunner(blockedAttempt());
    const prompter = prompterAnswering(false);
    const err = await rejection(mountCommand({ config: sb.config, stealLock: true }, io(runner, prompter)));
    expect(err).toBeInstanceOf(HbsError);
    expect((err as HbsError).exitCode).toBe(EXIT.aborted);
    expect(err.message).toBe('lock not taken over; nothing was changed');
    expect(prompter.asked).toEqual([
      { message: `${HOLDER} holds the lock. Mount here anyway? Only if that machine no longer has it mounted.`, default: false },
    ]);
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
    expect(await readJson(sb.lock)).toEqual(otherLock);
  });

  it('--steal-lock, answered yes: a second attempt takes the lock over and mounts', async () => {
    const runner = new RecordingRunner([...blockedAttempt(), ...stealingAttempt()]);
    const prompter = prompterAnswering(true);
    const out = io(runner, prompter);
    await mountCommand({ config: sb.config, stealLock: true }, out);
    runner.assertDone();
    expect(prompter.asked).toHaveLength(1);
    expect(writeCalls(runner).map((c) => c.argv)).toEqual([mountImage(sb).argv, ['losetup', '--direct-io=on', LOOP]]);
    expect(await readJson(sb.lock)).toEqual(freshLock(sb));
    expect(out.reporter.lines).toContain(`! taking over the lock held by ${HOLDER}`);
  });

  it('--steal-lock --yes: no question asked', async () => {
    const runner = new RecordingRunner([...blockedAttempt(), ...stealingAttempt()]);
    const prompter = prompterAnswering(false);
    await mountCommand({ config: sb.config, stealLock: true, yes: true }, io(runner, prompter));
    runner.assertDone();
    expect(prompter.asked).toEqual([]);
    expect(await readJson(sb.lock)).toEqual(freshLock(sb));
  });

  it('--steal-lock with --dry-run and --yes: prints the take-over, writes no lock', async () => {
    const runner = new RecordingRunner([...blockedAttempt(), ...blockedAttempt(), loopList()]);
    const out = io(runner);
    await mountCommand({ config: sb.config, stealLock: true, yes: true, dryRun: true }, out);
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
    expect(out.reporter.lines).toContain(`  ! write the lock ${sb.lock}`);
    expect(out.reporter.lines).toContain(`  ! mount -t ext4 -o loop,noatime,nodev ${sb.image} ${sb.mountPoint}`);
    expect(await readJson(sb.lock)).toEqual(otherLock);
  });

  it('turns an unexpected error into an HbsError naming the command', async () => {
    const runner = new RecordingRunner([]); // any command is unexpected
    const err = await rejection(mountCommand({ config: sb.config }, io(runner)));
    expect(err).toBeInstanceOf(HbsError);
    expect(err.message).toMatch(/^mount: unexpected command: findmnt --json --mountpoint /);
    expect((err as HbsError).hint).toMatch(/hbs status/);
  });

  it('without a config: UsageError pointing at hbs init', async () => {
    const err = await rejection(mountCommand({ config: `${sb.root}/nope.json` }, io(new RecordingRunner())));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe(`no config at ${sb.root}/nope.json`);
    const err2 = await rejection(umountCommand({ config: `${sb.root}/nope.json` }, io(new RecordingRunner())));
    expect(err2).toBeInstanceOf(UsageError);
  });
});
