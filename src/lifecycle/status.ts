import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imagePath } from '../lib/config.js';
import { blockText } from '../lib/fstab.js';
import { remoteAllocatedBytes } from '../lib/remote-du.js';
import { keyLoginWorks } from '../lib/ssh.js';
import { statFile } from '../steps/image.js';
import { verifyTab } from '../steps/fstab.js';
import { connOf, type LifecycleContext } from './context.js';
import { readLock } from './lock.js';
import { inspectCrypt } from './crypt.js';
import { luksInfo, mapperPath } from '../lib/luks.js';
import { fileExists } from '../lib/fs-util.js';
import { inspectStack } from './stack.js';
import { directIoOf, loopOf } from '../lib/loop.js';

/** `hbs status --json`: stable keys, documented in the README. */
export interface StatusReport {
  config: string;
  healthy: boolean;
  box: { state: string; detail: string; reachable: boolean; mountPoint: string; source: string; totalBytes: number | null; usedBytes: number | null; freeBytes: number | null };
  image: { path: string; exists: boolean; sizeBytes: number | null; allocatedBytes: number | null; loopDevices: string[] };
  filesystem: {
    state: string;
    detail: string;
    mountPoint: string;
    device: string | null;
    uuid: string;
    sizeBytes: number | null;
    usedBytes: number | null;
    freeBytes: number | null;
    /** The loop device under it does direct I/O (see lib/loop.ts); null when not mounted or unknown. */
    loopDirectIo: boolean | null;
  };
  fstab: { state: 'ok' | 'missing' | 'invalid' | 'disabled'; path: string | null; detail: string };
  lock: { state: 'free' | 'ours' | 'other' | 'unreadable' | 'unknown'; hostname: string | null; machineId: string | null; pid: number | null; time: string | null };
  /** null for a plain image. keySlots/cipher are null when the header cannot be read (box down). */
  encryption: {
    state: 'open' | 'closed' | 'conflict';
    detail: string;
    device: string;
    cipher: string | null;
    keySlots: string[] | null;
    headerBackup: { path: string; present: boolean };
    unattendedKeyFile: string | null;
    /** With --luks-unattended: the crypttab that should hold the hbs line opening the mapping at boot; else null. */
    crypttab: { path: string; present: boolean } | null;
  } | null;
}

async function encryptionState(ctx: LifecycleContext, imageThere: boolean): Promise<StatusReport['encryption']> {
  const enc = ctx.cfg.encryption;
  if (!enc) return null;
  const crypt = await inspectCrypt(ctx.runner, ctx.cfg);
  const info = imageThere ? await luksInfo(ctx.runner, imagePath(ctx.cfg)).catch(() => undefined) : undefined;
  return {
    state: crypt?.state ?? 'closed',
    detail: crypt?.detail ?? '',
    device: mapperPath(enc.mapperName),
    cipher: info?.cipher ?? crypt?.mapping?.cipher ?? null,
    keySlots: info?.keySlots ?? null,
    headerBackup: { path: enc.headerBackup, present: await fileExists(enc.headerBackup) },
    unattendedKeyFile: enc.unattendedKeyFile,
    crypttab: enc.crypttab ? { path: enc.crypttab, present: await hasBlockIn(enc.crypttab, ctx.configPath) } : null,
  };
}

/** Whether the file holds the hbs block for this config (a file that cannot be read: no). */
async function hasBlockIn(path: string, id: string): Promise<boolean> {
  try {
    return blockText(await readFile(path, 'utf8'), id) !== undefined;
  } catch {
    return false;
  }
}

async function fsSpace(ctx: LifecycleContext, mp: string): Promise<{ size: number; used: number; free: number } | undefined> {
  const r = await ctx.runner.run({ argv: ['df', '--block-size=1', '--output=size,used,avail', mp], write: false, allowFail: true, timeoutMs: 30_000 });
  const nums = r.stdout.trim().split('\n')[1]?.trim().split(/\s+/).map(Number);
  if (r.exitCode !== 0 || !nums || nums.length < 3 || nums.some((n) => !Number.isFinite(n))) return undefined;
  return { size: nums[0]!, used: nums[1]!, free: nums[2]! };
}

