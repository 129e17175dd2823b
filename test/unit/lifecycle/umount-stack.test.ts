import type { ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DryRunRunner } from '../../../src/core/dry-run-runner.js';
import { EXIT, HbsError } from '../../../src/core/errors.js';
import { RecordingRunner } from '../../../src/core/recording-runner.js';
import { umountStack } from '../../../src/lifecycle/umount-stack.js';
import {
  argvs,
  backing,
  boxMounted,
  dd,
  exists,
  findmnt,
  lockText,
  LOOP,
  loopList,
  loopMounted,
  makeCtx,
  makeSandbox,
  otherLock,
  ourLock,
  readJson,
  rejection,
  startProcess,
  statFs,
  statFsDead,
  stopProcess,
  SSHFS_SOURCE,
  write,
  writeCalls,
  type Sandbox,
} from './helpers.js';

let sb: Sandbox;
const children: ChildProcess[] = [];
beforeEach(async () => {
  sb = await makeSandbox();
  await mkdir(sb.boxMount);
  await mkdir(sb.mountPoint);
});
afterEach(async () => {
  for (const c of children.splice(0)) await stopProcess(c);
  await sb.cleanup();
});

/** inspectBox + inspectFs with everything up. */
const allUp = (): ReturnType<typeof findmnt>[] => [
  findmnt(sb.boxMount, boxMounted),
  statFs(sb.boxMount),
  findmnt(sb.mountPoint, loopMounted()),
  backing(LOOP, sb.image),
  dd(LOOP),
];
const sync = (): ReturnType<typeof write> => write(['sync', '--file-system', sb.mountPoint]);
const busyStderr = (): string => `umount: ${sb.mountPoint}: target is busy.\n`;

