import { dirname } from 'node:path';
import { CONFIG_VERSION, serializeConfig, type Config } from '../lib/config.js';
import type { Step } from '../core/plan.js';
import { FS_LABEL } from './mkfs.js';
import { knownHostsPath, type InitContext } from '../init/context.js';

export function buildConfig(ctx: InitContext): Config {
  const o = ctx.opts;
  const uuid = ctx.state.image.uuid;
  const fingerprint = ctx.state.hostKey?.fingerprint;
  if (!uuid || !fingerprint) throw new Error('config built before the image and host key are known');
  return {
    version: CONFIG_VERSION,
    box: { user: o.user, host: o.host, port: o.port, remotePath: o.remotePath },
    ssh: { key: o.sshKey, knownHosts: knownHostsPath(o.config), hostKeyFingerprint: fingerprint },
    boxMount: o.boxMount,
    image: {
      name: o.image,
      // A re-run keeps the recorded size: growing is `hbs grow`'s job, never init's.
      sizeBytes: ctx.state.image.sizeBytes ?? (ctx.state.existingConfig?.image.uuid === uuid ? ctx.state.existingConfig.image.sizeBytes : o.size),
      uuid,
      label: ctx.state.existingConfig?.image.uuid === uuid ? ctx.state.existingConfig.image.label : FS_LABEL,
    },
    filesystem: { mountPoint: o.mountPoint, mountOptions: ctx.state.mountOptions },
    fstab: o.fstab,
    ...(o.encrypt
      ? {
          encryption: {
            type: 'luks2' as const,
            mapperName: o.encrypt.mapperName,
            keys: [...(o.encrypt.passphrase ? (['passphrase'] as const) : []), ...(o.encrypt.keyFile ? (['keyfile'] as const) : [])],
            headerBackup: o.encrypt.headerBackup,
            unattendedKeyFile: o.encrypt.unattendedKeyFile,
            ...(o.encrypt.crypttab !== undefined ? { crypttab: o.encrypt.crypttab } : {}),
          },
        }
      : {}),
  };
}

/** A dry-run of an adoption that could not look inside the image: the config's UUID is not known yet. */
function uuidPending(ctx: InitContext): boolean {
  return ctx.runner.dryRun && ctx.state.image.adopted === true && ctx.state.image.uuid === undefined;
}

/** Written right after mkfs, so an interrupted run is recognised (and resumed) by the next one. */
export const configStep: Step<InitContext> = {
  id: 'config',
  title: 'Write the config',
  check(ctx) {
    if (uuidPending(ctx)) return Promise.resolve({ done: false });
    const prior = ctx.state.existingConfig;
    const same = prior !== undefined && serializeConfig(prior) === serializeConfig(buildConfig(ctx));
    return Promise.resolve(same ? { done: true, detail: `${ctx.opts.config} is up to date` } : { done: false });
  },
  plan(ctx) {
    if (uuidPending(ctx)) {
      return Promise.resolve([
        { kind: 'mkdir', path: dirname(ctx.opts.config), mode: 0o700 },
        {
          kind: 'task',
          describe: [`write ${ctx.opts.config} (mode 0600, atomic) with the adopted image's ext4 UUID, read once it is open`],
          run: () => Promise.reject(new Error('the adopted filesystem was never read')),
        },
      ]);
    }
    return Promise.resolve([
      { kind: 'mkdir', path: dirname(ctx.opts.config), mode: 0o700 },
      { kind: 'write', path: ctx.opts.config, content: serializeConfig(buildConfig(ctx)), mode: 0o600 },
    ]);
  },
};
