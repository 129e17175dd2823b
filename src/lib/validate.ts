import { isIP } from 'node:net';
import { isAbsolute, normalize, sep } from 'node:path';
import { z } from 'zod';
import { parseSize } from './size.js';

/** Storage Box accounts: u123456, sub-accounts u123456-sub1. */
export const USER_RE = /^u\d{1,10}(-sub\d{1,6})?$/;
const HOST_LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const HOSTNAME_RE = new RegExp(`^${HOST_LABEL}(?:\\.${HOST_LABEL})*\\.?$`);
export const FINGERPRINT_RE = /^SHA256:[A-Za-z0-9+/]{43}=?$/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what it looks for
const CONTROL_RE = /[\x00-\x1f\x7f]/;
/** Directories a mount point must never be. */
const SYSTEM_DIRS = new Set(['/', '/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/lib64', '/proc', '/root', '/run', '/sbin', '/srv', '/sys', '/tmp', '/usr', '/var']);

export const MIN_IMAGE_BYTES = 64 * 1024 * 1024;

const show = (v: unknown): string => JSON.stringify(v);

/** A string check whose message names the bad value. */
function stringCheck(ok: (v: string) => boolean, message: (v: string) => string) {
  return z.string().superRefine((v, ctx) => {
    if (!ok(v)) ctx.addIssue({ code: 'custom', message: message(v) });
  });
}

export const userSchema = stringCheck(
  (v) => USER_RE.test(v),
  (v) => `${show(v)} is not a Storage Box account (u123456 or u123456-sub1)`,
);

export const hostSchema = stringCheck(
  (v) => v.length > 0 && v.length <= 253 && (HOSTNAME_RE.test(v) || isIP(v) !== 0),
  (v) => `${show(v)} is not a host name or IP address`,
);

export const portSchema = z.coerce
  .string()
  .transform((v, ctx) => {
    const n = /^\d{1,5}$/.test(v.trim()) ? Number(v) : NaN;
    if (!(n >= 1 && n <= 65535)) {
      ctx.addIssue({ code: 'custom', message: `${show(v)} is not a port (1-65535)` });
      return z.NEVER;
    }
    return n;
  });

export const sizeSchema = z.string().transform((v, ctx) => {
  const r = parseSize(v);
  if (!r.ok) {
    ctx.addIssue({ code: 'custom', message: r.error });
    return z.NEVER;
  }
  if (r.bytes < MIN_IMAGE_BYTES) {
    ctx.addIssue({ code: 'custom', message: `size ${show(v)} is too small (at least 64M)` });
    return z.NEVER;
  }
  return r.bytes;
});

export const fingerprintSchema = stringCheck(
  (v) => FINGERPRINT_RE.test(v),
  (v) => `${show(v)} is not a fingerprint of the form SHA256:<43 base64 characters>`,
).transform((v) => v.replace(/=$/, ''));

export const imageNameSchema = stringCheck(
  (v) => v.length > 0 && v.length <= 255 && !v.includes('/') && !v.includes('..') && !v.startsWith('-') && !CONTROL_RE.test(v) && v !== '.',
  (v) => `image name ${show(v)} must be a plain file name (no "/", no "..")`,
);

/** A remote directory on the box; empty means the account's home directory. */
export const remotePathSchema = stringCheck(
  (v) => !CONTROL_RE.test(v) && !v.startsWith('-') && !v.split('/').includes('..'),
  (v) => `remote path ${show(v)} must not contain "..", control characters or start with "-"`,
);

/**
 * An absolute local path. `optionSafe` paths also end up inside comma-separated mount options
 * (sshfs -o, fstab), where a comma cannot be escaped.
 */
export function localPathSchema(what: string, optionSafe = false) {
  return z.string().transform((v, ctx) => {
    const bad = (why: string): never => {
      ctx.addIssue({ code: 'custom', message: `${what} ${show(v)} ${why}` });
      return z.NEVER;
    };
    if (!isAbsolute(v)) return bad('must be an absolute path');
    if (CONTROL_RE.test(v)) return bad('must not contain control characters');
    if (optionSafe && /[,"]/.test(v)) return bad('must not contain a comma or a double quote (it goes into ssh and mount options)');
    const n = normalize(v);
    return n.length > 1 && n.endsWith(sep) ? n.slice(0, -1) : n;
  });
}

export function isInside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent === '/' ? '/' : parent + '/');
}

export function isSystemDir(path: string): boolean {
  return SYSTEM_DIRS.has(path);
}

/** zod issues as `--flag: message` lines (the first path segment names the flag). */
export function formatIssues(error: z.ZodError, flagOf: (key: string) => string = (k) => k): string[] {
  return error.issues.map((i) => {
    const key = i.path.map(String).join('.');
    return key ? `${flagOf(key)}: ${i.message}` : i.message;
  });
}
