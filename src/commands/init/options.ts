import { z } from 'zod';
import { LEGACY_BOX_MOUNT, LEGACY_MOUNT_POINT } from '../../lib/config-name.js';
import {
  fingerprintSchema,
  hostSchema,
  imageNameSchema,
  isInside,
  isSystemDir,
  localPathSchema,
  portSchema,
  remotePathSchema,
  sizeSchema,
  userSchema,
} from '../../lib/validate.js';

export const DEFAULTS = {
  port: '23',
  remotePath: '',
  image: 'filesystem.img',
  /** For the default config; another config's are derived from its name (lib/config-name.ts). */
  boxMount: LEGACY_BOX_MOUNT,
  mountPoint: LEGACY_MOUNT_POINT,
  sshKey: '/root/.ssh/hbs_ed25519',
  fstab: '/etc/fstab',
  config: '/etc/hbs/config.json',
} as const;

export const defaultHost = (user: string): string => `${user}.your-storagebox.de`;

/** The answers that name something; each is a flag and, when missing, a question. */
export const ANSWER_FLAGS = {
  user: '--user',
  host: '--host',
  port: '--port',
  remotePath: '--remote-path',
  image: '--image',
  size: '--size',
  boxMount: '--box-mount',
  mountPoint: '--mount-point',
  sshKey: '--ssh-key',
  hostKeyFingerprint: '--host-key-fingerprint',
  fstab: '--fstab',
  config: '--config',
} as const;

export const flagOf = (key: string): string => ANSWER_FLAGS[key.split('.')[0] as keyof typeof ANSWER_FLAGS] ?? key;

export const initAnswersSchema = z
  .object({
    user: userSchema,
    host: hostSchema,
    port: portSchema,
    remotePath: remotePathSchema,
    image: imageNameSchema,
    // Optional only with --adopt: the image on the box has its own size (completeAnswers asks for it otherwise).
    size: sizeSchema.optional(),
    boxMount: localPathSchema('box mount', true),
    mountPoint: localPathSchema('mount point'),
    sshKey: localPathSchema('ssh key', true),
    hostKeyFingerprint: fingerprintSchema.optional(),
    fstab: localPathSchema('fstab').nullable(),
    config: localPathSchema('config', true),
  })
  .superRefine((o, ctx) => {
    for (const i of crossIssues(o)) ctx.addIssue({ code: 'custom', path: [i.key], message: i.message });
  });

type PathAnswers = { boxMount: string; mountPoint: string; sshKey: string; config: string };

/** A problem only a combination of answers shows; `involves` names every answer that takes part. */
export interface CrossIssue {
  key: keyof PathAnswers;
  involves: readonly (keyof PathAnswers)[];
  message: string;
}

/**
 * Checks between the local paths, on whichever of them are known yet (normalised), so the wizard
 * can explain a clash right under the question that caused it.
 */
export function crossIssues(o: Partial<PathAnswers>): CrossIssue[] {
  const out: CrossIssue[] = [];
  const { boxMount, mountPoint } = o;
  if (boxMount !== undefined && mountPoint !== undefined) {
    if (isInside(mountPoint, boxMount)) {
      out.push({ key: 'mountPoint', involves: ['mountPoint', 'boxMount'], message: `mount point "${mountPoint}" must not be the box mount or inside it ("${boxMount}")` });
    } else if (isInside(boxMount, mountPoint)) {
      out.push({ key: 'boxMount', involves: ['boxMount', 'mountPoint'], message: `box mount "${boxMount}" must not be inside the mount point "${mountPoint}"` });
    }
  }
  for (const key of ['boxMount', 'mountPoint'] as const) {
    const v = o[key];
    if (v !== undefined && isSystemDir(v)) out.push({ key, involves: [key], message: `"${v}" is a system directory; pick a directory of its own` });
  }
  if (boxMount !== undefined) {
    const local = (['sshKey', 'config'] as const).filter((k) => o[k] !== undefined && isInside(o[k], boxMount));
    if (local.length) {
      out.push({ key: 'sshKey', involves: ['boxMount', ...local], message: 'the ssh key and config must live on this machine, not on the box mount' });
    }
  }
  return out;
}

export type InitAnswers = z.output<typeof initAnswersSchema>;
export type RawAnswers = z.input<typeof initAnswersSchema>;
