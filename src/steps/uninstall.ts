import { readdir, readFile, readlink, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Action } from '../core/action.js';
import { hasBlock } from '../core/block.js';
import { EXIT, HbsError } from '../core/errors.js';
import { dirState, exists, readTextIfExists, replaceFile } from '../core/files.js';
import type { Check, Step } from '../core/step.js';
import { configName, pathDefaults } from '../lib/config-name.js';
import type { Config } from '../lib/config.js';
import { knownHostsName, pinnedKeys, unpinHost } from '../lib/host-keys.js';
import { inspectBox } from '../lib/inspect.js';
import { backupLockPath, lastBackupPath } from '../lib/backup.js';
import { intentPath } from '../lib/intent.js';
import { parseOpenSshPublicKey, removeFromAuthorizedKeys } from '../lib/rfc4716.js';
import { sshfsMountCmd } from '../lib/ssh.js';
import { knownHostsPath } from '../lib/stack.js';
import { isHbsTemplate, isUnitOf, templateOf } from '../lib/systemd.js';
import type { StepCtx } from './context.js';

/**
 * `hbs uninstall`: what hbs added on this machine for one config, taken away again — each removal a
 * step whose check says "already gone", so a run killed at any moment is finished by the next one.
 * The config goes last: until then a re-run knows everything it needs.
 */
export interface UninstallFacts {
  cfg: Config;
  /**
   * Where its units are (the boot unit's directory, the backup timer's, --systemd-dir), and whether
   * systemd runs there (then they are stopped and systemd reloaded). Empty: the config has none.
   */
  systemd: readonly { dir: string; live: boolean }[];
  /** The other configs in the same directory: what they still use stays. */
  siblings: readonly { path: string; cfg: Config }[];
  /** Why the SSH key pair stays (--keep-key, not made by hbs, another config uses it); undefined: it goes. */
  keepSshKey?: string;
}

export interface UninstallCtx extends StepCtx {
  u: UninstallFacts;
}

const gone = (detail: string): Check => ({ done: true, detail });

/** What ssh says when the box turned the key away (as opposed to a network that is not there). */
const KEY_REFUSED = /Permission denied|publickey/i;

/**
 * hbs's key out of the box's authorized_keys (--remove-box-key): only the lines and RFC4716 blocks
 * of its public key; every other byte stays. The account's home is mounted with the key itself, so it
 * runs before the local key goes, whatever directory the box mount shows. Done when the box no
 * longer accepts the key.
 */
export const boxKeyRemoveStep: Step<UninstallCtx> = {
  id: 'box-key',
  title: "Remove hbs's key from the box's authorized_keys",
  async check(ctx) {
    const conn = ctx.stack.conn;
    if (!(await exists(`${conn.key}.pub`)) && !(await exists(conn.key))) return gone(`${conn.key} is gone: nothing to remove with it`);
    const r = await ctx.probe.keyLogin(conn);
    if (r.ok) return { done: false, detail: `${conn.user}@${conn.host} no longer accepts ${conn.key}` };
    // A refused key and a box that is not there both end the login; a box that shows its host key is there.
    if (KEY_REFUSED.test(r.stderr) || (await ctx.probe.hostKeys(conn.host, conn.port)).length > 0) return gone(`${conn.user}@${conn.host} does not accept ${conn.key} (any more)`);
    throw new HbsError(`cannot reach ${conn.user}@${conn.host} to remove the key: ${r.stderr.split('\n').pop() ?? ''}`, EXIT.failed, 're-run when the box is reachable, or leave out --remove-box-key');
  },
  async plan(ctx) {
    const conn = ctx.stack.conn;
    const pub = (await readTextIfExists(`${conn.key}.pub`)) ?? (await ctx.probe.publicKeyOf(conn.key));
    const { blob } = parseOpenSshPublicKey(pub);
    const home = { ...conn, remotePath: '' };
    return [
      {
        kind: 'task',
        describe: [
          `mount the account's home with the key: ${sshfsMountCmd(home, '<temp dir>').argv.join(' ')}`,
          `remove the lines and RFC4716 blocks of ${conn.key}.pub from .ssh/authorized_keys (every other line stays as it is)`,
          'unmount the temporary mount',
        ],
        run: async (runner) => {
          const dir = await ctx.deps.mkTempDir('hbs-home-');
          await runner.run(sshfsMountCmd(home, dir));
          try {
            const file = join(dir, '.ssh', 'authorized_keys');
            const text = await readTextIfExists(file);
            const r = text === undefined ? { text: '', removed: 0 } : removeFromAuthorizedKeys(text, blob);
            if (r.removed > 0) await replaceFile(file, r.text, 0o600);
            ctx.reporter.line(r.removed ? `removed ${r.removed} entr${r.removed === 1 ? 'y' : 'ies'} of the key from authorized_keys` : 'the key was not in authorized_keys');
          } finally {
            await runner.run({ argv: ['fusermount3', '-u', dir], allowFail: true });
            // rmdir, never a recursive delete: if the unmount failed, the box's files are still in there.
            await rmdir(dir).catch(() => undefined);
          }
        },
      },
    ];
  },
};

