import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { UsageError } from '../core/errors.js';
import { MemoryReporter } from '../core/reporter.js';
import { lastBackupPath, lastBackupSchema, type LastBackup } from '../lib/backup.js';
import { readConfig } from '../lib/config.js';
import { siblingConfigs } from '../lib/siblings.js';
import type { StatusReport } from '../lib/status-report.js';
import { isHealthy, STATUS_STEPS, type StatusCtx } from '../steps/status.js';
import { executor, loadStack, machine, stepCtx, type CommandIo, type CommonFlags } from './shared.js';

/** Reads every layer (read-only); the caller prints the report and turns `healthy` into the exit code. */
export async function statusCommand(flags: CommonFlags, io: CommandIo): Promise<StatusReport> {
  const { stack } = await loadStack(flags.config);
  const m = machine(io, Boolean(flags.verbose));
  // The report is the output: the steps' own lines would only repeat it.
  const quiet = { ...io, reporter: new MemoryReporter() };
  const ctx: StatusCtx = { ...stepCtx(stack, quiet, m), report: {} };
  await executor(quiet, m.runner, {}, '`hbs status` reads only; re-run it', m.deps).run(ctx, STATUS_STEPS);
  const r = ctx.report as Omit<StatusReport, 'healthy' | 'config'>;
  const body = { box: r.box, image: r.image, filesystem: r.filesystem, space: r.space, fstab: r.fstab, lock: r.lock, encryption: r.encryption, boot: r.boot };
  return { config: stack.configPath, healthy: isHealthy({ config: stack.configPath, ...body }), ...body, lastBackup: await readLastBackup(stack.configPath) };
}

/** The record `hbs backup` leaves next to the config; null before the first run (or when it cannot be read). */
async function readLastBackup(configPath: string): Promise<LastBackup | null> {
  try {
    return lastBackupSchema.parse(JSON.parse(await readFile(lastBackupPath(configPath), 'utf8')));
  } catch {
    return null;
  }
}

/** `hbs status --all`: one entry per config in the config directory. */
export interface StatusAll {
  /** Every config healthy (and at least one). */
  healthy: boolean;
  configs: { config: string; healthy: boolean; summary: string; error: string | null; report: StatusReport | null }[];
}

/** Why a report is not healthy, in a few words: the first layer that is not as it should be. */
export function unhealthyBecause(r: StatusReport): string {
  if (r.box.state !== 'up') return `box ${r.box.state}`;
  if (!r.image.exists) return 'image missing';
  if (r.encryption && r.encryption.state !== 'open') return `encryption ${r.encryption.state}`;
  if (r.filesystem.state !== 'up') return `filesystem ${r.filesystem.state}`;
  if ((r.filesystem.errors?.count ?? 0) > 0 || (r.filesystem.errors?.kernel.lines ?? 0) > 0) return 'write errors';
  if (r.space?.ok === false) return 'box space short';
  if (r.lock.state !== 'ours') return `lock ${r.lock.state}`;
  if (r.fstab.state !== 'ok' && r.fstab.state !== 'disabled') return `fstab ${r.fstab.state}`;
  if (r.boot.state === 'missing') return 'boot unit missing';
  if (r.encryption && !r.encryption.headerBackup.present) return 'header backup missing';
  return 'crypttab line missing';
}

/** Every config in the directory of `flags.config` (*.json that read as hbs configs), each read as `hbs status` does. */
export async function statusAllCommand(flags: CommonFlags, io: CommandIo): Promise<StatusAll> {
  const me = resolve(flags.config);
  const paths = [...new Set([...((await readConfig(me).catch(() => undefined)) ? [me] : []), ...(await siblingConfigs(me)).map((s) => s.path)])].sort();
  if (paths.length === 0) throw new UsageError(`no hbs config in ${dirname(me)}`, 'run `hbs init` first, or pass --config with a path in the directory to list');
  const configs: StatusAll['configs'] = [];
  for (const config of paths) {
    try {
      const report = await statusCommand({ ...flags, config }, io);
      const summary = report.healthy ? `healthy: ${report.filesystem.mountPoint} (${report.box.source}, ${report.image.path})` : `NOT healthy: ${unhealthyBecause(report)} — ${report.filesystem.mountPoint}`;
      configs.push({ config, healthy: report.healthy, summary, error: null, report });
    } catch (err) {
      configs.push({ config, healthy: false, summary: `cannot read it: ${(err as Error).message}`, error: (err as Error).message, report: null });
    }
  }
  return { healthy: configs.every((c) => c.healthy), configs };
}
