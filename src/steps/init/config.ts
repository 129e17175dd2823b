import { dirname } from 'node:path';
import { EXIT, HbsError } from '../../core/errors.js';
import type { Check, Step } from '../../core/step.js';
import { CONFIG_VERSION, serializeConfig, type Config } from '../../lib/config.js';
import { FS_LABEL } from '../../lib/ext4.js';
import { fileExists } from '../../core/files.js';
import { intentPath } from '../../lib/intent.js';
import type { InitCtx } from './context.js';

/** Shown where the UUID of an adopted encrypted image goes in a dry-run that could not open it. */
const UUID_LATER = '<the ext4 UUID, read once the image is open>';

/** Whether hbs made the SSH key pair: in this run, or as the config already on disk records (same key). */
function keyMadeByHbs(ctx: InitCtx): boolean {
  const prior = ctx.state.existingConfig?.ssh;
  return Boolean(ctx.state.sshKeyMade) || (prior?.generated === true && prior.key === ctx.opts.sshKey);
}

export function buildConfig(ctx: InitCtx): Config {
  const o = ctx.opts;
  const s = ctx.stack;
  const uuid = s.fs.uuid ?? UUID_LATER;
  const fingerprint = ctx.state.hostKey?.fingerprint;
  if (!fingerprint) throw new Error('config built before the host key is known');
  const prior = ctx.state.existingConfig?.image.uuid === uuid ? ctx.state.existingConfig : undefined;
  return {
    version: CONFIG_VERSION,
    box: { user: o.user, host: o.host, port: o.port, remotePath: o.remotePath },
    ssh: { key: o.sshKey, knownHosts: s.conn.knownHosts, hostKeyFingerprint: fingerprint, ...(keyMadeByHbs(ctx) ? { generated: true as const } : {}) },
    boxMount: o.boxMount,
    image: {
      name: o.image,
      // A re-run keeps the recorded size: growing is `hbs grow`'s job, never init's.
      sizeBytes: ctx.state.image.sizeBytes ?? prior?.image.sizeBytes ?? o.size ?? 0,
      uuid,
      label: prior?.image.label ?? FS_LABEL,
    },
    filesystem: { mountPoint: o.mountPoint, mountOptions: s.fs.mountOptions },
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
    // After `encryption`, as the schema orders it: a re-read config serialises byte for byte the same.
    systemd: o.systemd ? { dir: o.systemd.dir } : null,
  };
}

function upToDate(ctx: InitCtx): Check {
  const prior = ctx.state.existingConfig;
  const same = prior !== undefined && ctx.stack.fs.uuid !== undefined && serializeConfig(prior) === serializeConfig(buildConfig(ctx));
  return same ? { done: true, detail: `${ctx.opts.config} is up to date` } : { done: false };
}

/** Written right after mkfs, so an interrupted run is recognised (and resumed) by the next one. */
export const configStep: Step<InitCtx> = {
  id: 'config',
  title: 'Write the config',
  // The filesystem's UUID is known once the image is formatted, or opened (adopted and encrypted),
  // or (adopted, plain) once the box is mounted.
  after: ['box-mount', 'crypt-open'],
  check(ctx) {
    if (!ctx.stack.fs.uuid) return Promise.reject(new HbsError('internal: the config is due before the filesystem is known', EXIT.failed));
    return Promise.resolve(upToDate(ctx));
  },
  expect: (ctx) => Promise.resolve(upToDate(ctx)),
  plan(ctx) {
    return Promise.resolve([
      { kind: 'mkdir', path: dirname(ctx.opts.config), mode: 0o700 },
      { kind: 'write', path: ctx.opts.config, content: serializeConfig(buildConfig(ctx)), mode: 0o600, how: 'atomic', show: true },
    ]);
  },
};

/** Once the config records the image, the record of what was about to be created has done its job. */
export const intentDoneStep: Step<InitCtx> = {
  id: 'intent-done',
  title: 'Forget what was about to be created',
  after: ['image'],
  async check(ctx) {
    return (await fileExists(intentPath(ctx.opts.config))) ? { done: false } : { done: true, detail: 'nothing left' };
  },
  expect: (ctx) => Promise.resolve<Check>(ctx.state.image.intent ? { done: false } : { done: true, detail: 'nothing left' }),
  plan: (ctx) => Promise.resolve([{ kind: 'remove', path: intentPath(ctx.opts.config), what: 'the config records the image now' }]),
};
