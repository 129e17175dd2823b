import { readFile } from 'node:fs/promises';
import { MemoryReporter } from '../core/reporter.js';
import { lastBackupPath, lastBackupSchema, type LastBackup } from '../lib/backup.js';
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
