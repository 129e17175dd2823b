import { basename } from 'node:path';

/**
 * Several stacks on one machine (boxes, images on one box, sub-accounts): each has its own config,
 * and the defaults that must be unique on the machine are derived from that config's name.
 *
 * The name is the config file's name without `.json`: /etc/hbs/offsite.json is "offsite". The
 * default config (…/config.json) has no name, so it keeps the defaults hbs always had. Characters a
 * mapper name or a path should not hold become `_`.
 */
export function configName(configPath: string): string | undefined {
  const base = basename(configPath).replace(/\.json$/i, '');
  if (base === 'config') return undefined;
  return base.replace(/[^A-Za-z0-9_.+-]/g, '_').replace(/^\.+/, '_') || '_';
}

export const LEGACY_BOX_MOUNT = '/srv/backup/hetzner-backup-space';
export const LEGACY_MOUNT_POINT = '/srv/backup/backup';

/** The defaults of one config: its box mount and mount point (everything of NAME under /srv/backup/NAME/). */
export function pathDefaults(configPath: string): { boxMount: string; mountPoint: string } {
  const name = configName(configPath);
  if (name === undefined) return { boxMount: LEGACY_BOX_MOUNT, mountPoint: LEGACY_MOUNT_POINT };
  return { boxMount: `/srv/backup/${name}/hetzner-backup-space`, mountPoint: `/srv/backup/${name}/backup` };
}

/**
 * The device-mapper name for an image: `hbs-`, the config's name (if any), and the image name
 * without `.img`, safe characters only. The header backup and the kept key are named after it.
 */
export function defaultMapperName(image: string, configPath?: string): string {
  const base = image.replace(/\.img$/i, '').replace(/[^A-Za-z0-9_.+-]/g, '_') || 'image';
  const name = configPath === undefined ? undefined : configName(configPath);
  return name === undefined ? `hbs-${base}` : `hbs-${name}-${base}`;
}
