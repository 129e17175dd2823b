import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, open, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { holdersOf, listHolders, sshfsPidsFor } from '../../../src/lib/holders.js';

let root: string;
let mountPoint: string;
let boxMount: string;
const children: ChildProcess[] = [];
beforeEach(async () => {
  // realpath: /proc/PID/cwd shows resolved paths.
  root = await realpath(await mkdtemp(join(tmpdir(), 'hbs-holders-')));
  mountPoint = join(root, 'mnt');
  boxMount = join(root, 'box');
  await mkdir(mountPoint);
  await mkdir(boxMount);
});
afterEach(async () => {
  for (const c of children.splice(0)) await stopProcess(c);
  await rm(root, { recursive: true, force: true });
});

/** Starts a process in a group of its own (so stopProcess can end it and its children), resolved once it runs. */
async function startProcess(file: string, args: string[], opts: { cwd?: string; argv0?: string } = {}): Promise<ChildProcess> {
  const child = spawn(file, args, { ...opts, stdio: 'ignore', detached: true });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', reject);
  });
  children.push(child);
  return child;
}

/** Ends a process this test started, by its process group id. */
async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    return;
  }
  await gone;
}

describe('holdersOf', () => {
  it('finds a process whose working directory is inside the mount', async () => {
    await mkdir(join(mountPoint, 'sub'));
    const child = await startProcess('sleep', ['600'], { cwd: join(mountPoint, 'sub') });
    expect(await holdersOf(mountPoint)).toEqual([{ pid: child.pid, command: 'sleep 600', via: 'cwd' }]);
  });

  it('finds a process with a file inside the mount open', async () => {
    const fh = await open(join(mountPoint, 'held.log'), 'w');
    try {
      const child = spawn('sleep', ['601'], { stdio: ['ignore', fh.fd, 'ignore'], detached: true });
      await new Promise<void>((resolve, reject) => child.once('spawn', resolve).once('error', reject));
      children.push(child);
      expect(await holdersOf(mountPoint, process.pid)).toEqual([{ pid: child.pid, command: 'sleep 601', via: 'open file' }]);
    } finally {
      await fh.close();
    }
  });

  it('leaves out the pid it is told is itself', async () => {
    const child = await startProcess('sleep', ['602'], { cwd: mountPoint });
    expect(await holdersOf(mountPoint, child.pid)).toEqual([]);
  });

  it('does not count a sibling directory that merely shares the prefix', async () => {
    const sibling = `${mountPoint}2`;
    await mkdir(sibling);
    const child = await startProcess('sleep', ['603'], { cwd: sibling });
    expect(await holdersOf(mountPoint)).toEqual([]);
    expect((await holdersOf(sibling)).map((h) => h.pid)).toEqual([child.pid]);
  });
});

describe('sshfsPidsFor', () => {
  it('finds the sshfs process serving the mount, by argv[0] and the mount point in its arguments', async () => {
    const ours = await startProcess(process.execPath, ['-e', 'setInterval(() => {}, 1e6)', boxMount], { argv0: 'sshfs' });
    const otherMount = await startProcess(process.execPath, ['-e', 'setInterval(() => {}, 1e6)', `${boxMount}-other`], { argv0: '/usr/bin/sshfs' });
    await startProcess(process.execPath, ['-e', 'setInterval(() => {}, 1e6)', boxMount], { argv0: 'sshfs-helper' });
    expect(await sshfsPidsFor(boxMount)).toEqual([ours.pid]);
    expect(await sshfsPidsFor(`${boxMount}-other`)).toEqual([otherMount.pid]);
  });

  it('is empty when no sshfs serves it', async () => {
    expect(await sshfsPidsFor(boxMount)).toEqual([]);
  });
});

describe('listHolders', () => {
  it('one line per process, or what it means when there is none', () => {
    expect(listHolders([{ pid: 1, command: 'rsync -a', via: 'cwd' }, { pid: 2, command: 'tail -f x', via: 'open file' }])).toBe('  pid 1 (cwd): rsync -a\n  pid 2 (open file): tail -f x');
    expect(listHolders([])).toBe('  (none found in /proc: a kernel user such as a bind mount or NFS export)');
  });
});
