// Small helpers shared by the benchmark sections: commands with a time bound, timing, sizes.
import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { isAborting, onCleanup } from './cleanup.mjs';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** Progress goes to stderr; stdout carries only the final Markdown. */
export const log = (s) => process.stderr.write(`${s}\n`);

/**
 * A command as argv, never a shell string; bounded in time (10 min unless told). After Ctrl+C it
 * refuses to start anything, so the interrupted flow cannot mount again behind the clean-up's back.
 */
export function run(cmd, args, opts = {}) {
  if (isAborting()) return Promise.reject(new Error(`interrupted: not running ${cmd}`));
  return execa(cmd, args, { timeout: 10 * 60_000, ...opts });
}

/** Runs `fn` and returns [result, seconds]. */
export async function timed(fn) {
  const t = performance.now();
  const r = await fn();
  return [r, (performance.now() - t) / 1000];
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Bytes a file occupies on the disk under it (st_blocks × 512): what the box's quota counts. */
export async function allocated(path) {
  const st = await stat(path);
  return st.blocks * 512;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function fmtBytes(n) {
  if (n === undefined || n === null) return 'n/a';
  if (Math.abs(n) >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (Math.abs(n) >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (Math.abs(n) >= 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${n} B`;
}

export const fmtS = (s) => (s >= 100 ? `${s.toFixed(0)} s` : s >= 10 ? `${s.toFixed(1)} s` : `${s.toFixed(2)} s`);
export const fmtX = (x) => (x >= 100 ? `${x.toFixed(0)}×` : x >= 10 ? `${x.toFixed(1)}×` : `${x.toFixed(2)}×`);

/** `sync -f` on each path (syncfs): for ext4 on loop on sshfs this pushes the data to the box. */
export async function syncfs(...paths) {
  for (const p of paths) await run('sync', ['-f', p]);
}

/**
 * Starts the relay (bench/relay.mjs) as its own process group, so a Ctrl+C reaches the benchmark
 * (which unmounts first) and not the link under the mounts. It dies with our stdin in any case.
 */
export async function startRelayProcess({ targetPort, delayMs, rateMbit, lifetimeS }) {
  const child = spawn(
    process.execPath,
    [join(import.meta.dirname, '..', 'relay.mjs'), '--target-port', String(targetPort), '--delay-ms', String(delayMs), '--rate-mbit', String(rateMbit), '--lifetime-s', String(lifetimeS), '--max-conns', '16'],
    { detached: true, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  lines.on('line', (l) => waiting.shift()?.(JSON.parse(l)));
  const next = () => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('relay did not answer')), 10_000);
    waiting.push((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
  const exited = new Promise((r) => child.once('exit', r));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.stdin.end();
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  };
  onCleanup('relay', stop);
  const { port } = await next();
  return {
    port,
    stop,
    async stats() {
      child.stdin.write('stats\n');
      return next();
    },
  };
}
