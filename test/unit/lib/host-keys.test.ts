import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprintOf, knownHostsName, parseKeyscan, pinKey, pinnedKeys, sshTarget, type HostKey } from '../../../src/lib/host-keys.js';

type Kind = 'ed25519' | 'rsa' | 'ecdsa';
let dir: string;
/** Real keys: type, blob, and the fingerprint `ssh-keygen -lf` prints. */
const keys = {} as Record<Kind, { type: string; blob: string; sshKeygenFingerprint: string }>;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hbs-host-keys-'));
  for (const [kind, extra] of [
    ['ed25519', []],
    ['rsa', ['-b', '2048']],
    ['ecdsa', ['-b', '256']],
  ] as [Kind, string[]][]) {
    const file = join(dir, kind);
    execFileSync('ssh-keygen', ['-q', '-t', kind, ...extra, '-N', '', '-C', '', '-f', file]);
    const [type = '', blob = ''] = readFileSync(`${file}.pub`, 'utf8').trim().split(/\s+/);
    const listed = execFileSync('ssh-keygen', ['-lf', `${file}.pub`], { encoding: 'utf8' });
    keys[kind] = { type, blob, sshKeygenFingerprint: listed.split(/\s+/)[1] ?? '' };
  }
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const hostKey = (kind: Kind): HostKey => ({ type: keys[kind].type, blob: keys[kind].blob, fingerprint: keys[kind].sshKeygenFingerprint });

