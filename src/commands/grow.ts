import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortError, EXIT, HbsError, PreflightError, UsageError } from '../core/errors.js';
import { DryRunRunner } from '../core/dry-run-runner.js';
import { RealRunner } from '../core/real-runner.js';
import type { Runner } from '../core/runner.js';
import { readConfig } from '../lib/config.js';
import { formatSize } from '../lib/size.js';
import { describeMissing, packagesFor, which, type Missing } from '../init/preflight.js';
import type { Prompter } from '../init/prompter.js';
import { readMachineId } from '../lifecycle/context.js';
import { keySource } from './lifecycle.js';
import { growKey } from '../grow/key.js';
import { canResizeOnline } from '../grow/capability.js';
import type { GrowContext, GrowDecision, GrowDeps, GrowFacts } from '../grow/context.js';
import { decideGrow } from '../grow/decide.js';
import { gatherFacts } from '../grow/facts.js';
import { fsBytes, type FsGeometry } from '../grow/geometry.js';
import { runGrowSteps } from '../grow/run-grow.js';
import { parseGrowSize, type SizeRequest } from '../grow/size-request.js';
import { finishSteps, fsSteps, growFileStep, OnlineResizeRefused } from '../grow/steps.js';
import type { Reporter } from '../ui/reporter.js';

/** Raw flags as commander hands them over. */
export interface GrowCliFlags {
  size?: string;
  config?: string;
  force?: boolean;
  offline?: boolean;
  yes?: boolean;
  dryRun?: boolean;
  verbose?: boolean;
  /** Encrypted images: a key file, or the key's exact bytes on stdin (else the config's unattended key, else a prompt). */
  luksKeyFile?: string;
  luksKeyStdin?: boolean;
}

export interface GrowIo {
  reporter: Reporter;
  /** Set when questions may be asked (a terminal); --yes turns it off. */
  prompter?: () => Promise<Prompter>;
  uid: () => number;
  /** Runs real commands; wrapped in a dry-run runner for --dry-run. */
  runner?: Runner;
  /** Raw stdin (for --luks-key-stdin). */
  readStdinBytes?: () => Promise<Buffer>;
}

export interface GrowOutcome {
  path: 'online' | 'offline' | 'config-only' | 'dry-run';
  fromBytes: number;
  targetBytes: number;
  /** Undefined when it was behind a closed mapping. */
  fsBefore?: number;
  fsAfter?: FsGeometry;
  /** How long the filesystem was away (offline path with a mounted filesystem). */
  offlineMs?: number;
}

const TOOLS: readonly { tool: string; pkg: string }[] = [
  { tool: 'truncate', pkg: 'coreutils' },
  { tool: 'stat', pkg: 'coreutils' },
  { tool: 'dd', pkg: 'coreutils' },
  { tool: 'losetup', pkg: 'mount' },
  { tool: 'mount', pkg: 'mount' },
  { tool: 'umount', pkg: 'mount' },
  { tool: 'findmnt', pkg: 'util-linux' },
  { tool: 'blkid', pkg: 'util-linux' },
  { tool: 'blockdev', pkg: 'util-linux' },
  { tool: 'e2fsck', pkg: 'e2fsprogs' },
  { tool: 'resize2fs', pkg: 'e2fsprogs' },
  { tool: 'dumpe2fs', pkg: 'e2fsprogs' },
];

export function defaultGrowDeps(pathEnv = process.env.PATH ?? ''): GrowDeps {
  return {
    now: () => new Date(),
    sleep: async (ms) => {
      await sleep(ms);
    },
    machineId: readMachineId,
    canResizeOnline,
    missingTools: async (encrypted = false) => {
      const missing: Missing[] = [];
      const tools = encrypted ? [...TOOLS, { tool: 'cryptsetup', pkg: 'cryptsetup-bin' }] : TOOLS;
      for (const { tool, pkg } of tools) if (!(await which(tool, pathEnv))) missing.push({ what: `the program ${tool}`, pkg });
      return missing;
    },
  };
}

async function preflight(io: GrowIo, deps: GrowDeps, encrypted: boolean): Promise<void> {
  const missing: Missing[] = [];
  if (io.uid() !== 0) missing.push({ what: 'root privileges (the box mount, loop devices and mounts are root\'s)', fix: 'run hbs as root, e.g. with sudo' });
  missing.push(...(await deps.missingTools(encrypted)));
  if (missing.length === 0) return;
  const pkgs = packagesFor(missing);
  throw new PreflightError(`this machine is not ready for hbs grow:\n${describeMissing(missing)}`, missing, pkgs.length ? `apt-get install ${pkgs.join(' ')}` : undefined);
}

/**
 * Taking the filesystem away needs the person's yes: --offline, or a question in a terminal.
 * Without either it fails with what to pass, never waits.
 */