/**
 * After the way down: a filesystem detached lazily (--force) still uses the box, so nothing it needs
 * is removed yet — the config least of all. Stops the run; a re-run once its users let go finishes.
 */
export const downFirstStep: Step<UninstallCtx> = {
  id: 'down',
  title: 'The stack is down',
  check(ctx) {
    if (ctx.found.lazy) {
      return Promise.reject(
        new HbsError(`${ctx.stack.fs.mountPoint} was detached lazily and is still in use: the box stays mounted for it, and nothing is removed yet`, EXIT.failed, 're-run `hbs uninstall` once the processes using it have finished'),
      );
    }
    return Promise.resolve(gone('nothing of it is mounted or open'));
  },
  plan: () => Promise.resolve([]),
};

/** --delete-image (after the name was typed): the image on the box, once nothing uses it; needs the box mounted. */
export const imageDeleteStep: Step<UninstallCtx> = {
  id: 'image-delete',
  title: 'Delete the image on the box (--delete-image)',
  after: ['box-mount', 'loop-detach'],
  async check(ctx) {
    const s = ctx.stack;
    if ((await inspectBox(ctx.probe, s)).state !== 'up') throw new HbsError(`the box is not mounted at ${s.boxMount}: the image cannot be deleted`, EXIT.failed, 're-run `hbs uninstall`');
    return (await ctx.probe.file(s.image.path)) ? { done: false, detail: `${s.image.path} deleted` } : gone(`${s.image.path} is not there`);
  },
  expect: (ctx) => Promise.resolve({ done: false, detail: `${ctx.stack.image.path} deleted` }),
  plan: (ctx) => Promise.resolve([{ kind: 'remove', path: ctx.stack.image.path, what: 'the image and all its data' }]),
};

/** The unit files and links of this config under `dir` (its *.wants directories included). */
async function unitFilesOf(dir: string, configPath: string): Promise<string[]> {
  const out: string[] = [];
  const top = await readdir(dir).catch(() => [] as string[]);
  for (const name of top.sort()) {
    if (isUnitOf(name, configPath)) out.push(join(dir, name));
    if (/\.(wants|requires)$/.test(name)) {
      for (const inner of (await readdir(join(dir, name)).catch(() => [] as string[])).sort()) if (isUnitOf(inner, configPath)) out.push(join(dir, name, inner));
    }
  }
  return out;
}

/** Instances of hbs's templates that other configs still have enabled under `dir`. */
async function otherInstances(dir: string, configPath: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!/\.(wants|requires)$/.test(name)) continue;
    for (const inner of await readdir(join(dir, name)).catch(() => [] as string[])) if (/^hbs-[a-z0-9-]+@.+\.[a-z]+$/.test(inner) && !isUnitOf(inner, configPath)) out.push(inner);
  }
  return out;
}

