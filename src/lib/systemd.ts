/**
 * The systemd unit that brings a stack up at boot the way `hbs mount` does — with the lock, the
 * ext4 UUID check, e2fsck when needed, loop direct I/O and the repair of a dead link — instead of
 * fstab/crypttab mounting it behind hbs's back. One template for every config on the machine; the
 * instance is the config's path, escaped as `systemd-escape --path` does: hbs-mount@etc-hbs-config.json.service.
 */
import { join } from 'node:path';

export const DEFAULT_SYSTEMD_DIR = '/etc/systemd/system';
export const TEMPLATE = 'hbs-mount@.service';
/** multi-user.target: the boot does not wait for the box (a dead link, a long e2fsck); units that need the backup filesystem order themselves after this one. */
export const WANTED_BY = 'multi-user.target';

/** `systemd-escape --path`: `/` becomes `-`, anything but [A-Za-z0-9:_.] (and a leading `.`) becomes \xNN. */
export function escapePath(path: string): string {
  const trimmed = path.replace(/\/+/g, '/').replace(/^\/|\/$/g, '');
  if (trimmed === '') return '-';
  let out = '';
  const bytes = Buffer.from(trimmed, 'utf8');
  for (let i = 0; i < bytes.length; i++) {
    const c = String.fromCharCode(bytes[i]!);
    if (c === '/') out += '-';
    else if (/[A-Za-z0-9:_]/.test(c) || (c === '.' && i > 0)) out += c;
    else out += `\\x${bytes[i]!.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/**
 * The one naming rule for every systemd unit hbs makes for a config: an instance of one of hbs's
 * templates, `hbs-<kind>@<systemd-escape --path CONFIG>.<type>` — hbs-mount@etc-hbs-config.json.service,
 * and e.g. a backup timer hbs-backup@etc-hbs-config.json.timer. `hbs uninstall` removes every unit
 * file and link whose name `isUnitOf` accepts for the config, so new kinds are removed without more code.
 */
export function configUnitName(configPath: string, kind = 'mount', type = 'service'): string {
  return `hbs-${kind}@${escapePath(configPath)}.${type}`;
}

export function unitName(configPath: string): string {
  return configUnitName(configPath);
}

/** Whether a unit file name is one of the config's units (any kind, any type), by the rule above. */
export function isUnitOf(fileName: string, configPath: string): boolean {
  const inst = `@${escapePath(configPath)}.`;
  const at = fileName.indexOf(inst);
  return /^hbs-[a-z0-9-]+$/.test(fileName.slice(0, at)) && at > 0 && /^[a-z]+$/.test(fileName.slice(at + inst.length));
}

/** Whether a unit file name is one of hbs's templates (hbs-<kind>@.<type>), shared by every config. */
export function isHbsTemplate(fileName: string): boolean {
  return /^hbs-[a-z0-9-]+@\.[a-z]+$/.test(fileName);
}

/** The template a config's unit is an instance of: hbs-mount@X.service → hbs-mount@.service. */
export function templateOf(unit: string): string {
  return unit.replace(/@.*\.([a-z]+)$/, '@.$1');
}

/** Where the instance is enabled: the .wants link of its target. */
export function wantsLink(dir: string, configPath: string): string {
  return join(dir, `${WANTED_BY}.wants`, unitName(configPath));
}

/** An argument for ExecStart= (systemd splits on white space and honours double quotes). */
function execArg(a: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `"${a.replace(/(["\\])/g, '\\$1')}"`;
}

/**
 * The template. `%f` is the instance unescaped as a path: the config. The service is oneshot and
 * stays active after `hbs mount` exits (sshfs keeps running in its cgroup); stopping it (shutdown)
 * runs `hbs umount`, and KillMode=process leaves sshfs alone, so a filesystem still in use is never
 * cut off from the box by systemd. No start timeout: an e2fsck must never be killed halfway.
 */
