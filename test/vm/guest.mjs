// Helpers for the scenarios that run INSIDE the test VM (*-guest.mjs): the built CLI, a way to run
// it and other programs with their exit code, output and duration, and the `name=value` lines the
// host-side test (*.vmtest.ts, through scenario.ts) reads back.
import { execFileSync, spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = resolve(fileURLToPath(import.meta.url), '../../..');
export const HBS = join(repo, 'bin/hbs');
/** hbs's environment in the guest: no colours. */
export const env = { ...process.env, NO_COLOR: '1' };
/**
 * Cheap key slots, through init's own flags (cryptsetup's --pbkdf / --iter-time): under emulation
 * argon2id's default takes 9–14 s per slot. Never for real data.
 */
export const CHEAP_KDF = ['--luks-pbkdf', 'pbkdf2', '--luks-iter-time', '100'];

/** Loads a module of the built project (dist/…), e.g. lib/fstab.js. */
export const dist = (path) => import(join(repo, 'dist', path));
/** Loads a module of the built test support (build/test-support/…, `npm run build:test-support`), e.g. the stand-in box. */
export const testSupport = (path) => import(join(repo, 'build/test-support', path));

/** One `name=value` line for the host; values that are not strings go as JSON. */
export const out = (k, v) => console.log(`${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
/** Runs a program; its stdout, or an exception on a non-zero exit. */
export const sh = (file, args, opts = {}) => execFileSync(file, args, { encoding: 'utf8', ...opts });

/** Runs a program; exit code, output and how long it took, never an exception. */
export function run(file, args, opts = {}) {
  const t = Date.now();
  const r = spawnSync(file, args, { encoding: 'utf8', timeout: 300_000, ...opts });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', ms: Date.now() - t };
}

/** Runs the built hbs with `input` on stdin. */
export const hbs = (args, input = '', extraEnv = {}, timeout = 300_000) => run(HBS, args, { input, env: { ...env, ...extraEnv }, timeout });

/** Reports `name.exit` and `name.ms`; a non-zero exit prints the output and stops the scenario. */
export function must(name, r) {
  out(`${name}.exit`, r.code);
  out(`${name}.ms`, r.ms);
  if (r.code !== 0) {
    console.log(r.stdout);
    console.error(r.stderr);
    throw new Error(`${name} failed (exit ${r.code})`);
  }
  return r;
}

/** The VM has no NIC and its loopback starts down: the stand-in box's sshd on 127.0.0.1 needs it up. */
export const loopbackUp = () => spawnSync('ip', ['link', 'set', 'lo', 'up']);
