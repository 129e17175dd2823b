import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  blockingLock,
  describeLock,
  lockPath,
  newLock,
  readLock,
  releaseLock,
  writeLock,
  type Lock,
  type LockState,
} from '../../../src/lifecycle/lock.js';
import {
  exists,
  FIXED_NOW,
  freshLock,
  HOSTNAME,
  IMAGE,
  lockText,
  MACHINE_ID,
  makeConfig,
  makeDeps,
  makeSandbox,
  otherLock,
  ourLock,
  PID,
  readJson,
  rejection,
  type Sandbox,
} from './helpers.js';

let sb: Sandbox;
beforeEach(async () => {
  sb = await makeSandbox();
  await mkdir(sb.boxMount);
});
afterEach(async () => {
  await sb.cleanup();
});

/** A lock as hbs versions before the config field wrote it. */
function withoutConfig(lock: Lock): Lock {
  const copy: Lock = { ...lock };
  delete copy.config;
  return copy;
}

const where = (): { boxMount: string; image: { name: string } } => ({ boxMount: sb.boxMount, image: { name: IMAGE } });

describe('lockPath', () => {
  it('is next to the image on the box', () => {
    expect(lockPath(where())).toBe(`${sb.boxMount}/${IMAGE}.hbs-lock`);
    expect(lockPath(makeConfig(sb))).toBe(sb.lock);
  });
});

describe('readLock', () => {
  it('is free when there is no lock file', async () => {
    expect(await readLock(where(), MACHINE_ID)).toEqual({ state: 'free' });
  });

  it('is ours when the machine-id matches, whatever the hostname', async () => {
    const lock = ourLock(sb, { hostname: 'renamed-host' });
    await writeFile(sb.lock, lockText(lock));
    expect(await readLock(where(), MACHINE_ID)).toEqual({ state: 'ours', lock });
  });

  it('is another machine\'s when the machine-id differs, even with our hostname', async () => {
    const lock = { ...otherLock, hostname: HOSTNAME };
    await writeFile(sb.lock, lockText(lock));
    expect(await readLock(where(), MACHINE_ID)).toEqual({ state: 'other', lock });
  });

  it('accepts a lock without a config (older hbs)', async () => {
    const bare = withoutConfig(otherLock);
    await writeFile(sb.lock, JSON.stringify(bare));
    expect(await readLock(where(), MACHINE_ID)).toEqual({ state: 'other', lock: bare });
  });

  it('is unreadable when the file is not JSON', async () => {
    await writeFile(sb.lock, '{"hostname": "half-writ');
    expect(await readLock(where(), MACHINE_ID)).toEqual({ state: 'unreadable', detail: `${sb.lock} is not JSON` });
  });

  it('is unreadable when the JSON is not an hbs lock', async () => {
    await writeFile(sb.lock, JSON.stringify({ ...otherLock, pid: 'many' }));
    expect(await readLock(where(), MACHINE_ID)).toEqual({ state: 'unreadable', detail: `${sb.lock} is not an hbs lock` });
  });

  it('is unreadable (not free) when the file cannot be read at all', async () => {
    await mkdir(sb.lock); // EISDIR
    const state = await readLock(where(), MACHINE_ID);
    expect(state.state).toBe('unreadable');
    expect(state.state === 'unreadable' && state.detail).toMatch(/EISDIR/);
  });
});

describe('blockingLock', () => {
  const config = '/etc/hbs/config.json';
  const ours: Lock = { ...otherLock, machineId: MACHINE_ID, config };

  it('lets a free or unreadable lock through (unreadable is refused by the caller)', () => {
    expect(blockingLock({ state: 'free' }, config)).toBeUndefined();
    expect(blockingLock({ state: 'unreadable', detail: 'x' }, config)).toBeUndefined();
  });

  it('lets our own lock through when it was taken with the same config, or without one', () => {
    expect(blockingLock({ state: 'ours', lock: ours }, config)).toBeUndefined();
    expect(blockingLock({ state: 'ours', lock: withoutConfig(ours) }, '/any/other.json')).toBeUndefined();
  });

  it('blocks on our own lock taken through another config', () => {
    const state: LockState = { state: 'ours', lock: ours };
    expect(blockingLock(state, '/etc/hbs/second.json')).toBe(ours);
  });

  it('blocks on another machine\'s lock, whatever its config', () => {
    expect(blockingLock({ state: 'other', lock: otherLock }, otherLock.config!)).toBe(otherLock);
  });
});

describe('describeLock', () => {
  it('names host, a machine-id prefix, pid, config and time', () => {
    expect(describeLock(otherLock)).toBe('other-host (machine-id a1b2c3d4e5f6…, pid 4242, config /etc/hbs/config.json) since 2025-01-01T00:00:00.000Z');
    expect(describeLock(withoutConfig(otherLock))).toBe('other-host (machine-id a1b2c3d4e5f6…, pid 4242) since 2025-01-01T00:00:00.000Z');
  });
});

describe('newLock', () => {
  it('takes hostname, machine-id, pid and time from the deps', async () => {
    expect(await newLock(makeDeps(), sb.config)).toEqual({ hostname: HOSTNAME, machineId: MACHINE_ID, pid: PID, time: FIXED_NOW.toISOString(), config: sb.config });
  });
});

describe('writeLock', () => {
  it('creates the lock (0600, pretty JSON) when there is none', async () => {
    await writeLock(where(), freshLock(sb), false);
    expect(await readFile(sb.lock, 'utf8')).toBe(lockText(freshLock(sb)));
    expect((await stat(sb.lock)).mode & 0o777).toBe(0o600);
  });

  it('refuses with EEXIST when a lock appeared since it was read, leaving that one alone', async () => {
    await writeFile(sb.lock, lockText(otherLock));
    const err = await rejection(writeLock(where(), freshLock(sb), false));
    expect((err as NodeJS.ErrnoException).code).toBe('EEXIST');
    expect(await readJson(sb.lock)).toEqual(otherLock);
  });

  it('replaces an existing lock, leaving no temporary file behind', async () => {
    await writeFile(sb.lock, lockText(ourLock(sb)));
    await writeLock(where(), freshLock(sb), true);
    expect(await readJson(sb.lock)).toEqual(freshLock(sb));
    expect((await readdir(sb.boxMount)).sort()).toEqual([`${IMAGE}.hbs-lock`]);
    expect((await stat(sb.lock)).mode & 0o777).toBe(0o600);
  });

  it('replace also works when there was no lock after all', async () => {
    await writeLock(where(), freshLock(sb), true);
    expect(await readJson(sb.lock)).toEqual(freshLock(sb));
  });

  it('fails (no half-written lock) when the box directory is not there', async () => {
    const err = await rejection(writeLock({ boxMount: `${sb.root}/missing`, image: { name: IMAGE } }, freshLock(sb), false));
    expect((err as NodeJS.ErrnoException).code).toBe('ENOENT');
  });
});

describe('releaseLock', () => {
  it('removes the lock, and is fine when there is none', async () => {
    await writeFile(sb.lock, lockText(ourLock(sb)));
    await releaseLock(where());
    expect(await exists(sb.lock)).toBe(false);
    await expect(releaseLock(where())).resolves.toBeUndefined();
  });
});