describe('umountStack', () => {
  it('all up: sync, umount, release our lock, fusermount3 -u, in this order', async () => {
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const runner = new RecordingRunner([
      ...allUp(),
      sync(),
      write(['umount', sb.mountPoint]),
      loopList(),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      write(['fusermount3', '-u', sb.boxMount]),
    ]);
    const ctx = makeCtx(sb, runner);
    expect(await umountStack(ctx)).toEqual({ fs: 'unmounted', box: 'unmounted' });
    runner.assertDone();
    expect(argvs(writeCalls(runner))).toEqual([
      ['sync', '--file-system', sb.mountPoint],
      ['umount', sb.mountPoint],
      ['fusermount3', '-u', sb.boxMount],
    ]);
    expect(await exists(sb.lock)).toBe(false);
    expect(ctx.reporter.lines).toEqual([`✔ Filesystem — ${sb.mountPoint} unmounted`, `✔ Box — ${sb.boxMount} unmounted`]);
  });

  it('detaches a loop device of the image left over after the unmount', async () => {
    const runner = new RecordingRunner([
      ...allUp(),
      sync(),
      write(['umount', sb.mountPoint]),
      loopList(['/dev/loop9', sb.image], ['/dev/loop1', '/srv/other.img']),
      write(['losetup', '--detach', '/dev/loop9']),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      write(['fusermount3', '-u', sb.boxMount]),
    ]);
    expect(await umountStack(makeCtx(sb, runner))).toEqual({ fs: 'unmounted', box: 'unmounted' });
    runner.assertDone();
  });

  it('leaves another machine\'s lock where it is', async () => {
    await writeFile(sb.lock, lockText(otherLock));
    const runner = new RecordingRunner([
      ...allUp(),
      sync(),
      write(['umount', sb.mountPoint]),
      loopList(),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      write(['fusermount3', '-u', sb.boxMount]),
    ]);
    await umountStack(makeCtx(sb, runner));
    runner.assertDone();
    expect(await readJson(sb.lock)).toEqual(otherLock);
  });

  it('busy without --force: HbsError listing the processes that hold it, and nothing more is run', async () => {
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const holder = await startProcess('sleep', ['600'], { cwd: sb.mountPoint });
    children.push(holder);
    const runner = new RecordingRunner([...allUp(), sync(), write(['umount', sb.mountPoint], { exitCode: 32, stderr: busyStderr() })]);
    const ctx = makeCtx(sb, runner);
    const err = await rejection(umountStack(ctx));
    expect(err).toBeInstanceOf(HbsError);
    expect((err as HbsError).exitCode).toBe(EXIT.failed);
    expect(err.message).toBe(`${sb.mountPoint} is busy; these processes hold it:\n  pid ${holder.pid} (cwd): sleep 600`);
    expect((err as HbsError).hint).toMatch(/--force/);
    runner.assertDone();
    expect(runner.calls).toHaveLength(allUp().length + 2);
    expect(await readJson(sb.lock)).toEqual(ourLock(sb)); // still mounted: the lock stays
  });

  it('busy with no holder in /proc (a kernel user): says so', async () => {
    const runner = new RecordingRunner([...allUp(), sync(), write(['umount', sb.mountPoint], { exitCode: 32, stderr: busyStderr() })]);
    const err = await rejection(umountStack(makeCtx(sb, runner)));
    expect(err.message).toBe(`${sb.mountPoint} is busy; these processes hold it:\n  (none found in /proc: a kernel user such as a bind mount or NFS export)`);
    runner.assertDone();
  });

  it('busy with --force: umount --lazy, and the box (and our lock) kept', async () => {
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const holder = await startProcess('sleep', ['600'], { cwd: sb.mountPoint });
    children.push(holder);
    const runner = new RecordingRunner([
      ...allUp(),
      sync(),
      write(['umount', sb.mountPoint], { exitCode: 32, stderr: busyStderr() }),
      write(['umount', '--lazy', sb.mountPoint]),
    ]);
    const ctx = makeCtx(sb, runner, { force: true });
    expect(await umountStack(ctx)).toEqual({ fs: 'lazy', box: 'kept' });
    runner.assertDone();
    expect(runner.calls.some((c) => c.argv[0] === 'fusermount3')).toBe(false);
    expect(await readJson(sb.lock)).toEqual(ourLock(sb));
    expect(ctx.reporter.lines[0]).toMatch(new RegExp(`^! ${sb.mountPoint} is busy \\(${holder.pid}\\): detaching it lazily`));
    expect(ctx.reporter.lines.slice(1)).toEqual([
      `✔ Filesystem — ${sb.mountPoint} detached lazily`,
      `! keeping the box mounted at ${sb.boxMount}: the lazily detached filesystem still uses it`,
    ]);
  });

  it('a failing umount that is not "busy": HbsError with its message', async () => {
    const runner = new RecordingRunner([
      ...allUp(),
      sync(),
      write(['umount', sb.mountPoint], { exitCode: 32, stderr: `umount: ${sb.mountPoint}: must be superuser to unmount.\n` }),
    ]);
    const err = await rejection(umountStack(makeCtx(sb, runner, { force: true })));
    expect(err.message).toBe(`unmounting ${sb.mountPoint} failed: umount: ${sb.mountPoint}: must be superuser to unmount.`);
    runner.assertDone(); // --force does not turn this into a lazy unmount
  });

  it('already down: no command that changes anything', async () => {
    const runner = new RecordingRunner([findmnt(sb.boxMount), findmnt(sb.mountPoint)]);
    const ctx = makeCtx(sb, runner);
    expect(await umountStack(ctx)).toEqual({ fs: 'already', box: 'already' });
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
    expect(ctx.reporter.lines).toEqual([`• Filesystem — not mounted at ${sb.mountPoint}`, `• Box — not mounted at ${sb.boxMount}`]);
  });

  it('only the box up: unmounts the box, releasing our lock', async () => {
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      findmnt(sb.mountPoint),
      loopList(),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      write(['fusermount3', '-u', sb.boxMount]),
    ]);
    const ctx = makeCtx(sb, runner);
    expect(await umountStack(ctx)).toEqual({ fs: 'already', box: 'unmounted' });
    runner.assertDone();
    expect(await exists(sb.lock)).toBe(false);
  });

  it('a broken stack: unmounts the filesystem, and the dead box lazily; the lock on it is not touched', async () => {
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFsDead(sb.boxMount),
      findmnt(sb.mountPoint, loopMounted()),
      backing(LOOP, sb.image),
      sync(),
      write(['umount', sb.mountPoint]),
      loopList([LOOP, sb.image]),
      write(['losetup', '--detach', LOOP]),
      findmnt(sb.boxMount, boxMounted),
      statFsDead(sb.boxMount),
      write(['fusermount3', '-u', sb.boxMount], { exitCode: 1, stderr: 'fusermount3: failed to unmount: Device or resource busy' }),
      write(['umount', '--lazy', sb.boxMount]),
    ]);
    expect(await umountStack(makeCtx(sb, runner))).toEqual({ fs: 'unmounted', box: 'unmounted' });
    runner.assertDone();
    expect(await readJson(sb.lock)).toEqual(ourLock(sb));
  });

  it('a live box that fusermount3 cannot unmount: HbsError with its message', async () => {
    const runner = new RecordingRunner([
      ...allUp(),
      sync(),
      write(['umount', sb.mountPoint]),
      loopList(),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      write(['fusermount3', '-u', sb.boxMount], { exitCode: 1, stderr: `fusermount3: failed to unmount ${sb.boxMount}: Device or resource busy\n` }),
    ]);
    const err = await rejection(umountStack(makeCtx(sb, runner)));
    expect(err).toBeInstanceOf(HbsError);
    expect(err.message).toBe(`${sb.boxMount} is busy: fusermount3: failed to unmount ${sb.boxMount}: Device or resource busy\n`);
    runner.assertDone();
  });

  it('leaves a foreign filesystem at the mount point alone, still unmounting the box', async () => {
    const runner = new RecordingRunner([
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      findmnt(sb.mountPoint, { source: '/dev/sdb1', fstype: 'xfs' }),
      loopList(),
      findmnt(sb.boxMount, boxMounted),
      statFs(sb.boxMount),
      write(['fusermount3', '-u', sb.boxMount]),
    ]);
    const ctx = makeCtx(sb, runner);
    expect(await umountStack(ctx)).toEqual({ fs: 'already', box: 'unmounted' });
    runner.assertDone();
    expect(ctx.reporter.lines[0]).toBe(`! leaving ${sb.mountPoint} alone: ${sb.mountPoint} holds /dev/sdb1 (xfs), not ${sb.image}`);
  });

  it('leaves a foreign box mount alone', async () => {
    const other = { source: 'server:/export', fstype: 'nfs4' };
    const runner = new RecordingRunner([findmnt(sb.boxMount, other), findmnt(sb.mountPoint), loopList(), findmnt(sb.boxMount, other)]);
    const ctx = makeCtx(sb, runner);
    expect(await umountStack(ctx)).toEqual({ fs: 'already', box: 'kept' });
    runner.assertDone();
    expect(writeCalls(runner)).toEqual([]);
    expect(ctx.reporter.lines.at(-1)).toBe(`! leaving ${sb.boxMount} alone: ${sb.boxMount} holds server:/export (nfs4), not ${SSHFS_SOURCE}`);
  });

  it('dry-run: prints every change, runs only probes, keeps the lock', async () => {
    await writeFile(sb.lock, lockText(ourLock(sb)));
    const inner = new RecordingRunner([...allUp(), loopList([LOOP, sb.image]), findmnt(sb.boxMount, boxMounted), statFs(sb.boxMount)]);
    const ctx = makeCtx(sb, inner);
    ctx.runner = new DryRunRunner(inner, (l) => ctx.reporter.line(l));
    expect(await umountStack(ctx)).toEqual({ fs: 'unmounted', box: 'unmounted' });
    inner.assertDone();
    expect(writeCalls(inner)).toEqual([]);
    expect(ctx.reporter.lines).toEqual([
      `  ! sync --file-system ${sb.mountPoint}`,
      `  ! umount ${sb.mountPoint}`,
      `✔ Filesystem — ${sb.mountPoint} unmounted`,
      `  ! losetup --detach ${LOOP}`,
      `  ! remove the lock ${sb.lock}`,
      `  ! fusermount3 -u ${sb.boxMount}`,
      `✔ Box — ${sb.boxMount} unmounted`,
    ]);
    expect(await readJson(sb.lock)).toEqual(ourLock(sb));
  });
});
