import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Action } from '../core/action.js';
import { readTextIfExists } from '../core/files.js';
import type { Step } from '../core/step.js';
import { backupServiceText, backupTimerText, backupUnitNames, TIMERS_TARGET } from '../lib/systemd.js';
import type { StepCtx } from './context.js';

export interface TimerOptions {
  dir: string;
  /** systemd runs this machine and dir is where it looks: reload it and start the timer. */
  live: boolean;
  onCalendar: string;
  hbs: readonly string[];
  configPath: string;
  /** The stack has the boot unit: the service orders itself after it. */
  bootUnit: boolean;
}

/** The backup service and its timer for one config, the timer enabled (its link in timers.target.wants, as `systemctl enable` makes). */
export function timerStep(o: TimerOptions): { step: Step<StepCtx>; names: { service: string; timer: string } } {
  const names = backupUnitNames(o.configPath);
  const service = backupServiceText(o.hbs, o.configPath, { bootUnit: o.bootUnit });
  const timer = backupTimerText(o.configPath, o.onCalendar);
  const link = join(o.dir, `${TIMERS_TARGET}.wants`, names.timer);
  const step: Step<StepCtx> = {
    id: 'backup-timer',
    title: `systemd timer (hbs backup, ${o.onCalendar})`,
    async check() {
      const same = (await readTextIfExists(join(o.dir, names.service))) === service && (await readTextIfExists(join(o.dir, names.timer))) === timer;
      const linked = (await readlink(link).catch(() => undefined)) === join(o.dir, names.timer);
      return same && linked ? { done: true, detail: `${names.timer} is installed and enabled` } : { done: false, detail: `${names.timer} enabled` };
    },
    plan() {
      const actions: Action[] = [
        { kind: 'mkdir', path: o.dir, mode: 0o755 },
        { kind: 'write', path: join(o.dir, names.service), content: service, mode: 0o644, how: 'atomic', show: true, what: 'runs hbs backup for this config' },
        { kind: 'write', path: join(o.dir, names.timer), content: timer, mode: 0o644, how: 'atomic', show: true, what: 'starts it' },
        { kind: 'symlink', path: link, target: join(o.dir, names.timer), what: `enables ${names.timer}` },
      ];
      if (o.live) {
        actions.push(
          { kind: 'run', cmd: { argv: ['systemctl', 'daemon-reload'], timeoutMs: 120_000 } },
          { kind: 'run', cmd: { argv: ['systemctl', 'restart', names.timer], timeoutMs: 120_000 } },
        );
      }
      return Promise.resolve(actions);
    },
  };
  return { step, names };
}
