import { EXIT, HbsError } from '../core/errors.js';
import { CommandError, formatCmd, type Cmd, type CmdResult } from '../core/runner.js';
import { probeStep, type Check, type Step } from '../core/step.js';
import { serializeConfig, type Config } from '../lib/config.js';
import { covers, fsBytes, type FsGeometry } from '../lib/ext4.js';
import { inspectBox, inspectFs } from '../lib/inspect.js';
import { luksResizeCmd } from '../lib/luks.js';
import { formatSize } from '../lib/size.js';
import type { StepCtx } from './context.js';
import { undoFile, undoInterruptedResizeStep, undoMarkFile } from './undo.js';
import { undoMarkOf } from '../lib/e2undo.js';
import { cryptCloseStep, cryptOpenStep, keyFor } from './crypt.js';
import { loopBufferedStep, fsckStep, fsMountStep, fsUnmountStep, loopDetachStep } from './fs.js';

/**
 * The layers of the stack, bottom to top: image file → loop device → (LUKS2 mapping) → ext4.
 * Growing goes bottom up, each layer taking the new size of the one below. Encrypted, a
 * `cryptsetup resize NAME` step follows the loop refresh, and offline the mapping is opened (and
 * closed again) around e2fsck/resize2fs, which then work on /dev/mapper/NAME instead of the image.
 */

/** The state of the stack before anything changes, read with read-only probes. */
export interface GrowFacts {
  file: {
    sizeBytes: number;
    /** Bytes the image really occupies on the box (the box's own `du`); undefined when it cannot be asked. */
    allocatedBytes?: number;
  };
  /** The filesystem's size from its superblock; undefined behind a closed mapping (read once the grow opened it). */
  fs?: FsGeometry;
  /** The device the filesystem is mounted from (loop device, or /dev/mapper/NAME); undefined when it is not mounted. */
  device?: string;
  /** Bytes before the filesystem starts in the image: the LUKS2 header (its data offset), 0 when not encrypted. */
  payloadOffset: number;
  crypt?: CryptFacts;
  box: { totalBytes: number; freeBytes: number };
  canResizeOnline: boolean | undefined;
}

/** The LUKS2 layer of an encrypted image. */
export interface CryptFacts {
  open: boolean;
  /** The loop device under the open mapping. */
  loop?: string;
  /** The open mapping's size in bytes. */
  mapperBytes?: number;
  /** Whether `cryptsetup resize` will want the key (volume key in the kernel keyring, LUKS2's default). */
  resizeNeedsKey: boolean;
}

/** What `hbs grow` will do, decided from the facts and the requested size. */
export interface GrowDecision {
  /** The request as the person gave it, with the size it means ("--size +1G (3 GiB: …)"). */
  asked: string;
  fromBytes: number;
  /** The filesystem's size now; undefined when it is behind a key (closed mapping). */
  fsBytes?: number;
  targetBytes: number;
  /** Set when an earlier grow stopped halfway: what is left, for the person. */
  resume?: string;
  /** The image and the filesystem are already grown; only the config lags behind. */
  configOnly: boolean;
  mounted: boolean;
  /** The kernel will refuse an online resize for certain (no CAP_SYS_RESOURCE). */
  onlineRefusalExpected: boolean;
  /** Encrypted: the grow needs the key (to open the mapping, or for `cryptsetup resize`). */
  keyNeeded: boolean;
}

export interface GrowCtx extends StepCtx {
  cfg: Config;
  facts: GrowFacts;
  decision: GrowDecision;
  /** What the steps learn: the filesystem's size once an opened mapping shows it, and after the grow. */
  state: { after?: FsGeometry; afterDevice?: string; fs?: FsGeometry };
}

/** The kernel said no to growing the mounted filesystem (EPERM: no CAP_SYS_RESOURCE). Nothing changed in ext4. */
export class OnlineResizeRefused extends HbsError {
  constructor(readonly said: string) {
    super(`the kernel refused to grow the mounted filesystem online: ${said}`, EXIT.failed);
    this.name = 'OnlineResizeRefused';
  }
}

