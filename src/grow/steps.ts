import { EXIT, HbsError } from '../core/errors.js';
import type { Action, Step } from '../core/plan.js';
import { CommandError, formatCmd, type Cmd } from '../core/runner.js';
import { serializeConfig } from '../lib/config.js';
import { luksCloseCmd, luksOpenCmd, luksResizeCmd, mappingActive, type LuksKey } from '../lib/luks.js';
import { loopBackingFile, mountAt } from '../lib/mounts.js';
import { formatSize } from '../lib/size.js';
import { holdersOf } from '../lifecycle/holders.js';
import { loopsFor } from '../lifecycle/stack.js';
import { mountArgv } from '../steps/fs-mount.js';
import { directIoTask } from '../lib/loop.js';
import { probeSignature, statFile } from '../steps/image.js';
import type { CryptFacts, GrowContext, GrowDecision } from './context.js';
import { covers, fsBytes, readGeometry, type FsGeometry } from './geometry.js';

/**
 * The layers of the stack, bottom to top: image file → loop device → (LUKS2 mapping) → ext4.
 * Growing goes bottom up, each layer taking the new size of the one below. Encrypted, a
 * `cryptsetup resize NAME` step follows the loop refresh, and offline the mapping is opened (and
 * closed again) around e2fsck/resize2fs, which then work on /dev/mapper/NAME instead of the image.
 */

/** The kernel said no to growing the mounted filesystem (EPERM: no CAP_SYS_RESOURCE). Nothing changed in ext4. */
export class OnlineResizeRefused extends HbsError {
  constructor(readonly said: string) {
    super(`the kernel refused to grow the mounted filesystem online: ${said}`, EXIT.failed);
    this.name = 'OnlineResizeRefused';
  }
}

const ONLINE_REFUSED = /Permission denied to resize filesystem|Operation not permitted/i;
const HOURS = 24 * 60 * 60_000;

function target(ctx: GrowContext): number {
  return ctx.decision.targetBytes;
}

/** Bytes the filesystem's device will have: the image minus the LUKS2 header when encrypted. */
function fsTarget(ctx: GrowContext): number {
  return target(ctx) - ctx.facts.payloadOffset;
}

/** The device e2fsck and resize2fs work on offline: the mapping when encrypted, else the image file. */
function offlineDevice(ctx: GrowContext): string {
  return ctx.facts.crypt?.mapper ?? ctx.facts.image;
}

/**
 * A command that takes the key on stdin. The key is set before the first change in a real run; a
 * dry-run shows the command with a stdin marker and never holds the key.
 */
function keyed(ctx: GrowContext, make: (key: LuksKey) => Cmd): Cmd {
  const key = ctx.key;
  if (key) return make(key);
  if (!ctx.runner.dryRun) throw new HbsError('internal: the key is needed here but was not asked for', EXIT.failed);
  return make({ kind: 'keyfile', bytes: new Uint8Array(0), label: 'key' });
}

/** A command shown in a plan and run by a task that looks at its result itself. */
function runTask(cmd: Cmd, run: () => Promise<void>): Action {
  return { kind: 'task', describe: [formatCmd(cmd)], run };
}

export const growFileStep: Step<GrowContext> = {
  id: 'grow-file',
  title: 'Extend the image file',
  check(ctx) {
    const size = ctx.facts.file.sizeBytes;
    return Promise.resolve(size >= target(ctx) ? { done: true, detail: `${ctx.facts.image} is already ${formatSize(size)}` } : { done: false });
  },
  plan(ctx) {
    const { image } = ctx.facts;
    const before = ctx.facts.file.sizeBytes;
    return Promise.resolve([
      {
        kind: 'task',
        describe: [`re-check right before: ${image} is still ${before} bytes (else stop)`],
        run: async () => {
          const now = await statFile(ctx.runner, image);
          if (now?.sizeBytes !== before) {
            throw new HbsError(
              `${image} changed while hbs was planning (it was ${before} bytes, now ${now ? `${now.sizeBytes} bytes` : 'gone'}); nothing was changed`,
              EXIT.failed,
              'make sure nothing else works on the image, then re-run',
            );
          }
        },
      },
      // `>` makes truncate only ever grow the file: no size, however wrong, can cut the image.
      { kind: 'run', cmd: { argv: ['truncate', `--size=>${target(ctx)}`, image], timeoutMs: 120_000 } },
    ]);
  },
};