async function fstabState(ctx: LifecycleContext, mkTemp: () => Promise<string>): Promise<StatusReport['fstab']> {
  const path = ctx.cfg.fstab;
  if (path === null) return { state: 'disabled', path, detail: 'no fstab entries (--no-fstab)' };
  let text = '';
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return { state: 'missing', path, detail: `${path} cannot be read` };
  }
  const block = blockText(text, ctx.configPath);
  if (!block) return { state: 'missing', path, detail: `${path} has no hbs block for ${ctx.configPath}` };
  const dir = await mkTemp();
  try {
    const file = join(dir, 'block');
    await writeFile(file, block);
    const v = await verifyTab(ctx.runner, file);
    if (v.parse + v.errors > 0) return { state: 'invalid', path, detail: `findmnt --verify: ${v.parse} parse errors, ${v.errors} errors` };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return { state: 'ok', path, detail: `${path} has the hbs block (findmnt --verify: ok)` };
}

export async function collectStatus(ctx: LifecycleContext, mkTemp: () => Promise<string>): Promise<StatusReport> {
  const { cfg, runner } = ctx;
  const stack = await inspectStack(runner, cfg);
  const conn = connOf(cfg);
  const reachable = stack.box.state === 'up' ? true : (await keyLoginWorks(runner, conn)).ok;
  const image = stack.box.state === 'up' ? await statFile(runner, imagePath(cfg)) : undefined;
  const allocated = image ? await remoteAllocatedBytes(runner, conn, cfg.image.name) : undefined;
  const space = stack.fs.state === 'up' ? await fsSpace(ctx, cfg.filesystem.mountPoint) : undefined;
  const loop = stack.fs.state === 'up' && stack.fs.device ? await loopOf(runner, stack.fs.device, cfg.encryption?.mapperName) : undefined;
  const directIo = loop ? await directIoOf(runner, loop) : undefined;
  const lock = stack.box.state === 'up' ? await readLock(cfg, await ctx.deps.machineId()) : undefined;
  const total = stack.box.totalBytes ?? null;
  const free = stack.box.freeBytes ?? null;
  const report: StatusReport = {
    config: ctx.configPath,
    healthy: false,
    box: {
      state: stack.box.state,
      detail: stack.box.detail,
      reachable,
      mountPoint: cfg.boxMount,
      source: `${conn.user}@${conn.host}:${conn.remotePath}`,
      totalBytes: total,
      usedBytes: total !== null && free !== null ? total - free : null,
      freeBytes: free,
    },
    image: {
      path: imagePath(cfg),
      exists: image !== undefined,
      sizeBytes: image?.sizeBytes ?? null,
      allocatedBytes: allocated ?? null,
      loopDevices: stack.loops,
    },
    filesystem: {
      state: stack.fs.state,
      detail: stack.fs.detail,
      mountPoint: cfg.filesystem.mountPoint,
      device: stack.fs.device ?? null,
      uuid: cfg.image.uuid,
      sizeBytes: space?.size ?? null,
      usedBytes: space?.used ?? null,
      freeBytes: space?.free ?? null,
      loopDirectIo: directIo ?? null,
    },
    fstab: await fstabState(ctx, mkTemp),
    lock: lock
      ? lock.state === 'free' || lock.state === 'unreadable'
        ? { state: lock.state, hostname: null, machineId: null, pid: null, time: null }
        : { state: lock.state, hostname: lock.lock.hostname, machineId: lock.lock.machineId, pid: lock.lock.pid, time: lock.lock.time }
      : { state: 'unknown', hostname: null, machineId: null, pid: null, time: null },
    encryption: await encryptionState(ctx, image !== undefined),
  };
  report.healthy =
    report.box.state === 'up' &&
    report.image.exists &&
    report.filesystem.state === 'up' &&
    (report.fstab.state === 'ok' || report.fstab.state === 'disabled') &&
    report.lock.state === 'ours' &&
    (report.encryption === null ||
      (report.encryption.state === 'open' && report.encryption.headerBackup.present && (report.encryption.crypttab?.present ?? true)));
  return report;
}
