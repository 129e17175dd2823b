import type { z } from 'zod';
import { UsageError } from '../../core/errors.js';
import { pathDefaults } from '../../lib/config-name.js';
import { formatIssues } from '../../lib/validate.js';
import { ANSWER_FLAGS, DEFAULTS, defaultHost, flagOf, initAnswersSchema, type InitAnswers, type RawAnswers } from './options.js';

export type GivenAnswers = Partial<Record<keyof RawAnswers, string | null>>;

/** Each answer's question and default (given the answers so far); the wizard (wizard.ts) asks them in its own order. */
export const QUESTIONS: readonly { key: keyof RawAnswers; message: string; fallback?: (a: GivenAnswers) => string | undefined }[] = [
  { key: 'user', message: 'Storage Box account (u123456 or u123456-sub1)' },
  { key: 'host', message: 'Storage Box host', fallback: (a) => (a.user ? defaultHost(a.user) : undefined) },
  { key: 'port', message: 'SSH port (23 and 22 both serve SFTP)', fallback: () => DEFAULTS.port },
  { key: 'remotePath', message: 'Directory on the box (empty: the account home)', fallback: () => DEFAULTS.remotePath },
  { key: 'image', message: 'Image file name on the box', fallback: () => DEFAULTS.image },
  { key: 'size', message: 'Image size (e.g. 100G, 500GB, 1TiB)' },
  // Derived from the config's name: a second config (/etc/hbs/NAME.json) never collides with the first.
  { key: 'boxMount', message: 'Where to mount the box (sshfs)', fallback: (a) => pathDefaults(a.config ?? DEFAULTS.config).boxMount },
  { key: 'mountPoint', message: 'Where to mount the backup filesystem', fallback: (a) => pathDefaults(a.config ?? DEFAULTS.config).mountPoint },
  { key: 'sshKey', message: 'SSH key for the box (made if missing)', fallback: () => DEFAULTS.sshKey },
];

export const fieldSchema = (key: keyof RawAnswers): z.ZodType => initAnswersSchema.shape[key] as z.ZodType;

/** Checks one answer on its own; returns the message naming the bad value, or true. */
export function validateAnswer(key: keyof RawAnswers, value: string | null): true | string {
  const r = fieldSchema(key).safeParse(value);
  return r.success ? true : formatIssues(r.error)[0] ?? 'invalid';
}

/** Every flag that was given, checked on its own: bad input stops here, before anything else. */
export function checkGiven(given: GivenAnswers): void {
  const errors: string[] = [];
  for (const [key, value] of Object.entries(given) as [keyof RawAnswers, string | null | undefined][]) {
    if (value === undefined) continue;
    const ok = validateAnswer(key, value);
    if (ok !== true) errors.push(`${ANSWER_FLAGS[key]}: ${ok}`);
  }
  if (errors.length) throw new UsageError(errors.join('\n'));
}

/**
 * Turns flags (and, in a terminal, the wizard's answers) into complete answers: defaults for what
 * has one; a missing required answer is an error listing all of them.
 */
export function completeAnswers(given: GivenAnswers, o: { adopt?: boolean } = {}): InitAnswers {
  const a: GivenAnswers = { ...given };
  const missing: string[] = [];
  for (const q of QUESTIONS) {
    if (a[q.key] !== undefined) continue;
    // Adopting, the image on the box has its own size: nothing is asked, nothing made up.
    if (q.key === 'size' && o.adopt) continue;
    const fallback = q.fallback?.(a);
    if (fallback !== undefined) {
      a[q.key] = fallback;
    } else if (!(q.key === 'host' && a.user === undefined)) {
      // (without --user the host is derived from it, so only --user is reported)
      missing.push(ANSWER_FLAGS[q.key]);
    }
  }
  if (missing.length) {
    throw new UsageError(`missing: ${missing.join(', ')}`, 'give them as flags, or run `hbs init` in a terminal without --yes to be asked');
  }
  a.fstab = a.fstab === undefined ? DEFAULTS.fstab : a.fstab;
  a.config ??= DEFAULTS.config;
  const r = initAnswersSchema.safeParse(a);
  if (!r.success) throw new UsageError(formatIssues(r.error, flagOf).join('\n'));
  return r.data;
}