/** The loop device under the filesystem (or under the mapping). */
function loopDevice(ctx: GrowContext): string {
  return (ctx.facts.crypt ? ctx.facts.crypt.loop : ctx.facts.device) as string;
}

/** The loop device keeps the size it had when attached until told to look again. */
export const refreshLoopStep: Step<GrowContext> = {
  id: 'loop-refresh',
  title: 'Refresh the loop device size',
  async check(ctx) {
    const dev = loopDevice(ctx);
    const r = await ctx.runner.run({ argv: ['blockdev', '--getsize64', dev], write: false, allowFail: true });
    const size = Number(r.stdout.trim());
    return r.exitCode === 0 && size >= target(ctx) ? { done: true, detail: `${dev} is already ${formatSize(size)}` } : { done: false };
  },
  plan(ctx) {
    return Promise.resolve([{ kind: 'run', cmd: { argv: ['losetup', '--set-capacity', loopDevice(ctx)] } }]);
  },
};

/** The mapping keeps its size until told to take the (refreshed) loop device's; LUKS2 wants the key for that. */
export const cryptResizeStep: Step<GrowContext> = {
  id: 'crypt-resize',
  title: 'Resize the LUKS2 mapping',
  async check(ctx) {
    const c = ctx.facts.crypt as NonNullable<GrowContext['facts']['crypt']>;
    const r = await ctx.runner.run({ argv: ['blockdev', '--getsize64', c.mapper], write: false, allowFail: true });
    const size = Number(r.stdout.trim());
    return r.exitCode === 0 && size >= fsTarget(ctx) ? { done: true, detail: `${c.mapper} is already ${formatSize(size)}` } : { done: false };
  },
  plan(ctx) {
    const c = ctx.facts.crypt as NonNullable<GrowContext['facts']['crypt']>;
    // The key only where cryptsetup will ask for it (volume key in the kernel keyring, LUKS2's default).
    const cmd: Cmd = ctx.decision.keyNeeded ? keyed(ctx, (key) => luksResizeCmd(c.name, key)) : { argv: ['cryptsetup', 'resize', c.name], timeoutMs: 5 * 60_000 };
    return Promise.resolve([{ kind: 'run', cmd }]);
  },
};

/** Offline, encrypted: open the mapping (it takes the extended file's size as it opens) and check what it holds. */
export const openCryptStep: Step<GrowContext> = {
  id: 'crypt-open',
  title: 'Open the LUKS2 mapping',
  check() {
    return Promise.resolve({ done: false });
  },
  plan(ctx) {
    const c = ctx.facts.crypt as NonNullable<GrowContext['facts']['crypt']>;
    const { image } = ctx.facts;
    const uuid = ctx.cfg.image.uuid;
    const open = keyed(ctx, (key) => luksOpenCmd(image, c.name, key));
    return Promise.resolve([
      runTask(open, async () => {
        await ctx.runner.run(open);
        ctx.state.opened = true;
      }),
      {
        kind: 'task',
        describe: [`check that ${c.mapper} holds ext4 UUID ${uuid} (else close it and stop), and read its size (dumpe2fs -h)`],
        run: async () => {
          const sig = await probeSignature(ctx.runner, c.mapper);
          if (sig.TYPE !== 'ext4' || sig.UUID !== uuid) {
            await ctx.runner.run({ ...luksCloseCmd(c.name), allowFail: true });
            ctx.state.opened = false;
            throw new HbsError(
              `${c.mapper} does not hold the filesystem in ${ctx.configPath} (found ${sig.TYPE ?? 'nothing'}${sig.UUID ? ` UUID ${sig.UUID}` : ''}, expected ext4 UUID ${uuid}); closed it again, nothing else was changed`,
              EXIT.failed,
            );
          }
          ctx.state.fs = await readGeometry(ctx.runner, c.mapper);
        },
      },
    ]);
  },
};

