// Clean-up for the benchmarks, as the tests do it: every resource registers how to undo itself
// right after it is made; undo runs last-in first-out, once, on success, on failure and on
// Ctrl+C / SIGTERM / SIGHUP.
import { execa } from 'execa';
import { rm } from 'node:fs/promises';

const tasks = [];
let running;
let aborting = false;

/** True once a signal arrived: the benchmark must start nothing new while clean-up runs. */
export const isAborting = () => aborting;

/** Registers an undo step; returns a function that drops it (when the resource is gone early). */
export function onCleanup(label, fn) {
  const task = { label, fn };
  tasks.push(task);
  return () => {
    const i = tasks.indexOf(task);
    if (i >= 0) tasks.splice(i, 1);
  };
}

export function cleanupAll() {
  running ??= (async () => {
    while (tasks.length) {
      const t = tasks.pop();
      try {
        await t.fn();
      } catch (err) {
        process.stderr.write(`bench: clean-up "${t.label}" failed: ${err?.message ?? err}\n`);
      }
    }
  })();
  return running;
}

export function installSignalHandlers() {
  let seen = false;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      // A second Ctrl+C must not cut the clean-up short: mounts would stay behind.
      if (seen) return;
      seen = true;
      aborting = true;
      process.stderr.write(`\nbench: ${sig}: cleaning up (mounts, loop devices, sshd, account, relay, temp files)…\n`);
      cleanupAll().finally(() => process.exit(130));
    });
  }
}

/** Mount points at or below `dir` (findmnt), deepest first. */
export async function mountsUnder(dir) {
  const r = await execa('findmnt', ['--list', '--noheadings', '--output', 'TARGET'], { reject: false });
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((t) => t === dir || t.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
}

/**
 * Removes a temp directory, but never through a mount: if something is still mounted below it, a
 * recursive delete would reach into the box. Then it is left in place and named.
 */
export async function removeTempDir(dir) {
  const left = await mountsUnder(dir);
  if (left.length) {
    process.stderr.write(`bench: not removing ${dir}: still mounted there: ${left.join(', ')}\n`);
    return;
  }
  await rm(dir, { recursive: true, force: true });
}
