import { blockLines } from '../core/block.js';
import { fileExists, readTextIfExists } from '../core/files.js';
import { probeStep, type Step } from '../core/step.js';
import { inspectStack, loopUnder, type StackLayers } from '../lib/inspect.js';
import { readLock } from '../lib/lock.js';
import type { StatusReport } from '../lib/status-report.js';
import type { StepCtx } from './context.js';
import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { TEMPLATE, unitName, wantsLink } from '../lib/systemd.js';

/**
 * `hbs status` as steps that only look, one per part of the report, run by the same executor as
 * every other command; `hbs status` then judges the whole.
 */
export interface StatusCtx extends StepCtx {
  layers?: StackLayers;
  report: Partial<StatusReport>;
}

async function boxReadAhead(ctx: StatusCtx): Promise<number | null> {
  const devno = (await ctx.probe.mountAt(ctx.stack.boxMount))?.devno;
  return devno ? ((await ctx.probe.readAhead(devno))?.kb ?? null) : null;
}

const layersStep = probeStep<StatusCtx>('layers', 'Box, image and filesystem', async (ctx) => {
  const s = ctx.stack;
  const layers = await inspectStack(ctx.probe, s);
  ctx.layers = layers;
  const up = layers.box.state === 'up';
  const reachable = up ? true : (await ctx.probe.keyLogin(s.conn)).ok;
  const total = layers.box.totalBytes ?? null;
  const free = layers.box.freeBytes ?? null;
  ctx.report.box = {
    state: layers.box.state,
    detail: layers.box.detail,
    reachable,
    mountPoint: s.boxMount,
    source: `${s.conn.user}@${s.conn.host}:${s.conn.remotePath}`,
    totalBytes: total,
    usedBytes: total !== null && free !== null ? total - free : null,
    freeBytes: free,
    readAheadKb: await boxReadAhead(ctx),
  };
  const file = up ? await ctx.probe.file(s.image.path) : undefined;
  const allocated = file ? await ctx.probe.remoteAllocated(s.conn, s.image.name) : undefined;
  ctx.report.image = { path: s.image.path, exists: file !== undefined, sizeBytes: file?.sizeBytes ?? null, allocatedBytes: allocated ?? null, loopDevices: layers.loops };
  const fsUp = layers.fs.state === 'up' && layers.fs.device !== undefined;
  const usage = fsUp ? await ctx.probe.usage(s.fs.mountPoint) : undefined;
  const loop = fsUp ? await loopUnder(ctx.probe, s, layers.fs.device!) : undefined;
  const dio = loop ? (await ctx.probe.loops()).find((d) => d.name === loop)?.directIo : undefined;
  ctx.report.filesystem = {
    state: layers.fs.state,
    detail: layers.fs.detail,
    mountPoint: s.fs.mountPoint,
    device: layers.fs.device ?? null,
    uuid: s.fs.uuid ?? '',
    sizeBytes: usage?.size ?? null,
    usedBytes: usage?.used ?? null,
    freeBytes: usage?.free ?? null,
    loopDirectIo: dio ?? null,
    readOnly: layers.fs.readOnly ?? null,
    errors: null,
  };
  return { done: true, detail: `box ${layers.box.state}, filesystem ${layers.fs.state}` };
});

const fstabStep = probeStep<StatusCtx>('fstab', 'fstab block', async (ctx) => {
  const s = ctx.stack;
  const path = s.fstab;
  if (path === null) {
    ctx.report.fstab = { state: 'disabled', path, detail: 'no fstab entries (--no-fstab)' };
    return { done: true, detail: 'disabled' };
  }
  const text = await readTextIfExists(path).catch(() => undefined);
  const lines = text === undefined ? undefined : blockLines(text, s.configPath);
  if (text === undefined) ctx.report.fstab = { state: 'missing', path, detail: `${path} cannot be read` };
  else if (!lines) ctx.report.fstab = { state: 'missing', path, detail: `${path} has no hbs block for ${s.configPath}` };
  else {
    const v = await ctx.probe.verifyTab(lines.join('\n') + '\n');
    ctx.report.fstab =
      v.parse + v.errors > 0
        ? { state: 'invalid', path, detail: `findmnt --verify: ${v.parse} parse errors, ${v.errors} errors` }
        : { state: 'ok', path, detail: `${path} has the hbs block (findmnt --verify: ok)` };
  }
  return { done: true, detail: ctx.report.fstab.state };
});

const lockStep = probeStep<StatusCtx>('lock', 'Lock', async (ctx) => {
  const none = { hostname: null, machineId: null, pid: null, time: null };
  if (ctx.layers?.box.state !== 'up') {
    ctx.report.lock = { state: 'unknown', ...none };
  } else {
    const l = await readLock(ctx.stack.lockPath, await ctx.deps.machineId());
    ctx.report.lock =
      l.state === 'free' || l.state === 'unreadable' ? { state: l.state, ...none } : { state: l.state, hostname: l.lock.hostname, machineId: l.lock.machineId, pid: l.lock.pid, time: l.lock.time };
  }
  return { done: true, detail: ctx.report.lock.state };
});