/** hbs's templates under `dir` that no config uses any more (written by hbs: its first line says so). */
async function unusedTemplates(dir: string, ctx: UninstallCtx): Promise<string[]> {
  const others = await otherInstances(dir, ctx.stack.configPath);
  const used = new Set(others.map(templateOf));
  // Another config of this directory with units here keeps the templates, enabled or not.
  if (ctx.u.siblings.some((s) => s.cfg.systemd?.dir === dir)) return [];
  const out: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!isHbsTemplate(name) || used.has(name)) continue;
    const head = await readFile(join(dir, name), 'utf8').catch(() => '');
    if (head.startsWith('# Written by hbs')) out.push(join(dir, name));
  }
  return out.sort();
}

/**
 * Every systemd unit of the config — whatever its kind (`hbs-<kind>@<config>.<type>`: the boot
 * unit, a backup timer) — stopped where systemd runs, its files and links removed; hbs's templates
 * too once no config uses them.
 */
export const unitsRemoveStep: Step<UninstallCtx> = {
  id: 'units',
  title: 'systemd units of this config',
  async check(ctx) {
    if (!ctx.u.systemd.length) return gone('none (the config has no systemd units)');
    let count = 0;
    for (const sd of ctx.u.systemd) count += (await unitFilesOf(sd.dir, ctx.stack.configPath)).length + (await unusedTemplates(sd.dir, ctx)).length;
    const dirs = ctx.u.systemd.map((sd) => sd.dir).join(', ');
    return count ? { done: false, detail: `${count} file(s) removed from ${dirs}` } : gone(`none left in ${dirs}`);
  },
  async plan(ctx) {
    const actions: Action[] = [];
    for (const sd of ctx.u.systemd) {
      const files = await unitFilesOf(sd.dir, ctx.stack.configPath);
      const units = [...new Set(files.map((f) => f.split('/').pop()!))];
      if (sd.live && units.length) {
        actions.push({
          kind: 'run',
          cmd: { argv: ['systemctl', 'stop', ...units], allowFail: true, timeoutMs: 600_000 },
          // 5: a unit systemd has not loaded (a link without its template): nothing to stop.
          then: (r) => {
            if (r.exitCode !== 0 && r.exitCode !== 5) throw new HbsError(`systemctl stop ${units.join(' ')} failed (exit ${r.exitCode}): ${r.stderr.trim()}`, EXIT.failed, 're-run `hbs uninstall`');
          },
        });
      }
      // Links first, then the files they point to.
      for (const f of [...files].sort((a, b) => Number(b.includes('.wants/')) - Number(a.includes('.wants/')))) {
        const link = await readlink(f).catch(() => undefined);
        actions.push({ kind: 'remove', path: f, what: link ? `link to ${link}` : 'unit file' });
      }
      for (const t of await unusedTemplates(sd.dir, ctx)) actions.push({ kind: 'remove', path: t, what: 'hbs template, no config uses it any more' });
      if (sd.live) actions.push({ kind: 'run', cmd: { argv: ['systemctl', 'daemon-reload'], timeoutMs: 120_000 } });
    }
    return actions;
  },
};

/** The config's hbs block in an fstab or crypttab; the file otherwise byte for byte as it was. */
function blockRemoveStep(id: string, title: string, path: (ctx: UninstallCtx) => string | null | undefined): Step<UninstallCtx> {
  return {
    id,
    title,
    async check(ctx) {
      const p = path(ctx);
      if (!p) return gone('none (the config records no such file)');
      const text = await readTextIfExists(p);
      return text !== undefined && hasBlock(text, ctx.stack.configPath) ? { done: false, detail: `removed from ${p}` } : gone(`${p} has no hbs block for this config`);
    },
    plan: (ctx) => Promise.resolve([{ kind: 'block', path: path(ctx)!, id: ctx.stack.configPath, lines: null, mode: 0o644, what: 'the hbs block' }]),
  };
}

