import { resolve } from 'node:path';
import { AbortError, UsageError } from '../core/errors.js';
import { CapturingReporter } from '../core/reporter.js';
import type { Step } from '../core/step.js';
import { readConfig } from '../lib/config.js';
import { siblingConfigs } from '../lib/siblings.js';
import { stackFromConfig, type Stack } from '../lib/stack.js';
import { DEFAULT_SYSTEMD_DIR, configUnitName, escapePath } from '../lib/systemd.js';
import { boxMountStep } from '../steps/box.js';
import { leftoversStep } from '../steps/leftovers.js';
import { downSteps } from '../steps/stack.js';
import {
  boxKeyRemoveStep,
  configRemoveStep,
  crypttabRemoveStep,
  downFirstStep,
  fstabRemoveStep,
  imageDeleteStep,
  keptKeyRemoveStep,
  knownHostsRemoveStep,
  mountDirsRemoveStep,
  sshKeyRemoveStep,
  unitsRemoveStep,
  type UninstallCtx,
  type UninstallFacts,
} from '../steps/uninstall.js';
import { DRY_RUN_DONE, DRY_RUN_INTRO, executor, machine, requireReady, stepCtx, type CommandIo, type CommonFlags } from './shared.js';

export interface UninstallFlags extends CommonFlags {
  /** Keep the SSH key pair (by default it goes when hbs made it and no other config uses it). */
  keepKey?: boolean;
  /** Remove hbs's key from the box's authorized_keys (only its lines). */
  removeBoxKey?: boolean;
  /** Delete the image on the box too: only after its name is typed at a prompt. */
  deleteImage?: boolean;
  /** Where the units are, when not in the recorded directory. */
  systemdDir?: string;
  /** A busy filesystem is detached lazily (as `hbs umount --force`). */
  force?: boolean;
}

const HINT = 're-running `hbs uninstall` is safe: what is gone already is skipped';

/**
 * `hbs uninstall`: the stack taken down as `hbs umount` does, then what hbs added on this machine
 * for the config removed, the config last. The image (and its data) on the box stays, and so does
 * the LUKS header backup; `--delete-image` deletes the image only after its name is typed.
 */
export function uninstallSteps(stack: Stack, flags: Pick<UninstallFlags, 'removeBoxKey' | 'deleteImage' | 'force'>): Step<UninstallCtx>[] {
  const down = downSteps(stack, { force: flags.force }) as Step<UninstallCtx>[];
  const box = down.findIndex((s) => s.id === 'box-unmount');
  const way = flags.deleteImage ? [boxMountStep as Step<UninstallCtx>, ...down.slice(0, box), imageDeleteStep, ...down.slice(box)] : down;
  return [
    // A killed run's temporary mount of the account's home (--remove-box-key) goes first.
    leftoversStep,
    // Before the box goes (and before the local key does): the key itself logs in to remove itself.
    ...(flags.removeBoxKey ? [boxKeyRemoveStep] : []),
    ...way,
    downFirstStep,
    unitsRemoveStep,
    ...(stack.crypt?.crypttab ? [crypttabRemoveStep] : []),
    fstabRemoveStep,
    knownHostsRemoveStep,
    ...(stack.crypt?.unattendedKeyFile ? [keptKeyRemoveStep] : []),
    sshKeyRemoveStep,
    mountDirsRemoveStep,
    configRemoveStep,
  ];
}

/** Why the SSH key pair stays, or undefined when it goes. */
function keepSshKeyReason(facts: Omit<UninstallFacts, 'keepSshKey'>, flags: UninstallFlags): string | undefined {
  const key = facts.cfg.ssh.key;
  if (flags.keepKey) return `${key} (--keep-key)`;
  const user = facts.siblings.find((s) => s.cfg.ssh.key === key);
  if (user) return `${key}: ${user.path} uses it too`;
  if (facts.cfg.ssh.generated !== true) return `${key}: the config does not record that hbs made it (only a key hbs made goes)`;
  return undefined;
}

