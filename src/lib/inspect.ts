import type { ActiveMapping } from './luks.js';
import type { MountInfo, Probes } from './probes.js';
import { isBoxSource, sshfsSource } from './ssh.js';
import type { Stack } from './stack.js';

/**
 * Each layer of a stack as the machine shows it now, from probes only. Steps decide from these
 * (is it already up? is something else in the way?), status reports them.
 */
export type LayerState = 'up' | 'down' | 'broken' | 'conflict';

export interface BoxLayer {
  state: LayerState;
  detail: string;
  totalBytes?: number;
  freeBytes?: number;
}

export interface FsLayer {
  state: LayerState;
  detail: string;
  device?: string;
  readOnly?: boolean;
  mount?: MountInfo;
}

export interface CryptLayer {
  state: 'open' | 'closed' | 'conflict';
  mapping?: ActiveMapping;
  detail: string;
}

/** The box layer: mounted from the right source, and answering (a dead sshfs gives ENOTCONN). */
export async function inspectBox(probe: Probes, s: Stack): Promise<BoxLayer> {
  const source = sshfsSource(s.conn);
  const m = await probe.mountAt(s.boxMount);
  if (!m) return { state: 'down', detail: `${s.boxMount}: not mounted` };
  if (m.fstype !== 'fuse.sshfs' || !isBoxSource(m.source, s.conn)) {
    return { state: 'conflict', detail: `${s.boxMount} holds ${m.source} (${m.fstype}), not ${source}` };
  }
  try {
    const space = await probe.space(s.boxMount);
    return { state: 'up', detail: `${source} at ${s.boxMount}`, ...space };
  } catch (err) {
    return { state: 'broken', detail: `${s.boxMount} is mounted but does not answer (${err instanceof Error ? err.message : String(err)})` };
  }
}

/** Loop devices whose backing file is the image. */
export async function loopsOf(probe: Probes, image: string): Promise<string[]> {
  return (await probe.loops()).filter((d) => d.backFile === image).map((d) => d.name);
}

/** The crypt layer of an encrypted stack: open on this image, open on something else, or closed. */
export async function inspectCrypt(probe: Probes, s: Stack): Promise<CryptLayer | undefined> {
  if (!s.crypt) return undefined;
  const m = await probe.mapping(s.crypt.mapperName);
  const dev = s.crypt.device;
  if (!m) return { state: 'closed', detail: `${dev}: closed` };
  if (m.backing !== s.image.path) return { state: 'conflict', mapping: m, detail: `${dev} is open on ${m.backing ?? m.loop ?? '?'}, not ${s.image.path}` };
  return { state: 'open', mapping: m, detail: `${dev} open (${m.cipher ?? 'LUKS2'} on ${m.loop ?? 'a loop device'})` };
}

/** Which image (file) a mounted device is: the loop device's backing file, or the file under an open mapping. */
async function imageUnder(probe: Probes, s: Stack, source: string): Promise<string | undefined> {
  if (s.crypt) return source === s.crypt.device ? (await probe.mapping(s.crypt.mapperName))?.backing : undefined;
  if (!source.startsWith('/dev/loop')) return undefined;
  return (await probe.loops()).find((d) => d.name === source)?.backFile ?? undefined;
}

/** The filesystem layer: the image mounted at the mount point, readable, and not forced read-only. */
export async function inspectFs(probe: Probes, s: Stack, box: BoxLayer): Promise<FsLayer> {
  const mp = s.fs.mountPoint;
  const m = await probe.mountAt(mp);
  if (!m) return { state: 'down', detail: `${mp}: not mounted` };
  const backing = await imageUnder(probe, s, m.source);
  if (backing !== s.image.path) return { state: 'conflict', mount: m, detail: `${mp} holds ${backing ?? m.source} (${m.fstype}), not ${s.image.path}` };
  const readOnly = m.options.split(',').includes('ro');
  const base = { device: m.source, readOnly, mount: m };
  if (box.state !== 'up') return { ...base, state: 'broken', detail: `mounted from ${m.source}, but the box under it is ${box.state}` };
  const read = await probe.readsBack(m.source);
  if (!read.ok) return { ...base, state: 'broken', detail: `reading ${m.source} fails: ${read.why}` };
  if (readOnly) return { ...base, state: 'broken', detail: `${mp} went read-only (ext4 saw I/O errors)` };
  return { ...base, state: 'up', detail: `${s.image.path} at ${mp} (${m.source})` };
}

export interface StackLayers {
  box: BoxLayer;
  /** Loop devices backed by the image, wherever they are mounted. */
  loops: string[];
  crypt?: CryptLayer;
  fs: FsLayer;
}

export async function inspectStack(probe: Probes, s: Stack): Promise<StackLayers> {
  const box = await inspectBox(probe, s);
  const loops = box.state === 'down' ? [] : await loopsOf(probe, s.image.path);
  const crypt = await inspectCrypt(probe, s);
  const fs = await inspectFs(probe, s, box);
  return { box, loops, crypt, fs };
}

/** The loop device under a mounted device: itself, or (LUKS) the device under the mapping. */
export async function loopUnder(probe: Probes, s: Stack, device: string): Promise<string | undefined> {
  if (device.startsWith('/dev/loop')) return device;
  if (s.crypt && device === s.crypt.device) {
    const loop = (await probe.mapping(s.crypt.mapperName))?.loop;
    return loop?.startsWith('/dev/loop') ? loop : undefined;
  }
  return undefined;
}