export const fstabRemoveStep = blockRemoveStep('fstab', 'fstab entries', (ctx) => ctx.u.cfg.fstab);
export const crypttabRemoveStep = blockRemoveStep('crypttab', 'crypttab line', (ctx) => ctx.u.cfg.encryption?.crypttab);

/** Whether another config reaches the same box (host and port) through the same known_hosts. */
function sharedHostKey(ctx: UninstallCtx): string | undefined {
  const c = ctx.u.cfg;
  return ctx.u.siblings.find((s) => s.cfg.ssh.knownHosts === c.ssh.knownHosts && s.cfg.box.host === c.box.host && s.cfg.box.port === c.box.port)?.path;
}

/** The box's pinned host key in hbs's known_hosts: only its lines; the file goes only when it is hbs's own and empty then. */
export const knownHostsRemoveStep: Step<UninstallCtx> = {
  id: 'known-hosts',
  title: "The box's host key in known_hosts",
  async check(ctx) {
    const { box, ssh } = ctx.u.cfg;
    const shared = sharedHostKey(ctx);
    if (shared) return gone(`kept: ${shared} reaches the same box`);
    const text = await readTextIfExists(ssh.knownHosts);
    if (text === undefined) return gone(`${ssh.knownHosts} is not there`);
    if (pinnedKeys(text, knownHostsName(box.host, box.port)).length) return { done: false, detail: `${knownHostsName(box.host, box.port)} removed from ${ssh.knownHosts}` };
    return ownEmpty(ctx, text) ? { done: false, detail: `${ssh.knownHosts} removed (empty)` } : gone(`${ssh.knownHosts} has no line for ${knownHostsName(box.host, box.port)}`);
  },
  async plan(ctx) {
    const { box, ssh } = ctx.u.cfg;
    const next = unpinHost((await readTextIfExists(ssh.knownHosts)) ?? '', knownHostsName(box.host, box.port));
    if (ownEmpty(ctx, next)) return [{ kind: 'remove', path: ssh.knownHosts, what: "hbs's known_hosts, empty now" }];
    return [{ kind: 'write', path: ssh.knownHosts, content: next, mode: 0o600, how: 'atomic', show: true, what: `without ${knownHostsName(box.host, box.port)}` }];
  },
};

/** hbs's own known_hosts (the one next to the configs) with no line left in it. */
function ownEmpty(ctx: UninstallCtx, text: string): boolean {
  return ctx.u.cfg.ssh.knownHosts === knownHostsPath(ctx.stack.configPath) && text.trim() === '' && ctx.u.siblings.every((s) => s.cfg.ssh.knownHosts !== ctx.u.cfg.ssh.knownHosts);
}

/** A file hbs made for this config: removed unless gone already. */
function fileRemoveStep(id: string, title: string, path: (ctx: UninstallCtx) => string | null | undefined, what: string): Step<UninstallCtx> {
  return {
    id,
    title,
    async check(ctx) {
      const p = path(ctx);
      if (!p) return gone('none');
      return (await exists(p)) ? { done: false, detail: `${p} removed` } : gone(`${p} is not there`);
    },
    plan: (ctx) => Promise.resolve([{ kind: 'remove', path: path(ctx)!, what }]),
  };
}

export const keptKeyRemoveStep = fileRemoveStep('luks-key', 'The kept LUKS key (--luks-unattended)', (ctx) => ctx.u.cfg.encryption?.unattendedKeyFile, 'the key kept for unattended mounts');