const ONLINE_REFUSED = /Permission denied to resize filesystem|Operation not permitted/i;
const HOURS = 24 * 60 * 60_000;
export const RESUME_HINT = 're-run the same `hbs grow` command: it sees how far the last run got and finishes the job';

const target = (ctx: GrowCtx): number => ctx.decision.targetBytes;
/** Bytes the filesystem's device will have: the image minus the LUKS2 header when encrypted. */
const fsTarget = (ctx: GrowCtx): number => target(ctx) - ctx.facts.payloadOffset;
/** The loop device under the filesystem (or under the mapping). */
const loopDevice = (ctx: GrowCtx): string => (ctx.facts.crypt ? ctx.facts.crypt.loop : ctx.facts.device) as string;

export const growFileStep: Step<GrowCtx> = {
  id: 'grow-file',
  title: 'Extend the image file',
  check(ctx) {
    const size = ctx.facts.file.sizeBytes;
    return Promise.resolve(size >= target(ctx) ? { done: true, detail: `${ctx.stack.image.path} is already ${formatSize(size)}` } : { done: false });
  },
  async plan(ctx) {
    const image = ctx.stack.image.path;
    const before = ctx.facts.file.sizeBytes;
    // Looked at again right before: something else may have changed the file since the facts were read.
    const now = await ctx.probe.file(image);
    if (now?.sizeBytes !== before) {
      throw new HbsError(
        `${image} changed under hbs grow: it was ${before} bytes, now ${now ? `${now.sizeBytes} bytes` : 'gone'}; nothing was changed`,
        EXIT.failed,
        'make sure nothing else works on the image, then re-run',
      );
    }
    // `>` makes truncate only ever grow the file: no size, however wrong, can cut the image.
    return [{ kind: 'run', cmd: { argv: ['truncate', `--size=>${target(ctx)}`, image], timeoutMs: 120_000 } }];
  },
};

/** The loop device keeps the size it had when attached until told to look again. */
export const refreshLoopStep: Step<GrowCtx> = {
  id: 'loop-refresh',
  title: 'Refresh the loop device size',
  async check(ctx) {
    const dev = loopDevice(ctx);
    const size = await ctx.probe.deviceBytes(dev);
    return size !== undefined && size >= target(ctx) ? { done: true, detail: `${dev} is already ${formatSize(size)}` } : { done: false };
  },
  plan: (ctx) => Promise.resolve([{ kind: 'run', cmd: { argv: ['losetup', '--set-capacity', loopDevice(ctx)] } }]),
};

/** The mapping keeps its size until told to take the (refreshed) loop device's; LUKS2 wants the key for that. */
export const cryptResizeStep: Step<GrowCtx> = {
  id: 'crypt-resize',
  title: 'Resize the LUKS2 mapping',
  async check(ctx) {
    const mapper = ctx.stack.crypt?.device as string;
    const size = await ctx.probe.deviceBytes(mapper);
    return size !== undefined && size >= fsTarget(ctx) ? { done: true, detail: `${mapper} is already ${formatSize(size)}` } : { done: false };
  },
  plan(ctx) {
    const name = ctx.stack.crypt?.mapperName as string;
    // The key only where cryptsetup will ask for it (volume key in the kernel keyring, LUKS2's default).
    const cmd: Cmd = ctx.decision.keyNeeded ? luksResizeCmd(name, keyFor(ctx)) : { argv: ['cryptsetup', 'resize', name], timeoutMs: 5 * 60_000 };
    return Promise.resolve([{ kind: 'run', cmd }]);
  },
};

/** Offline and encrypted: once the mapping is open, ext4's size is read from it. */
const readFsStep = probeStep<GrowCtx>(
  'fs-size',
  "Read ext4's size",
  async (ctx) => {
    const g = await ctx.probe.superblock(ctx.stack.fs.device);
    ctx.state.fs = g;
    return { done: true, detail: `${formatSize(fsBytes(g))} (${g.blockCount} blocks)` };
  },
  { after: ['crypt-open'], expect: () => Promise.resolve<Check>({ done: true, detail: 'read once the mapping is open' }) },
);

/** The filesystem's size as last read: from the facts, or from the mapping the grow opened. */
const knownFs = (ctx: GrowCtx): FsGeometry | undefined => ctx.state.fs ?? ctx.facts.fs;