async function consentToOffline(flags: GrowCliFlags, prompter: Prompter | undefined, mp: string, reason: string, state: string): Promise<void> {
  if (flags.offline) return;
  const what = `unmount ${mp}, check and grow the filesystem offline (e2fsck -f, resize2fs) and mount it again`;
  if (!prompter) {
    throw new HbsError(`${reason}; growing it offline takes ${mp} away for a while, which needs your consent; ${state}`, EXIT.failed, `re-run with --offline to ${what}`);
  }
  const ok = await prompter.confirm({
    message: `${reason}.\nUnmount ${mp}, grow it offline and mount it again? Stop backups writing to it first.`,
    default: false,
  });
  if (!ok) throw new AbortError(`the filesystem was not taken offline; ${state}`);
}

const NO_CAP =
  'online resize of a mounted ext4 needs CAP_SYS_RESOURCE, which programs started here do not get (the kernel answers "Permission denied to resize filesystem")';

export async function growCommand(flags: GrowCliFlags, io: GrowIo, deps: GrowDeps = defaultGrowDeps()): Promise<GrowOutcome> {
  const req = parseGrowSize(flags.size);
  const configPath = resolve(flags.config ?? '/etc/hbs/config.json');
  const cfg = await readConfig(configPath);
  if (!cfg) throw new UsageError(`no config at ${configPath}`, 'run `hbs init` first, or pass --config');
  await preflight(io, deps, Boolean(cfg.encryption));

  const dryRun = Boolean(flags.dryRun);
  const r = io.reporter;
  const real = io.runner ?? new RealRunner(flags.verbose ? (l) => r.line(l) : undefined);
  const runner: Runner = dryRun ? new DryRunRunner(real, (l) => r.line(l)) : real;
  const prompter = io.prompter && !flags.yes ? await io.prompter() : undefined;
  const mp = cfg.filesystem.mountPoint;
  // Encrypted: the key as `hbs mount` gets it; a conflict between the flags is refused before any probe.
  const keys = keySource(cfg, { config: configPath, luksKeyFile: flags.luksKeyFile, luksKeyStdin: flags.luksKeyStdin }, {
    reporter: r,
    prompter: prompter ? () => Promise.resolve(prompter) : undefined,
    readStdinBytes: io.readStdinBytes,
  });

  const facts = await gatherFacts(runner, cfg, configPath, deps);
  const decision = decideGrow(facts, cfg, req, { force: Boolean(flags.force) });
  let ctx: GrowContext = { cfg, configPath, runner, reporter: r, deps, facts, decision, verbose: Boolean(flags.verbose), state: {} };
  const outcome: GrowOutcome = { path: dryRun ? 'dry-run' : 'online', fromBytes: decision.fromBytes, targetBytes: decision.targetBytes, fsBefore: decision.fsBytes };

  if (dryRun) r.info('Dry-run: lines starting with ! are changes that would be made; nothing is changed.\n');
  const inside = decision.fsBytes !== undefined ? formatSize(decision.fsBytes) : `behind the key until ${facts.crypt?.mapper ?? 'the mapping'} is open`;
  const header = facts.payloadOffset ? `, after a ${formatSize(facts.payloadOffset)} LUKS2 header` : '';
  r.info(
    `Growing ${facts.image}: ${formatSize(decision.fromBytes)} → ${formatSize(decision.targetBytes)} ` +
      `(ext4 inside: ${inside}${header}, ${decision.mounted ? `mounted at ${mp}` : 'not mounted'}).`,
  );
  if (decision.resume) r.info(`Resuming: ${decision.resume}.`);
  // Encrypted and mounted, --offline means offline from the start (see fsSteps).
  const offlineFirst = Boolean(facts.crypt && decision.mounted && !decision.configOnly && flags.offline);
  if (facts.crypt && decision.mounted && !decision.configOnly) {
    const cost = inodeTableBytes(facts, decision.targetBytes);
    const what = `the kernel's online resize writes the new block groups' inode tables${cost ? ` (about ${formatSize(cost)} here)` : ''}, and through LUKS every one of those bytes costs space on the box`;
    r.info(
      offlineFirst
        ? `Encrypted: growing offline (--offline): ${mp} is unmounted for the resize, which leaves the new inode tables uninitialised; online, ${what}.`
        : `Encrypted and mounted: ${what}. With --offline hbs unmounts ${mp} for the resize instead, which costs about 1 MiB.`,
    );
  }

  // Consent first (when certain to be needed), then the key: both before the first change.
  if (decision.onlineRefusalExpected && !dryRun && !decision.configOnly) await consentToOffline(flags, prompter, mp, NO_CAP, 'nothing was changed');
  if (decision.keyNeeded) ctx.key = await growKey(ctx, keys);

  if (decision.configOnly) {
    outcome.path = dryRun ? 'dry-run' : 'config-only';
  } else if (!decision.mounted) {
    await runGrowSteps(ctx, [growFileStep, ...fsSteps(decision, 'offline', facts.crypt)]);
    if (!dryRun) outcome.path = 'offline';
  } else {
    try {
      if (offlineFirst) {
        const started = deps.now().getTime();
        await runGrowSteps(ctx, [growFileStep, ...fsSteps(decision, 'offline-first', facts.crypt)]);
        if (!dryRun) {
          outcome.path = 'offline';
          outcome.offlineMs = deps.now().getTime() - started;
        }
      } else await runGrowSteps(ctx, [growFileStep, ...fsSteps(decision, 'online', facts.crypt)]);
      if (dryRun && !offlineFirst) explainFallback(r, decision, flags, mp);
      if (dryRun && !offlineFirst && decision.onlineRefusalExpected) await runGrowSteps(ctx, fsSteps(decision, 'offline', facts.crypt));
    } catch (err) {
      if (!(err instanceof OnlineResizeRefused)) throw err;
      r.warn(`${err.message}`);
      const state = `the image file is already ${formatSize(decision.targetBytes)} (ext4 inside is still ${formatSize(decision.fsBytes ?? 0)}); re-running the same hbs grow finishes it`;
      if (!decision.onlineRefusalExpected) await consentToOffline(flags, prompter, mp, err.message, state);
      r.info(`Taking the offline path: ${mp} is unmounted for the resize and mounted again.`);
      // Look again: the file and the loop device have changed since the first look.
      const now = await gatherFacts(runner, cfg, configPath, deps);
      ctx = { ...ctx, facts: now, decision: decideGrow(now, cfg, req, { force: Boolean(flags.force) }) };
      const started = deps.now().getTime();
      await runGrowSteps(ctx, fsSteps(ctx.decision, 'offline', now.crypt));
      outcome.path = 'offline';
      outcome.offlineMs = deps.now().getTime() - started;
    }
  }

  await runGrowSteps(ctx, finishSteps(ctx.decision, ctx.facts.crypt));
  outcome.fsAfter = ctx.state.after;
  summary(ctx, outcome, req);
  return outcome;
}