/** The SSH key pair hbs made, unless it stays (see UninstallFacts.keepSshKey). */
export const sshKeyRemoveStep: Step<UninstallCtx> = {
  id: 'ssh-key',
  title: 'The SSH key pair hbs made',
  async check(ctx) {
    const key = ctx.u.cfg.ssh.key;
    if (ctx.u.keepSshKey) return gone(`kept: ${ctx.u.keepSshKey}`);
    return (await exists(key)) || (await exists(`${key}.pub`)) ? { done: false, detail: `${key} and ${key}.pub removed` } : gone(`${key} is not there`);
  },
  plan(ctx) {
    const key = ctx.u.cfg.ssh.key;
    // The public half last: with it, a re-run still knows which key it was.
    return Promise.resolve([
      { kind: 'remove', path: key, what: 'the private key' },
      { kind: 'remove', path: `${key}.pub`, what: 'the public key' },
    ]);
  },
};

/** The mount points hbs made, if empty (a directory with files in it stays). */
export const mountDirsRemoveStep: Step<UninstallCtx> = {
  id: 'dirs',
  title: 'Empty mount point directories',
  after: ['fs-unmount', 'box-unmount'],
  async check(ctx) {
    const dirs = await emptyDirs(ctx);
    return dirs.length ? { done: false, detail: `${dirs.join(', ')} removed` } : gone('none left (or not empty: kept)');
  },
  expect: (ctx) => Promise.resolve({ done: false, detail: `${ctx.stack.fs.mountPoint} and ${ctx.stack.boxMount}, if empty` }),
  async plan(ctx, pending) {
    const own = ownParent(ctx);
    const dirs = pending?.length ? [ctx.stack.fs.mountPoint, ctx.stack.boxMount, ...(own ? [own] : [])] : await emptyDirs(ctx);
    return dirs.map((path): Action => ({ kind: 'remove', path, dir: 'empty', what: 'an empty mount point' }));
  },
};

async function emptyDirs(ctx: UninstallCtx): Promise<string[]> {
  const out: string[] = [];
  for (const d of [ctx.stack.fs.mountPoint, ctx.stack.boxMount]) {
    if ((await ctx.probe.mountAt(d)) !== undefined) continue;
    if ((await dirState(d).catch(() => 'full')) === 'empty') out.push(d);
  }
  // The directory the defaults of NAME.json put both in (/srv/backup/NAME), once nothing else is in it.
  const own = ownParent(ctx);
  if (own) {
    const left = await readdir(own).catch(() => undefined);
    if (left?.every((e) => out.includes(join(own, e)))) out.push(own);
  }
  return out;
}

/** /srv/backup/NAME when both mount points are the ones derived for this config's name (hbs made it). */
function ownParent(ctx: UninstallCtx): string | undefined {
  const d = pathDefaults(ctx.stack.configPath);
  const parent = dirname(d.mountPoint);
  return configName(ctx.stack.configPath) !== undefined && ctx.stack.fs.mountPoint === d.mountPoint && ctx.stack.boxMount === d.boxMount ? parent : undefined;
}

/** Last: the config (and the record of an interrupted init). Until it goes, a re-run knows everything. */
/** The files beside a config that belong to it: what an interrupted init was creating, the backup's record and lock. */
function besideFiles(configPath: string): { path: string; what: string }[] {
  return [
    { path: intentPath(configPath), what: 'what an interrupted init was creating' },
    { path: lastBackupPath(configPath), what: 'the record of the last backup' },
    { path: backupLockPath(configPath), what: 'the lock of `hbs backup`' },
  ];
}

export const configRemoveStep: Step<UninstallCtx> = {
  id: 'config',
  title: 'The config',
  async check(ctx) {
    const p = ctx.stack.configPath;
    for (const f of [p, ...besideFiles(p).map((b) => b.path)]) if (await exists(f)) return { done: false, detail: `${p} removed` };
    return gone(`${p} is not there`);
  },
  async plan(ctx) {
    const p = ctx.stack.configPath;
    const actions: Action[] = [];
    // What belongs to the config beside it goes first: the config last, so a re-run still knows the rest.
    for (const f of besideFiles(p)) if (await exists(f.path)) actions.push({ kind: 'remove', path: f.path, what: f.what });
    return [...actions, { kind: 'remove', path: p, what: 'the config' }];
  },
};