/** Closes the mapping the grow opened (a mapping found open is left as it was). */
export const closeCryptStep: Step<GrowContext> = {
  id: 'crypt-close',
  title: 'Close the LUKS2 mapping',
  check(ctx) {
    return Promise.resolve(ctx.runner.dryRun || ctx.state.opened ? { done: false } : { done: true, detail: `${ctx.facts.crypt?.mapper ?? 'the mapping'} was open before; left open` });
  },
  plan(ctx) {
    const c = ctx.facts.crypt as NonNullable<GrowContext['facts']['crypt']>;
    const close: Cmd = { ...luksCloseCmd(c.name), timeoutMs: 120_000 };
    return Promise.resolve([
      runTask(close, async () => {
        await ctx.runner.run(close);
        ctx.state.opened = false;
      }),
    ]);
  },
};

/** The filesystem's size as last read: from the facts, or from the mapping the grow opened. */
function knownFs(ctx: GrowContext): FsGeometry | undefined {
  return ctx.state.fs ?? ctx.facts.fs;
}

const fsDone = (ctx: GrowContext): { done: true; detail: string } | undefined => {
  const g = knownFs(ctx);
  return g && covers(g, fsTarget(ctx), false) ? { done: true, detail: `ext4 already spans ${formatSize(fsBytes(g))}` } : undefined;
};

export const onlineResizeStep: Step<GrowContext> = {
  id: 'fs-online',
  title: 'Grow ext4 online (mounted)',
  check(ctx) {
    return Promise.resolve(fsDone(ctx) ?? { done: false });
  },
  plan(ctx) {
    const cmd: Cmd = { argv: ['resize2fs', ctx.facts.device as string], allowFail: true, timeoutMs: HOURS };
    return Promise.resolve([
      runTask(cmd, async () => {
        const r = await ctx.runner.run(cmd);
        if (r.exitCode === 0) return;
        const said = r.stderr.trim().split('\n').filter((l) => !/^resize2fs \d/.test(l)).join('; ');
        if (ONLINE_REFUSED.test(r.stderr)) throw new OnlineResizeRefused(said);
        throw new CommandError(formatCmd(cmd), r);
      }),
    ]);
  },
};

/** umount, then make sure the loop device under it is gone before the image is touched directly. */
export const unmountStep: Step<GrowContext> = {
  id: 'fs-unmount',
  title: 'Unmount the filesystem',
  check() {
    return Promise.resolve({ done: false });
  },
  plan(ctx) {
    const mp = ctx.cfg.filesystem.mountPoint;
    const dev = ctx.facts.device as string;
    const umount: Cmd = { argv: ['umount', mp], allowFail: true, timeoutMs: 10 * 60_000 };
    const actions: Action[] = [
      runTask(umount, async () => {
        const r = await ctx.runner.run(umount);
        if (r.exitCode === 0) return;
        const holders = await holdersOf(mp);
        throw new HbsError(
          `cannot unmount ${mp}: ${r.stderr.trim()}${holders.length ? `\n${holders.map((h) => `  pid ${h.pid} (${h.via}): ${h.command}`).join('\n')}` : ''}`,
          EXIT.failed,
          `stop what uses ${mp} (e.g. a running backup), then re-run the same hbs grow: it picks up where it stopped`,
        );
      }),
    ];
    // Encrypted, the mapping stays open (and holds its loop device): e2fsck and resize2fs use it.
    if (ctx.facts.crypt) return Promise.resolve(actions);
    return Promise.resolve([
      ...actions,
      {
        kind: 'task',
        describe: [`wait until ${dev} is detached (mount -o loop detaches it on unmount), else losetup --detach ${dev}`],
        run: async () => {
          for (let i = 0; i <= 50; i++) {
            if (!(await loopsFor(ctx.runner, ctx.facts.image)).includes(dev)) return;
            if (i < 50) await ctx.deps.sleep(100);
          }
          await ctx.runner.run({ argv: ['losetup', '--detach', dev] });
        },
      },
    ]);
  },
};

/** e2fsck's `-C 1` lines: "PASS CURRENT MAX DEVICE". */
const PROGRESS = /^(\d) (\d+) (\d+)(?: |$)/;
const PASSES = ['', 'inodes, blocks and sizes', 'directory structure', 'directory connectivity', 'reference counts', 'group summary'];