/** What the kernel's online resize writes for the new groups' inode tables (it zeroes them); undefined when unknown. */
export function inodeTableBytes(f: GrowFacts, targetBytes: number): number | undefined {
  const g = f.fs;
  if (!g?.inodesPerGroup || !g.inodeSize) return undefined;
  const groupBytes = g.blocksPerGroup * g.blockSize;
  const groups = (n: number): number => Math.ceil(n / groupBytes);
  const added = groups(targetBytes - f.payloadOffset) - groups(fsBytes(g));
  return added > 0 ? added * g.inodesPerGroup * g.inodeSize : 0;
}

function explainFallback(r: Reporter, d: GrowDecision, flags: GrowCliFlags, mp: string): void {
  if (!d.onlineRefusalExpected) {
    r.info(`If the kernel refuses the online resize, hbs offers the offline path: unmount ${mp}, e2fsck -f, resize2fs, mount again.`);
    return;
  }
  const consent = flags.offline ? '--offline gives it' : 'a real run needs it: --offline, or a yes at the question in a terminal';
  r.info(`The kernel will refuse that here (${NO_CAP}); then, with your consent (${consent}):`);
}

function summary(ctx: GrowContext, o: GrowOutcome, req: SizeRequest): void {
  const r = ctx.reporter;
  if (o.path === 'dry-run') {
    r.info('\nDry-run finished: nothing was changed on this machine or the box.');
    return;
  }
  const mp = ctx.cfg.filesystem.mountPoint;
  const after = o.fsAfter;
  const how =
    o.path === 'online'
      ? `online; ${mp} stayed mounted`
      : o.path === 'config-only'
        ? 'nothing left to resize'
        : o.offlineMs !== undefined
          ? `offline; ${mp} was unmounted for ${(o.offlineMs / 1000).toFixed(1)} s`
          : 'offline (it was not mounted)';
  r.info('');
  r.info(`Grown ${ctx.facts.image} (${req.relative ? `+${formatSize(req.bytes)}` : formatSize(req.bytes)} asked):`);
  r.info(`  image file  ${formatSize(o.fromBytes)} → ${formatSize(o.targetBytes)}`);
  const before = o.fsBefore ?? (ctx.state.fs ? fsBytes(ctx.state.fs) : undefined);
  if (after) r.info(`  ext4        ${before !== undefined ? formatSize(before) : '?'} → ${formatSize(fsBytes(after))} (${after.blockCount} blocks of ${after.blockSize} bytes)`);
  r.info(`  how         ${how}`);
  r.info(`Config ${ctx.configPath} records ${formatSize(o.targetBytes)}.`);
}
