import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { holdersOf, sshfsPidsFor } from '../../../src/lifecycle/holders.js';
import { makeSandbox, startProcess, stopProcess, type Sandbox } from './helpers.js';

let sb: Sandbox;
const children: ChildProcess[] = [];
beforeEach(async () => {
  sb = await makeSandbox();
  await mkdir(sb.mountPoint);
  await mkdir(sb.boxMount);
});
afterEach(async () => {
  for (const c of children.splice(0)) await stopProcess(c);
  await sb.cleanup();
});

describe('holdersOf', () => {
  it('finds a process whose working directory is inside the mount', async () => {
    await mkdir(join(sb.mountPoint, 'sub'));
    const child = await startProcess('sleep', ['600'], { cwd: join(sb.mountPoint, 'sub') });
    children.push(child);
    expect(await holdersOf(sb.mountPoint)).toEqual([{ pid: child.pid, command: 'sleep 600', via: 'cwd' }]);
  });

  it('finds a process with a file inside the mount open', async () => {
    const fh = await open(join(sb.mountPoint, 'held.log'), 'w');
    try {
      const child = spawn('sleep', ['601'], { stdio: ['ignore', fh.fd, 'ignore'], detached: true });
      await new Promise<void>((resolve, reject) => child.once('spawn', resolve).once('error', reject));
      children.push(child);
      expect(await holdersOf(sb.mountPoint, process.pid)).toEqual([{ pid: child.pid, command: 'sleep 601', via: 'open file' }]);
    } finally {
      await fh.close();
    }
  });

  it('leaves out the pid it is told is itself', async () => {
    const child = await startProcess('sleep', ['602'], { cwd: sb.mountPoint });
    children.push(child);
    expect(await holdersOf(sb.mountPoint, child.pid)).toEqual([]);
  });

  it('does not count a sibling directory that merely shares the prefix', async () => {
    const sibling = `${sb.mountPoint}2`;
    await mkdir(sibling);
    const child = await startProcess('sleep', ['603'], { cwd: sibling });
    children.push(child);
    expect(await holdersOf(sb.mountPoint)).toEqual([]);
    expect((await holdersOf(sibling)).map((h) => h.pid)).toEqual([child.pid]);
  });
});

describe('sshfsPidsFor', () => {
  it('finds the sshfs process serving the mount, by argv[0] and the mount point in its arguments', async () => {
    const ours = await startProcess(process.execPath, ['-e', 'setInterval(() => {}, 1e6)', sb.boxMount], { argv0: 'sshfs' });
    const otherMount = await startProcess(process.execPath, ['-e', 'setInterval(() => {}, 1e6)', `${sb.boxMount}-other`], { argv0: '/usr/bin/sshfs' });
    const notSshfs = await startProcess(process.execPath, ['-e', 'setInterval(() => {}, 1e6)', sb.boxMount], { argv0: 'sshfs-helper' });
    children.push(ours, otherMount, notSshfs);
    expect(await sshfsPidsFor(sb.boxMount)).toEqual([ours.pid]);
    expect(await sshfsPidsFor(`${sb.boxMount}-other`)).toEqual([otherMount.pid]);
  });

  it('is empty when no sshfs serves it', async () => {
    expect(await sshfsPidsFor(sb.boxMount)).toEqual([]);
  });
});
