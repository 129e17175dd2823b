import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';

export interface HostKey {
  type: string;
  blob: string;
  fingerprint: string;
}

/** OpenSSH's SHA256 fingerprint of a key blob: base64 without padding. */
export function fingerprintOf(blob: string): string {
  const digest = createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64');
  return `SHA256:${digest.replace(/=+$/, '')}`;
}

/** The host field OpenSSH uses in known_hosts: `host` on port 22, else `[host]:port`. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** `user@host:` as ssh and sshfs take it (IPv6 addresses in brackets). */
export function sshTarget(user: string, host: string): string {
  return `${user}@${isIPv6(host) ? `[${host}]` : host}`;
}

const PREFERENCE = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'ssh-rsa'];

/** Keys from `ssh-keyscan` output, most preferred type first. */
export function parseKeyscan(output: string): HostKey[] {
  const keys: HostKey[] = [];
  for (const raw of output.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [, type, blob] = line.split(/\s+/);
    if (!type || !blob) continue;
    if (keys.some((k) => k.blob === blob)) continue;
    keys.push({ type, blob, fingerprint: fingerprintOf(blob) });
  }
  const rank = (t: string): number => {
    const i = PREFERENCE.indexOf(t);
    return i < 0 ? PREFERENCE.length : i;
  };
  return keys.sort((a, b) => rank(a.type) - rank(b.type));
}

/** Keys a known_hosts text holds for a host name (exact, unhashed entries). */
export function pinnedKeys(knownHosts: string, name: string): HostKey[] {
  const keys: HostKey[] = [];
  for (const raw of knownHosts.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [hosts, type, blob] = line.split(/\s+/);
    if (!hosts || !type || !blob) continue;
    if (hosts.split(',').includes(name)) keys.push({ type, blob, fingerprint: fingerprintOf(blob) });
  }
  return keys;
}

/**
 * known_hosts text with exactly `key` pinned for `name`: other hosts' lines stay as they are,
 * older lines for the same name are replaced.
 */
export function pinKey(knownHosts: string, name: string, key: HostKey): string {
  const kept = knownHosts
    .split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => !(l.trim().split(/\s+/)[0] ?? '').split(',').includes(name));
  kept.push(`${name} ${key.type} ${key.blob}`);
  return kept.join('\n') + '\n';
}

/** known_hosts text without the lines for `name`; every other line stays byte for byte. */
export function unpinHost(knownHosts: string, name: string): string {
  return knownHosts
    .split(/(?<=\n)/)
    .filter((l) => !(l.trim().split(/\s+/)[0] ?? '').split(',').includes(name) || l.trim().startsWith('#'))
    .join('');
}