export async function uninstallCommand(flags: UninstallFlags, io: CommandIo): Promise<void> {
  const configPath = resolve(flags.config);
  const cfg = await readConfig(configPath);
  if (!cfg) {
    const id = escapePath(configPath);
    throw new UsageError(
      `no config at ${configPath}: hbs cannot know what it set up for it (box, image, key, mount points); nothing was changed`,
      `if an uninstall already finished, nothing is left; otherwise look for the hbs block "(${configPath})" in /etc/fstab and /etc/crypttab, and units named hbs-*@${id}.* (e.g. ${configUnitName(configPath)}) in ${DEFAULT_SYSTEMD_DIR}`,
    );
  }
  const stack = stackFromConfig(cfg, configPath);
  const siblings = await siblingConfigs(configPath);
  if (flags.removeBoxKey) {
    const other = siblings.find((s) => s.cfg.ssh.key === cfg.ssh.key && s.cfg.box.user === cfg.box.user && s.cfg.box.host === cfg.box.host);
    if (other) throw new UsageError(`--remove-box-key: ${other.path} logs in to ${cfg.box.user}@${cfg.box.host} with the same key ${cfg.ssh.key}; removing it would lock that config out`, 'leave out --remove-box-key');
  }
  // Before anything changes: deleting the image needs its name typed, which --yes alone never is.
  const prompter = io.prompter && (!flags.yes || flags.deleteImage) ? await io.prompter() : undefined;
  if (flags.deleteImage && !prompter && !flags.dryRun) {
    throw new UsageError('--delete-image deletes the image and all its data: it needs the image name typed at a prompt, which --yes or a missing terminal cannot do');
  }
  if (!flags.yes && !prompter && !flags.dryRun) throw new UsageError('hbs uninstall removes what hbs set up here: confirm in a terminal, or add --yes', 'see the list first with --dry-run');
  await requireReady('uninstall', Boolean(stack.crypt), io);

  const m = machine(io, Boolean(flags.verbose));
  // The boot unit's directory and the backup timer's (or the one --systemd-dir names).
  const dirs = flags.systemdDir ? [resolve(flags.systemdDir)] : [...new Set([cfg.systemd?.dir, cfg.backup?.timer?.dir].filter((d): d is string => Boolean(d)))];
  const running = dirs.length ? await m.probes.systemdRunning() : false;
  const base = { cfg, systemd: dirs.map((dir) => ({ dir, live: running && dir === DEFAULT_SYSTEMD_DIR })), siblings };
  const facts: UninstallFacts = { ...base, keepSshKey: keepSshKeyReason(base, flags) };
  const steps = uninstallSteps(stack, flags);
  const ctxFor = (reporter: CommandIo['reporter']): UninstallCtx => ({ ...stepCtx(stack, { ...io, reporter }, m), u: facts });
  const r = io.reporter;

  if (flags.dryRun) {
    r.info(DRY_RUN_INTRO);
    await executor(io, m.runner, flags, HINT, m.deps).run(ctxFor(r), steps);
    kept(r, stack, facts, flags);
    r.info(DRY_RUN_DONE);
    return;
  }

  // The list first (the plan a dry-run prints), then one question.
  const plan = new CapturingReporter();
  await executor({ ...io, reporter: plan }, m.runner, { dryRun: true }, HINT, m.deps).run(ctxFor(plan), steps);
  r.info(`Uninstalling ${configPath}: lines starting with ! are the changes.\n`);
  plan.replay(r);
  kept(r, stack, facts, flags);
  if (!plan.changes) {
    r.info('\nNothing to remove: everything is gone already.');
    return;
  }
  if (flags.deleteImage) {
    const typed = await prompter!.input({ message: `--delete-image DELETES ${stack.image.path} and all its data on the box. Type the image name (${stack.image.name}) to delete it, anything else to stop` });
    if (typed !== stack.image.name) throw new AbortError(`"${typed}" is not "${stack.image.name}"; nothing was changed`);
  }
  if (!flags.yes) {
    const ok = await prompter!.confirm({ message: 'Remove all of this?', default: false });
    if (!ok) throw new AbortError('answered no; nothing was changed');
  }
  r.info('');
  await executor(io, m.runner, flags, HINT, m.deps).run(ctxFor(r), steps);
  r.info(`\nUninstalled ${configPath}.`);
  if (!flags.deleteImage) r.info(`\`hbs init --adopt\` with the same box and image brings it back (see docs/uninstall.md).`);
}

/** What stays, said every time: the image (unless deleted), the header backup, the SSH key if kept. */
function kept(r: CommandIo['reporter'], stack: Stack, facts: UninstallFacts, flags: UninstallFlags): void {
  r.info('\nKept:');
  if (!flags.deleteImage) r.info(`  the image and its data on the box: ${stack.conn.user}@${stack.conn.host}:${stack.conn.remotePath ? stack.conn.remotePath + '/' : ''}${stack.image.name}`);
  if (stack.crypt) r.info(`  the LUKS header backup: ${stack.crypt.headerBackup} (never deleted by hbs; remove it yourself once you no longer need it)`);
  if (facts.keepSshKey) r.info(`  the SSH key ${facts.keepSshKey}`);
  if (!flags.removeBoxKey) r.info(`  hbs's key in the box's authorized_keys (--remove-box-key removes it)`);
}
