import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { blockingLock, describeLock, lockPathOf, lockText, readLock, type Lock, type LockState } from '../../../src/lib/lock.js';
import { HOSTNAME, MACHINE_ID, otherLock } from '../../support/sandbox.js';

let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hbs-lock-'));
  path = join(dir, 'filesystem.img.hbs-lock');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ours = (over: Partial<Lock> = {}): Lock => ({ hostname: HOSTNAME, machineId: MACHINE_ID, pid: 111, time: '2024-12-31T23:00:00.000Z', config: '/etc/hbs/config.json', ...over });
/** A lock as hbs versions before the config field wrote it. */
function withoutConfig(lock: Lock): Lock {
  const copy: Lock = { ...lock };
  delete copy.config;
  return copy;
}

describe('lockPathOf / lockText', () => {
  it('the lock is next to the image on the box, as pretty JSON with a final newline', () => {
    expect(lockPathOf('/srv/box/filesystem.img')).toBe('/srv/box/filesystem.img.hbs-lock');
    expect(lockText(otherLock)).toBe(`${JSON.stringify(otherLock, null, 2)}\n`);
  });
});

describe('readLock', () => {
  it('is free when there is no lock file', async () => {
    expect(await readLock(path, MACHINE_ID)).toEqual({ state: 'free' });
  });

  it('is ours when the machine-id matches, whatever the hostname', async () => {
    const lock = ours({ hostname: 'renamed-host' });
    await writeFile(path, lockText(lock));
    expect(await readLock(path, MACHINE_ID)).toEqual({ state: 'ours', lock });
  });

  it("is another machine's when the machine-id differs, even with our hostname", async () => {
    const lock = { ...otherLock, hostname: HOSTNAME };
    await writeFile(path, lockText(lock));
    expect(await readLock(path, MACHINE_ID)).toEqual({ state: 'other', lock });
  });

  it('accepts a lock without a config (older hbs)', async () => {
    const bare = withoutConfig(otherLock);
    await writeFile(path, JSON.stringify(bare));
    expect(await readLock(path, MACHINE_ID)).toEqual({ state: 'other', lock: bare });
  });

  it('is unreadable when the file is not JSON, or not an hbs lock', async () => {
    await writeFile(path, '{"hostname": "half-writ');
    expect(await readLock(path, MACHINE_ID)).toEqual({ state: 'unreadable', detail: `${path} is not JSON` });
    await writeFile(path, JSON.stringify({ ...otherLock, pid: 'many' }));
    expect(await readLock(path, MACHINE_ID)).toEqual({ state: 'unreadable', detail: `${path} is not an hbs lock` });
  });

  it('is unreadable (not free) when the file cannot be read at all', async () => {
    await mkdir(path); // EISDIR
    const state = await readLock(path, MACHINE_ID);
    expect(state.state).toBe('unreadable');
    expect(state.state === 'unreadable' && state.detail).toMatch(/EISDIR/);
  });
});

describe('blockingLock', () => {
  const config = '/etc/hbs/config.json';

  it('lets a free or unreadable lock through (unreadable is refused by the caller)', () => {
    expect(blockingLock({ state: 'free' }, config)).toBeUndefined();
    expect(blockingLock({ state: 'unreadable', detail: 'x' }, config)).toBeUndefined();
  });

  it('lets our own lock through when it was taken with the same config, or without one', () => {
    expect(blockingLock({ state: 'ours', lock: ours() }, config)).toBeUndefined();
    expect(blockingLock({ state: 'ours', lock: withoutConfig(ours()) }, '/any/other.json')).toBeUndefined();
  });

  it('blocks on our own lock taken through another config', () => {
    const state: LockState = { state: 'ours', lock: ours() };
    expect(blockingLock(state, '/etc/hbs/second.json')).toBe(state.lock);
  });

  it("blocks on another machine's lock, whatever its config", () => {
    expect(blockingLock({ state: 'other', lock: otherLock }, otherLock.config!)).toBe(otherLock);
  });
});

describe('describeLock', () => {
  it('names host, a machine-id prefix, pid, config and time', () => {
    expect(describeLock(otherLock)).toBe('other-host (machine-id a1b2c3d4e5f6…, pid 4242, config /etc/hbs/config.json) since 2025-01-01T00:00:00.000Z');
    expect(describeLock(withoutConfig(otherLock))).toBe('other-host (machine-id a1b2c3d4e5f6…, pid 4242) since 2025-01-01T00:00:00.000Z');
  });
});