export const fsckStep: Step<GrowContext> = {
  id: 'fs-check',
  title: 'Check the filesystem (e2fsck -f)',
  check(ctx) {
    return Promise.resolve(fsDone(ctx) ?? { done: false });
  },
  plan(ctx) {
    const image = offlineDevice(ctx);
    let pass = 0;
    let shown = -1;
    const cmd: Cmd = {
      argv: ['e2fsck', '-f', '-p', '-C', '1', image],
      allowFail: true,
      timeoutMs: HOURS,
      onStdoutLine: (line) => {
        const m = PROGRESS.exec(line);
        if (!m) return;
        const [p, cur, max] = [Number(m[1]), Number(m[2]), Number(m[3])];
        if (p !== pass) {
          pass = p;
          ctx.reporter.line(`e2fsck pass ${p} of 5: ${PASSES[p] ?? ''}`);
        }
        const pct = max > 0 ? Math.floor((100 * cur) / max) : 0;
        if (pct !== shown) {
          shown = pct;
          ctx.reporter.progress?.(`pass ${p} of 5, ${pct}%`);
        }
      },
    };
    return Promise.resolve([
      runTask(cmd, async () => {
        const r = await ctx.runner.run(cmd);
        // Exit bits: 1 errors fixed, 2 reboot advised (root fs only); 4 and up: not fixed, or e2fsck failed.
        if ((r.exitCode & ~3) === 0) {
          ctx.reporter.line(`e2fsck: ${r.exitCode === 0 ? 'clean' : 'errors found and fixed'}`);
          return;
        }
        throw new HbsError(
          `e2fsck found problems in ${image} that it will not fix unattended (exit ${r.exitCode}); the filesystem was not resized and is left unmounted${ctx.facts.crypt ? ` (${image} stays open for that)` : ''}`,
          EXIT.failed,
          `run \`e2fsck -f ${image}\` yourself, then re-run the same hbs grow to finish, and mount ${ctx.cfg.filesystem.mountPoint} again`,
          (r.stdout.replace(/^\d \d+ \d+ .*\n?/gm, '') + r.stderr).trim().split('\n').slice(-8).join('\n'),
        );
      }),
    ]);
  },
};

export const offlineResizeStep: Step<GrowContext> = {
  id: 'fs-offline',
  title: 'Grow ext4 offline',
  check(ctx) {
    return Promise.resolve(fsDone(ctx) ?? { done: false });
  },
  plan(ctx) {
    // No size: resize2fs grows the filesystem to the end of the (already extended) image.
    return Promise.resolve([{ kind: 'run', cmd: { argv: ['resize2fs', offlineDevice(ctx)], timeoutMs: HOURS } }]);
  },
};

export const remountStep: Step<GrowContext> = {
  id: 'fs-remount',
  title: 'Mount the filesystem again',
  check() {
    return Promise.resolve({ done: false });
  },
  plan(ctx) {
    const { cfg } = ctx;
    // The recorded options as they are: noinit_itable stays (no background zeroing of the new inode tables).
    return Promise.resolve([
      { kind: 'run', cmd: { argv: mountArgv(offlineDevice(ctx), cfg.filesystem.mountPoint, cfg.filesystem.mountOptions), timeoutMs: 120_000 } },
      directIoTask(ctx.runner, ctx.reporter, cfg.filesystem.mountPoint, cfg.encryption?.mapperName),
    ]);
  },
};