describe('fingerprintOf', () => {
  it.each(['ed25519', 'rsa', 'ecdsa'] as const)('equals what `ssh-keygen -lf` prints for a %s key', (kind) => {
    const { blob, sshKeygenFingerprint } = keys[kind];
    expect(sshKeygenFingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(fingerprintOf(blob)).toBe(sshKeygenFingerprint);
  });

  it('differs between keys', () => {
    expect(fingerprintOf(keys.ed25519.blob)).not.toBe(fingerprintOf(keys.rsa.blob));
  });
});

describe('knownHostsName', () => {
  it('is the bare host on port 22 and [host]:port otherwise', () => {
    expect(knownHostsName('u1.your-storagebox.de', 22)).toBe('u1.your-storagebox.de');
    expect(knownHostsName('h', 23)).toBe('[h]:23');
    expect(knownHostsName('10.0.0.1', 2222)).toBe('[10.0.0.1]:2222');
    expect(knownHostsName('::1', 23)).toBe('[::1]:23');
  });
});

describe('sshTarget', () => {
  it('puts IPv6 addresses in brackets, nothing else', () => {
    expect(sshTarget('u1', '::1')).toBe('u1@[::1]');
    expect(sshTarget('u1', '2001:db8::42')).toBe('u1@[2001:db8::42]');
    expect(sshTarget('u1', '192.0.2.7')).toBe('u1@192.0.2.7');
    expect(sshTarget('u123-sub1', 'u123.your-storagebox.de')).toBe('u123-sub1@u123.your-storagebox.de');
  });
});

describe('parseKeyscan', () => {
  const scan = (): string =>
    [
      '# h:23 SSH-2.0-OpenSSH_9.2p1',
      `[h]:23 ${keys.rsa.type} ${keys.rsa.blob}`,
      '# h:23 SSH-2.0-OpenSSH_9.2p1',
      `[h]:23 ${keys.ecdsa.type} ${keys.ecdsa.blob}`,
      '',
      `[h]:23 ${keys.ed25519.type} ${keys.ed25519.blob}`,
      `[h]:23 ${keys.ed25519.type} ${keys.ed25519.blob}`,
      '[h]:23 truncated-line',
      '',
    ].join('\n');

  it('skips comments, orders ed25519 first, and drops duplicates', () => {
    const found = parseKeyscan(scan());
    expect(found.map((k) => k.type)).toEqual(['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ssh-rsa']);
    expect(found[0]).toEqual(hostKey('ed25519'));
    expect(found[1]).toEqual(hostKey('ecdsa'));
    expect(found[2]).toEqual(hostKey('rsa'));
  });

  it('puts unknown types last and keeps their order', () => {
    const found = parseKeyscan(`h x-zzz AAAA1\nh x-aaa AAAA2\nh ssh-rsa ${keys.rsa.blob}\n`);
    expect(found.map((k) => k.blob)).toEqual([keys.rsa.blob, 'AAAA1', 'AAAA2']);
  });

  it('returns nothing for output with only comments', () => {
    expect(parseKeyscan('# h:23 SSH-2.0-OpenSSH\n\n')).toEqual([]);
  });
});

describe('pinKey', () => {
  const other = (): string => `other.example ${keys.rsa.type} ${keys.rsa.blob}`;

  it('appends to an empty known_hosts', () => {
    expect(pinKey('', '[h]:23', hostKey('ed25519'))).toBe(`[h]:23 ssh-ed25519 ${keys.ed25519.blob}\n`);
  });

  it('keeps other hosts\' lines as they are and replaces every line for the same name', () => {
    const keep = [
      other(),
      '# a comment',
      `h ${keys.rsa.type} ${keys.rsa.blob}`,
      `|1|c2FsdA==|aGFzaA== ${keys.rsa.type} ${keys.rsa.blob}`,
      `[h]:2222 ${keys.ecdsa.type} ${keys.ecdsa.blob}`,
    ];
    const text = [keep[0], `[h]:23 ${keys.rsa.type} ${keys.rsa.blob}`, ...keep.slice(1), `[h]:23,192.0.2.1 ${keys.ecdsa.type} ${keys.ecdsa.blob}`].join('\n') + '\n';
    const out = pinKey(text, '[h]:23', hostKey('ed25519'));
    expect(out).toBe([...keep, `[h]:23 ssh-ed25519 ${keys.ed25519.blob}`].join('\n') + '\n');
    expect(pinnedKeys(out, '[h]:23')).toEqual([hostKey('ed25519')]);
    expect(pinnedKeys(out, 'h')).toEqual([hostKey('rsa')]);
  });

  it('works on text without a final newline and is idempotent', () => {
    const once = pinKey(other(), 'h', hostKey('ecdsa'));
    expect(once).toBe(`${other()}\nh ${keys.ecdsa.type} ${keys.ecdsa.blob}\n`);
    expect(pinKey(once, 'h', hostKey('ecdsa'))).toBe(once);
  });

  it.each([22, 23])('writes a line ssh-keygen -F finds for port %d', (port) => {
    const name = knownHostsName('box.example', port);
    const file = join(dir, `known_hosts_${port}`);
    writeFileSync(file, pinKey(other() + '\n', name, hostKey('ed25519')));
    const found = execFileSync('ssh-keygen', ['-F', name, '-f', file], { encoding: 'utf8' });
    expect(found).toContain(`${name} ssh-ed25519 ${keys.ed25519.blob}`);
    expect(found).not.toContain('other.example');
  });
});

describe('pinnedKeys', () => {
  it('returns the keys for exactly that name, also from comma lists, ignoring comments and other names', () => {
    const text = [
      '# [h]:23 ssh-rsa commented-out',
      `[h]:23 ${keys.ed25519.type} ${keys.ed25519.blob}`,
      `h ${keys.rsa.type} ${keys.rsa.blob}`,
      `192.0.2.1,[h]:23 ${keys.ecdsa.type} ${keys.ecdsa.blob}`,
      `[h]:230 ${keys.rsa.type} ${keys.rsa.blob}`,
      '[h]:23 incomplete',
    ].join('\n');
    expect(pinnedKeys(text, '[h]:23')).toEqual([hostKey('ed25519'), hostKey('ecdsa')]);
    expect(pinnedKeys(text, 'h')).toEqual([hostKey('rsa')]);
    expect(pinnedKeys(text, 'nothere')).toEqual([]);
    expect(pinnedKeys('', '[h]:23')).toEqual([]);
  });
});