export function templateText(hbs: readonly string[]): string {
  const cmd = hbs.map(execArg).join(' ');
  return [
    '# Written by hbs (hbs init); one instance per config: hbs-mount@<systemd-escape --path CONFIG>.service',
    '[Unit]',
    'Description=hbs: the backup filesystem of %f (box, image, ext4), with its lock',
    'Wants=network-online.target',
    'After=network-online.target remote-fs-pre.target',
    '',
    '[Service]',
    'Type=oneshot',
    'RemainAfterExit=yes',
    `ExecStart=${cmd} --config %f mount --yes`,
    `ExecStop=${cmd} --config %f umount`,
    'TimeoutStartSec=infinity',
    'KillMode=process',
    '',
    '[Install]',
    `WantedBy=${WANTED_BY}`,
    '',
  ].join('\n');
}

/**
 * The units `hbs backup --install-timer` writes for one config: a service that runs `hbs backup` and
 * the timer that starts it. Named after the config (as the boot unit's instance is), so every unit of
 * a config is known from its path: see configUnits.
 */
export function backupUnitNames(configPath: string): { service: string; timer: string } {
  const base = `hbs-backup@${escapePath(configPath)}`;
  return { service: `${base}.service`, timer: `${base}.timer` };
}

/** Every unit file hbs may have written for a config (the boot instance is a link to the shared template). */
export function configUnits(configPath: string): { unit: string; wantedBy: string }[] {
  const b = backupUnitNames(configPath);
  return [
    { unit: unitName(configPath), wantedBy: WANTED_BY },
    { unit: b.service, wantedBy: '' },
    { unit: b.timer, wantedBy: TIMERS_TARGET },
  ];
}

export const TIMERS_TARGET = 'timers.target';
export const DEFAULT_ON_CALENDAR = 'daily';
/** Spreads the start over an hour: boxes in one data centre are not all hit at midnight. */
export const RANDOMIZED_DELAY = '1h';

/** A path in a unit file: `%` is a specifier there. */
const unitPathArg = (p: string): string => execArg(p).replace(/%/g, '%%');

/**
 * The backup service: oneshot, nice and at the lowest best-effort I/O priority (a backup must not
 * slow the machine down; the idle class could starve it for good on a busy disk). It waits
 * for the boot unit when the stack has one. KillMode=process: when `hbs backup` brought the stack up
 * itself, the sshfs it started stays in this unit's cgroup and must outlive the run.
 */
export function backupServiceText(hbs: readonly string[], configPath: string, o: { bootUnit: boolean }): string {
  const cmd = hbs.map(unitPathArg).join(' ');
  const after = ['network-online.target', ...(o.bootUnit ? [unitName(configPath)] : [])];
  return [
    `# Written by hbs (hbs backup --install-timer) for ${configPath}`,
    '[Unit]',
    `Description=hbs: back up into the filesystem of ${configPath.replace(/%/g, '%%')}`,
    'Wants=network-online.target',
    `After=${after.join(' ')}`,
    '',
    '[Service]',
    'Type=oneshot',
    `ExecStart=${cmd} --config ${unitPathArg(configPath)} backup`,
    'Nice=10',
    'IOSchedulingClass=best-effort',
    'IOSchedulingPriority=7',
    'TimeoutStartSec=infinity',
    'KillMode=process',
    '',
  ].join('\n');
}

/** The timer (it starts the service of its own name): Persistent (a run missed while the machine was off is made up at the next boot), randomised delay. */
export function backupTimerText(configPath: string, onCalendar: string): string {
  return [
    `# Written by hbs (hbs backup --install-timer) for ${configPath}`,
    '[Unit]',
    `Description=hbs: scheduled backup into the filesystem of ${configPath.replace(/%/g, '%%')}`,
    '',
    '[Timer]',
    `OnCalendar=${onCalendar}`,
    'Persistent=true',
    `RandomizedDelaySec=${RANDOMIZED_DELAY}`,
    '',
    '[Install]',
    `WantedBy=${TIMERS_TARGET}`,
    '',
  ].join('\n');
}
