/**
 * The summary's plan is the dry-run's plan: the same steps through a dry-run runner, captured and
 * replayed. And the box's free space as sftp `df` reports it.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DryRunRunner } from '../../src/core/dry-run-runner.js';
import type { Step } from '../../src/core/plan.js';
import { RecordingRunner } from '../../src/core/recording-runner.js';
import { newState, type InitContext } from '../../src/init/context.js';
import { previewSteps } from '../../src/init/preview.js';
import { runSteps } from '../../src/init/run-init.js';
import { parseSftpDf } from '../../src/lib/remote-df.js';
import { MemoryReporter } from '../../src/ui/reporter.js';
import { makeDeps, makeOpts, makeSandbox, rejection, type Sandbox } from './steps/helpers.js';

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

/** Two steps: one already done (read-only probe), one that would write a file and run a command. */
const STEPS: Step<InitContext>[] = [
  {
    id: 'probe',
    title: 'Already there',
    async check(ctx) {
      const r = await ctx.runner.run({ argv: ['probe'], write: false });
      return { done: true, detail: r.stdout.trim() };
    },
    plan: () => Promise.resolve([]),
  },
  {
    id: 'change',
    title: 'Make a change',
    check: () => Promise.resolve({ done: false }),
    plan: (ctx) =>
      Promise.resolve([
        { kind: 'mkdir', path: `${ctx.opts.boxMount}/d`, mode: 0o755 },
        { kind: 'run', cmd: { argv: ['touch', `id-${ctx.deps.uuid()}`] } },
      ]),
  },
];

describe('previewSteps', () => {
  it('replays exactly what a dry-run prints, runs only read-only probes and changes nothing', async () => {
    const opts = makeOpts(sb);
    const deps = makeDeps(sb);

    const dryReporter = new MemoryReporter();
    const dry = new RecordingRunner([{ argv: ['probe'], write: false, stdout: 'yes\n' }]);
    await runSteps({ opts, deps, runner: new DryRunRunner(dry, (l) => dryReporter.line(l)), reporter: dryReporter, state: newState() }, STEPS);

    const real = new RecordingRunner([{ argv: ['probe'], write: false, stdout: 'yes\n' }]);
    const plan = await previewSteps({ opts, deps }, real, STEPS);
    const shown = new MemoryReporter();
    plan.replay(shown);

    expect(shown.lines).toEqual(dryReporter.lines);
    expect(shown.lines).toEqual([
      '• Already there — yes',
      `  ! mkdir -p -m 0755 ${sb.boxMount}/d`,
      '  ! touch id-3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b',
      '✔ Make a change — would change (not done: dry-run)',
    ]);
    // Only the probe reached the real runner; nothing was created.
    expect(real.calls.map((c) => c.argv)).toEqual([['probe']]);
    real.assertDone();
  });

  it('passes on what a step throws (nothing is shown, nothing changed)', async () => {
    const failing: Step<InitContext> = { id: 'x', title: 'Fails', check: () => Promise.reject(new Error('boom')), plan: () => Promise.resolve([]) };
    const err = await rejection(previewSteps({ opts: makeOpts(sb), deps: makeDeps(sb) }, new RecordingRunner(), [failing]));
    expect(err.message).toBe('Fails: boom');
  });
});

describe('parseSftpDf', () => {
  it('reads Size and Avail (KiB) under the header, with or without the echoed command', () => {
    const out = 'sftp> -df\n        Size         Used        Avail       (root)    %Capacity\n   264212084     22845468     83545444    241366616           8%';
    expect(parseSftpDf(out)).toEqual({ totalBytes: 264212084 * 1024, freeBytes: 83545444 * 1024 });
    expect(parseSftpDf(out.split('\n').slice(1).join('\n'))).toEqual({ totalBytes: 264212084 * 1024, freeBytes: 83545444 * 1024 });
  });

  it('is undefined when the server printed no figures', () => {
    expect(parseSftpDf('sftp> -df\n')).toBeUndefined();
    expect(parseSftpDf('')).toBeUndefined();
    expect(parseSftpDf('        Size         Used        Avail       (root)    %Capacity\n')).toBeUndefined();
    expect(parseSftpDf('        Size         Used        Avail       (root)    %Capacity\n  x y z\n')).toBeUndefined();
  });
});
