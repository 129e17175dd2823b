import { readdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { UsageError } from '../core/errors.js';
import { readConfig, type Config } from './config.js';
import { stackFromConfig, type Stack } from './stack.js';
import { isInside } from './validate.js';

/**
 * The other configs in a config's directory (/etc/hbs/*.json): the stacks this machine has besides
 * this one. What cannot be read as a config (another program's JSON, a broken file) is skipped.
 */
export async function siblingConfigs(configPath: string): Promise<{ path: string; cfg: Config }[]> {
  const me = resolve(configPath);
  const dir = dirname(me);
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: { path: string; cfg: Config }[] = [];
  for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
    const path = join(dir, name);
    if (path === me) continue;
    const cfg = await readConfig(path).catch(() => undefined);
    if (cfg) out.push({ path, cfg });
  }
  return out;
}

const norm = (p: string): string => p.replace(/\/+$/, '').replace(/^\/*/, '');
const nested = (a: string, b: string): boolean => isInside(a, b) || isInside(b, a);

/**
 * What this stack would share with another config's stack that must be unique on the machine (or on
 * the box): the first such value, as one line naming the other config; undefined when none.
 */
export function collisionWith(mine: Stack, otherPath: string, other: Stack): string | undefined {
  const of = `of ${otherPath} already`;
  const [a, b] = [mine.conn, other.conn];
  if (a.user === b.user && a.host === b.host && norm(a.remotePath) === norm(b.remotePath) && mine.image.name === other.image.name) {
    return `the image ${mine.image.name} on ${a.user}@${a.host}:${a.remotePath || '~'} is the image ${of}`;
  }
  if (mine.crypt && other.crypt) {
    if (mine.crypt.mapperName === other.crypt.mapperName) return `the mapping name ${mine.crypt.mapperName} (--luks-name) is the one ${of}`;
    if (mine.crypt.headerBackup === other.crypt.headerBackup) return `the header backup ${mine.crypt.headerBackup} is the one ${of}`;
    if (mine.crypt.unattendedKeyFile && mine.crypt.unattendedKeyFile === other.crypt.unattendedKeyFile) return `the kept key ${mine.crypt.unattendedKeyFile} is the one ${of}`;
  }
  return placeClash('--box-mount', mine.boxMount, otherPath, other) ?? placeClash('--mount-point', mine.fs.mountPoint, otherPath, other);
}

/** A box mount or mount point (`flag`) that is another config's box mount or mount point, or inside one of them (or the other way round). */
export function placeClash(flag: string, path: string, otherPath: string, other: Pick<Stack, 'boxMount' | 'fs'>): string | undefined {
  for (const [theirs, what] of [[other.boxMount, 'box mount'], [other.fs.mountPoint, 'mount point']] as const) {
    if (path === theirs) return `${flag} ${path} is the ${what} of ${otherPath} already`;
    if (nested(path, theirs)) return `${flag} ${path} overlaps ${theirs}, the ${what} of ${otherPath} already`;
  }
  return undefined;
}

/** Refuses (exit 2, before anything changes) a stack that would collide with another config in its directory. */
export async function assertNoCollision(mine: Stack): Promise<void> {
  for (const { path, cfg } of await siblingConfigs(mine.configPath)) {
    const clash = collisionWith(mine, path, stackFromConfig(cfg, path));
    if (clash) throw new UsageError(clash, 'pick another value, or another --config name (each config derives its own defaults from its name: docs/multi-box.md)');
  }
}