const fsDone = (ctx: GrowCtx): Promise<Check | undefined> => {
  const g = knownFs(ctx);
  return Promise.resolve(g && covers(g, fsTarget(ctx), false) ? { done: true, detail: `ext4 already spans ${formatSize(fsBytes(g))}` } : undefined);
};

export const onlineResizeStep: Step<GrowCtx> = {
  id: 'fs-online',
  title: 'Grow ext4 online (mounted)',
  async check(ctx) {
    return (await fsDone(ctx)) ?? { done: false };
  },
  plan(ctx) {
    const cmd: Cmd = { argv: ['resize2fs', ctx.facts.device as string], allowFail: true, timeoutMs: HOURS };
    return Promise.resolve([
      {
        kind: 'run',
        cmd,
        then: (r: CmdResult) => {
          if (r.exitCode === 0) return;
          const said = r.stderr.trim().split('\n').filter((l) => !/^resize2fs \d/.test(l)).join('; ');
          if (ONLINE_REFUSED.test(r.stderr)) throw new OnlineResizeRefused(said);
          throw new CommandError(formatCmd(cmd), r);
        },
      },
    ]);
  },
};

const growFsck = fsckStep<GrowCtx>({
  force: true,
  progress: true,
  skip: fsDone,
  after: ['crypt-open', 'fs-unmount'],
  leftAs: 'the filesystem was not resized and is left unmounted',
  hint: (device, log) => `run \`e2fsck -f ${device}\` yourself (the log is ${log}), then re-run the same hbs grow to finish, and \`hbs mount\``,
});

export const offlineResizeStep: Step<GrowCtx> = {
  id: 'fs-offline',
  title: 'Grow ext4 offline',
  async check(ctx) {
    return (await fsDone(ctx)) ?? { done: false };
  },
  // No size: resize2fs grows the filesystem to the end of the (already extended) image. -z keeps,
  // on this machine, what it overwrites: resize2fs is not crash safe, and a run killed halfway is
  // undone from it (e2undo, steps/undo.ts) before anything else touches the filesystem. The mark
  // written first records what only a mount or an e2fsck changes: the undo then knows nothing did.
  async plan(ctx) {
    const s = ctx.stack;
    const mark = undoMarkOf(await ctx.probe.superblock(s.fs.device));
    return [
      { kind: 'mkdir', path: s.logDir, mode: 0o700 },
      { kind: 'write', path: undoMarkFile(s), content: JSON.stringify(mark) + '\n', mode: 0o600, how: 'atomic', what: 'the filesystem before the resize' },
      { kind: 'run', cmd: { argv: ['resize2fs', '-z', undoFile(s), s.fs.device], timeoutMs: HOURS } },
      { kind: 'remove', path: undoFile(s), what: 'the resize finished: nothing to undo' },
      { kind: 'remove', path: undoMarkFile(s), what: 'and its record' },
    ];
  },
};

const unmount = fsUnmountStep({ busyHint: 'stop what uses it (e.g. a running backup), then re-run the same hbs grow: it picks up where it stopped' });

