import { dirname } from 'node:path';
import { EXIT, HbsError, UsageError } from '../../core/errors.js';
import { readTextIfExists } from '../../core/files.js';
import type { Step } from '../../core/step.js';
import { knownHostsName, pinKey, pinnedKeys, type HostKey } from '../../lib/host-keys.js';
import type { Probes } from '../../lib/probes.js';
import type { InitCtx } from './context.js';

/** The server's host keys (read-only), most preferred type first; an error when none came. */
export async function scanHostKeys(probe: Probes, host: string, port: number): Promise<HostKey[]> {
  const keys = await probe.hostKeys(host, port);
  if (keys.length === 0) {
    throw new HbsError(
      `cannot reach an SSH server at ${host} port ${port}: no host key received`,
      EXIT.failed,
      'check --host and --port (Storage Boxes serve SFTP on 22 and 23) and the network',
    );
  }
  return keys;
}

export async function readPinned(path: string, host: string, port: number): Promise<HostKey[]> {
  const text = await readTextIfExists(path).catch(() => undefined);
  return text === undefined ? [] : pinnedKeys(text, knownHostsName(host, port));
}

/**
 * Pins the box's host key in hbs's own known_hosts. The key must match --host-key-fingerprint (the
 * wizard fills it in once the person confirmed it) or, on a re-run, the key pinned before.
 */
export const hostKeyStep: Step<InitCtx> = {
  id: 'host-key',
  title: 'Pin the box host key',
  async check(ctx) {
    const { host, port, hostKeyFingerprint } = ctx.opts;
    const path = ctx.stack.conn.knownHosts;
    const offered = await scanHostKeys(ctx.probe, host, port);
    const pinned = await readPinned(path, host, port);
    const wanted = hostKeyFingerprint ?? pinned[0]?.fingerprint;
    if (!wanted) {
      throw new UsageError(
        `--host-key-fingerprint is missing: the box offers ${offered[0]?.fingerprint} (${offered[0]?.type})`,
        'compare it with the fingerprint your provider shows, then pass it as --host-key-fingerprint',
      );
    }
    const key = offered.find((k) => k.fingerprint === wanted);
    if (!key) {
      const list = offered.map((k) => `${k.fingerprint} (${k.type})`).join(', ');
      throw pinned.length > 0 && !hostKeyFingerprint
        ? new HbsError(
            `the host key of ${host}:${port} changed: pinned ${wanted}, the server offers ${list}`,
            EXIT.failed,
            `if the box really got new keys, remove its line from ${path} and re-run; otherwise someone may be intercepting the connection`,
          )
        : new UsageError(`host key fingerprint ${wanted} does not match ${host}:${port}, which offers ${list}`);
    }
    ctx.state.hostKey = key;
    if (pinned.some((k) => k.blob === key.blob) && pinned.length === 1) return { done: true, detail: `${key.fingerprint} already pinned in ${path}` };
    return { done: false, detail: `${key.fingerprint} (${key.type})` };
  },
  async plan(ctx) {
    const key = ctx.state.hostKey;
    if (!key) throw new Error('host key step planned before its check');
    const path = ctx.stack.conn.knownHosts;
    const existing = (await readTextIfExists(path).catch(() => undefined)) ?? '';
    return [
      { kind: 'mkdir', path: dirname(path), mode: 0o700 },
      { kind: 'write', path, content: pinKey(existing, knownHostsName(ctx.opts.host, ctx.opts.port), key), mode: 0o600, how: 'atomic', show: true, what: "the box's host key" },
    ];
  },
};