const encryptionStep = probeStep<StatusCtx>('encryption', 'Encryption', async (ctx) => {
  const s = ctx.stack;
  const c = s.crypt;
  if (!c) {
    ctx.report.encryption = null;
    return { done: true, detail: 'not encrypted' };
  }
  const crypt = ctx.layers?.crypt;
  const info = ctx.report.image?.exists ? await ctx.probe.luksInfo(s.image.path).catch(() => undefined) : undefined;
  const crypttab = c.crypttab ? await readTextIfExists(c.crypttab).catch(() => undefined) : undefined;
  ctx.report.encryption = {
    state: crypt?.state ?? 'closed',
    detail: crypt?.detail ?? '',
    device: c.device,
    cipher: info?.cipher ?? crypt?.mapping?.cipher ?? null,
    keySlots: info?.keySlots ?? null,
    headerBackup: { path: c.headerBackup, present: await fileExists(c.headerBackup) },
    unattendedKeyFile: c.unattendedKeyFile,
    crypttab: c.crypttab ? { path: c.crypttab, present: crypttab !== undefined && blockLines(crypttab, s.configPath) !== undefined } : null,
  };
  return { done: true, detail: ctx.report.encryption.state };
});

/** Below this the box counts as full: ext4 cannot write a journal commit into it. */
const NEARLY_FULL = 64 * 1024 * 1024;

/** What the superblock records of failed writes, and the likely cause. */
const errorsStep = probeStep<StatusCtx>('errors', 'Write errors', async (ctx) => {
  const s = ctx.stack;
  const fs = ctx.report.filesystem!;
  const box = ctx.report.box!;
  const readable = ctx.layers?.box.state === 'up' && (!s.crypt || ctx.layers.crypt?.state === 'open');
  const device = fs.device ?? s.fs.device;
  const sb = readable ? await ctx.probe.superblock(device).catch(() => undefined) : undefined;
  // Mounted: the kernel log since the mount (the superblock may not have heard of it yet).
  const under = fs.device ? await loopUnder(ctx.probe, s, fs.device) : undefined;
  const logged = fs.device && s.fs.uuid ? await ctx.probe.kernelErrors([fs.device, ...(under && under !== fs.device ? [under] : [])], s.fs.uuid) : [];
  if (!sb && logged.length === 0) return { done: true, detail: 'superblock not readable' };
  const count = sb?.errorCount ?? 0;
  const failed = count > 0 || fs.readOnly === true || logged.length > 0;
  const cause = !failed
    ? null
    : box.freeBytes !== null && box.freeBytes < NEARLY_FULL
      ? ('box-full' as const)
      : box.state !== 'up' || !box.reachable
        ? ('link-dropped' as const)
        : ('io-errors' as const);
  const at = (e: { time?: string; function?: string } | undefined) => (e ? { time: e.time ?? null, function: e.function ?? null } : null);
  fs.errors = {
    count,
    kernel: { lines: logged.length, first: logged[0] ?? null, last: logged.at(-1) ?? null },
    first: at(sb?.firstError),
    last: at(sb?.lastError),
    cause,
  };
  return { done: true, detail: `${count} errors in the superblock, ${logged.length} in the kernel log` };
});

/** Thin provisioning: can the box still hold what the filesystem believes it has free? */
const spaceStep = probeStep<StatusCtx>('space', 'Space for what ext4 may still write', (ctx) => {
  const box = ctx.report.box!;
  const fs = ctx.report.filesystem!;
  const image = ctx.report.image!;
  if (box.freeBytes === null || fs.freeBytes === null) {
    ctx.report.space = null;
    return Promise.resolve({ done: true, detail: 'not known (box or filesystem not up)' });
  }
  const unallocated = image.sizeBytes !== null && image.allocatedBytes !== null ? Math.max(0, image.sizeBytes - image.allocatedBytes) : null;
  const need = unallocated === null ? fs.freeBytes : Math.min(fs.freeBytes, unallocated);
  const short = Math.max(0, need - box.freeBytes);
  ctx.report.space = { boxFreeBytes: box.freeBytes, filesystemFreeBytes: fs.freeBytes, imageUnallocatedBytes: unallocated, mayStillNeedBytes: need, shortBytes: short, ok: short === 0 };
  return Promise.resolve({ done: true, detail: short ? `${short} bytes short` : 'enough' });
});

/** The systemd unit that brings the stack up at boot. */
const bootStep = probeStep<StatusCtx>('boot', 'Boot', async (ctx) => {
  const s = ctx.stack;
  if (!s.systemdDir) {
    ctx.report.boot = { state: 'fstab', unit: null, path: null };
    return { done: true, detail: 'fstab' };
  }
  const link = wantsLink(s.systemdDir, s.configPath);
  const target = await readlink(link).catch(() => undefined);
  const unit = join(s.systemdDir, TEMPLATE);
  const enabled = target !== undefined && (await fileExists(unit));
  ctx.report.boot = { state: enabled ? 'enabled' : 'missing', unit: unitName(s.configPath), path: link };
  return { done: true, detail: ctx.report.boot.state };
});

export const STATUS_STEPS: readonly Step<StatusCtx>[] = [layersStep, fstabStep, lockStep, encryptionStep, errorsStep, spaceStep, bootStep];

/** Healthy: every layer up, hbs's lock, the boot entries in place; for LUKS the mapping open and its header backed up. */
export function isHealthy(r: Omit<StatusReport, 'healthy'>): boolean {
  return (
    r.box.state === 'up' &&
    r.image.exists &&
    r.filesystem.state === 'up' &&
    (r.fstab.state === 'ok' || r.fstab.state === 'disabled') &&
    r.lock.state === 'ours' &&
    (r.filesystem.errors?.count ?? 0) === 0 &&
    (r.filesystem.errors?.kernel.lines ?? 0) === 0 &&
    r.space?.ok !== false &&
    r.boot.state !== 'missing' &&
    (r.encryption === null || (r.encryption.state === 'open' && r.encryption.headerBackup.present && (r.encryption.crypttab?.present ?? true)))
  );
}
