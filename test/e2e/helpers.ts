import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
export { teardown } from '../support/teardown.js';
import { execa } from 'execa';
import type { StandInBox } from '../support/stand-in-box.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const HBS = join(ROOT, 'bin', 'hbs');

/** Runs the built CLI as a person would (no TTY). */
export interface Run {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function hbs(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<Run> {
  const r = await execa(HBS, args, {
    input: opts.input ?? '',
    reject: false,
    env: { NO_COLOR: '1', ...opts.env },
    extendEnv: true,
    timeout: 180_000,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Watches every process's argv while `work` runs; returns the argvs that contained `needle`. */
export async function watchArgv<T>(needle: string, work: () => Promise<T>): Promise<{ result: T; leaks: string[] }> {
  const leaks = new Set<string>();
  let running = true;
  const sampler = (async () => {
    while (running) {
      for (const pid of await readdir('/proc').catch(() => [] as string[])) {
        if (!/^\d+$/.test(pid)) continue;
        const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (cmd.includes(needle)) leaks.add(cmd.split('\0').join(' '));
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  try {
    const result = await work();
    return { result, leaks: [...leaks] };
  } finally {
    running = false;
    await sampler;
  }
}

/** The readahead (KiB, as text) of the device of the mount at `mountPoint` (the box mount's bdi). */
export async function readAheadAt(mountPoint: string): Promise<string> {
  const devno = (await execa('findmnt', ['-n', '-o', 'MAJ:MIN', '--mountpoint', mountPoint])).stdout.trim();
  return (await readFile(`/sys/class/bdi/${devno}/read_ahead_kb`, 'utf8')).trim();
}

/** The direct-I/O flag ('0' or '1') of the loop device mounted at a mount point. */
export async function loopDioAt(mountPoint: string): Promise<string> {
  const source = (await execa('findmnt', ['-n', '-o', 'SOURCE', '--mountpoint', mountPoint])).stdout.trim();
  return (await execa('losetup', ['--list', '--noheadings', '--output', 'DIO', source])).stdout.trim();
}

/**
 * A disk of the box's own, so it can fill up: an ext4 image file of `size` (truncate's syntax) in `dir`,
 * loop-mounted at `dir`/box-disk (world-searchable, as the box's home must be). Returns the mount point;
 * the caller unmounts it (`umount` detaches the loop device).
 */
export async function smallBoxDisk(dir: string, size: string): Promise<string> {
  const backing = join(dir, 'box-disk.img');
  const mnt = join(dir, 'box-disk');
  await execa('truncate', [`--size=${size}`, backing]);
  await execa('mkfs.ext4', ['-q', '-m', '0', backing]);
  await mkdir(mnt);
  await execa('mount', ['-o', 'loop', backing, mnt]);
  await execa('chmod', ['0755', mnt]);
  return mnt;
}

/**
 * `hbs init --yes --force` of a 2 GiB image on `box` (password on stdin, no fstab, no boot unit): the
 * stack the full-box and backup tests fill up. `--force`: the image is larger than the box's disk.
 */
export function initThinOn(box: StandInBox, p: { config: string; key: string; boxMount: string; mountPoint: string }): Promise<Run> {
  return hbs(
    ['init', '--yes', '--force', '--user', box.user, '--host', box.host, '--port', String(box.port), '--size', '2G', '--box-mount', p.boxMount, '--mount-point', p.mountPoint,
      '--ssh-key', p.key, '--host-key-fingerprint', box.hostKeyFingerprint, '--no-fstab', '--no-systemd', '--config', p.config, '--password-stdin'],
    { input: box.password + '\n' },
  );
}
