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