/** After the change: the image has the new size and the filesystem in it spans all of it. */
export const verifyStep = probeStep<GrowCtx>(
  'verify',
  'Check that ext4 spans the image',
  async (ctx) => {
    const s = ctx.stack;
    const image = s.image.path;
    const file = await ctx.probe.file(image);
    if (!file || file.sizeBytes < target(ctx)) {
      throw new HbsError(`${image} is ${file ? formatSize(file.sizeBytes) : 'gone'}, not the ${formatSize(target(ctx))} it was grown to`, EXIT.failed, 're-run the same hbs grow');
    }
    const fs = await inspectFs(ctx.probe, s, await inspectBox(ctx.probe, s));
    const device = fs.state === 'up' ? fs.device : undefined;
    if (ctx.decision.mounted && !device) {
      throw new HbsError(`${image} is not mounted at ${s.fs.mountPoint} again`, EXIT.failed, 'mount it with `hbs mount` (the grow itself is finished if a re-run says so)');
    }
    const g = await ctx.probe.superblock(device ?? s.fs.device);
    if (!covers(g, file.sizeBytes - ctx.facts.payloadOffset, true)) {
      throw new HbsError(
        `after the resize, ext4 spans ${formatSize(fsBytes(g))} (${g.blockCount} blocks) but the image is ${formatSize(file.sizeBytes)}${ctx.facts.payloadOffset ? ` (${formatSize(ctx.facts.payloadOffset)} of it the LUKS2 header)` : ''}`,
        EXIT.failed,
        "re-run the same hbs grow: it finishes from the filesystem's own size",
      );
    }
    ctx.state.after = g;
    ctx.state.afterDevice = device;
    const header = ctx.facts.payloadOffset ? ` (after its ${formatSize(ctx.facts.payloadOffset)} LUKS2 header)` : '';
    return { done: true, detail: `${g.blockCount} blocks of ${g.blockSize} bytes = ${formatSize(fsBytes(g))} in a ${formatSize(file.sizeBytes)} image${header}` };
  },
  {
    after: ['grow-file', 'loop-refresh', 'crypt-resize', 'fs-online', 'fs-offline', 'fs-mount'],
    expect: () => Promise.resolve<Check>({ done: true, detail: 'checked after a real run' }),
  },
);

export const growConfigStep: Step<GrowCtx> = {
  id: 'grow-config',
  title: 'Record the new size in the config',
  check(ctx) {
    const recorded = ctx.cfg.image.sizeBytes;
    return Promise.resolve(recorded === target(ctx) ? { done: true, detail: `${ctx.stack.configPath} records ${formatSize(recorded)}` } : { done: false });
  },
  plan(ctx) {
    const next = { ...ctx.cfg, image: { ...ctx.cfg.image, sizeBytes: target(ctx) } };
    return Promise.resolve([{ kind: 'write', path: ctx.stack.configPath, content: serializeConfig(next), mode: 0o600, how: 'atomic' }]);
  },
};

const remount: readonly Step<GrowCtx>[] = [fsMountStep, loopBufferedStep];

/**
 * The filesystem steps of a path. Unmounted, the offline path needs nobody's consent: nothing is
 * taken away. Encrypted and unmounted, a closed mapping is opened (with the extended file's size);
 * one found open is refreshed and resized like a mounted one. The mounted offline path only comes
 * after the online attempt, which has already brought loop device and mapping to the new size.
 */
export function fsSteps(d: Pick<GrowDecision, 'mounted'>, path: 'online' | 'offline' | 'offline-first', crypt?: Pick<CryptFacts, 'open'>): Step<GrowCtx>[] {
  // Encrypted and mounted, offline by choice: unmount first, then the mapping grows and ext4 with
  // it offline, where resize2fs leaves the new inode tables uninitialised (online, the kernel writes
  // them: ciphertext the box counts in full).
  const undo = undoInterruptedResizeStep;
  if (path === 'offline-first' && d.mounted && crypt) return [unmount, refreshLoopStep, cryptResizeStep, growFsck, offlineResizeStep, ...remount];
  if (!d.mounted) {
    if (!crypt) return [undo, growFsck, offlineResizeStep];
    return crypt.open ? [undo, refreshLoopStep, cryptResizeStep, growFsck, offlineResizeStep] : [cryptOpenStep, undo, readFsStep, growFsck, offlineResizeStep];
  }
  if (path !== 'offline') return crypt ? [refreshLoopStep, cryptResizeStep, onlineResizeStep] : [refreshLoopStep, onlineResizeStep];
  // Encrypted, the mapping stays open (and holds its loop device): e2fsck and resize2fs use it.
  return [unmount, ...(crypt ? [] : [loopDetachStep]), growFsck, offlineResizeStep, ...remount];
}

/** After the change: check, close a mapping the grow opened, and only then record the size. */
export function finishSteps(d: Pick<GrowDecision, 'mounted'>, crypt?: Pick<CryptFacts, 'open'>): readonly Step<GrowCtx>[] {
  return crypt && !crypt.open && !d.mounted ? [verifyStep, cryptCloseStep, growConfigStep] : [verifyStep, growConfigStep];
}