/** After the change: the image has the new size and the filesystem in it spans all of it. */
export const verifyStep: Step<GrowContext> = {
  id: 'verify',
  title: 'Check that ext4 spans the image',
  async check(ctx) {
    if (ctx.runner.dryRun) return { done: true, detail: 'checked after a real run' };
    const { image } = ctx.facts;
    const mp = ctx.cfg.filesystem.mountPoint;
    const file = await statFile(ctx.runner, image);
    if (!file || file.sizeBytes < target(ctx)) {
      throw new HbsError(`${image} is ${file ? formatSize(file.sizeBytes) : 'gone'}, not the ${formatSize(target(ctx))} it was grown to`, EXIT.failed, 're-run the same hbs grow');
    }
    const m = await mountAt(ctx.runner, mp);
    const c = ctx.facts.crypt;
    const backing = !m ? undefined : c ? (m.source === c.mapper ? (await mappingActive(ctx.runner, c.name))?.backing : undefined) : await loopBackingFile(ctx.runner, m.source);
    const device = m && backing === image ? m.source : undefined;
    if (ctx.decision.mounted && !device) {
      throw new HbsError(`${image} is not mounted at ${mp} again`, EXIT.failed, `mount it with \`hbs mount\` (the grow itself is finished if a re-run says so)`);
    }
    const g: FsGeometry = await readGeometry(ctx.runner, device ?? offlineDevice(ctx));
    if (!covers(g, file.sizeBytes - ctx.facts.payloadOffset, true)) {
      throw new HbsError(
        `after the resize, ext4 spans ${formatSize(fsBytes(g))} (${g.blockCount} blocks) but the image is ${formatSize(file.sizeBytes)}${ctx.facts.payloadOffset ? ` (${formatSize(ctx.facts.payloadOffset)} of it the LUKS2 header)` : ''}`,
        EXIT.failed,
        're-run the same hbs grow: it finishes from the filesystem\'s own size',
      );
    }
    ctx.state.after = g;
    ctx.state.afterDevice = device;
    const header = ctx.facts.payloadOffset ? ` (after its ${formatSize(ctx.facts.payloadOffset)} LUKS2 header)` : '';
    return { done: true, detail: `${g.blockCount} blocks of ${g.blockSize} bytes = ${formatSize(fsBytes(g))} in a ${formatSize(file.sizeBytes)} image${header}` };
  },
  plan() {
    return Promise.resolve([]);
  },
};

export const configStep: Step<GrowContext> = {
  id: 'grow-config',
  title: 'Record the new size in the config',
  check(ctx) {
    const recorded = ctx.cfg.image.sizeBytes;
    return Promise.resolve(recorded === target(ctx) ? { done: true, detail: `${ctx.configPath} records ${formatSize(recorded)}` } : { done: false });
  },
  plan(ctx) {
    const next = { ...ctx.cfg, image: { ...ctx.cfg.image, sizeBytes: target(ctx) } };
    return Promise.resolve([{ kind: 'write', path: ctx.configPath, content: serializeConfig(next), mode: 0o600 }]);
  },
};

/**
 * The filesystem steps of a path. Unmounted, the offline path needs nobody's consent: nothing is
 * taken away. Encrypted and unmounted, a closed mapping is opened (with the extended file's size);
 * one found open is refreshed and resized like a mounted one. The mounted offline path only comes
 * after the online attempt, which has already brought loop device and mapping to the new size.
 */
export function fsSteps(d: Pick<GrowDecision, 'mounted'>, path: 'online' | 'offline' | 'offline-first', crypt?: Pick<CryptFacts, 'open'>): Step<GrowContext>[] {
  // Encrypted and mounted, offline by choice: unmount first, then the mapping grows and ext4 with
  // it offline, where resize2fs leaves the new inode tables uninitialised (online, the kernel writes
  // them: ciphertext the box counts in full).
  if (path === 'offline-first' && d.mounted && crypt) return [unmountStep, refreshLoopStep, cryptResizeStep, fsckStep, offlineResizeStep, remountStep];
  if (!d.mounted) {
    if (!crypt) return [fsckStep, offlineResizeStep];
    return crypt.open ? [refreshLoopStep, cryptResizeStep, fsckStep, offlineResizeStep] : [openCryptStep, fsckStep, offlineResizeStep];
  }
  if (path !== 'offline') return crypt ? [refreshLoopStep, cryptResizeStep, onlineResizeStep] : [refreshLoopStep, onlineResizeStep];
  return [unmountStep, fsckStep, offlineResizeStep, remountStep];
}

/** After the change: check, close a mapping the grow opened, and only then record the size. */
export function finishSteps(d: Pick<GrowDecision, 'mounted'>, crypt?: Pick<CryptFacts, 'open'>): readonly Step<GrowContext>[] {
  return crypt && !crypt.open && !d.mounted ? [verifyStep, closeCryptStep, configStep] : [verifyStep, configStep];
}
