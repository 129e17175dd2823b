import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blobsIn,
  mergeAuthorizedKeys,
  parseOpenSshPublicKey,
  toOpenSshLine,
  toRfc4716,
  type PublicKey,
} from '../../../src/lib/rfc4716.js';

let dir: string;
/** Real keys made by ssh-keygen: the .pub text and what `ssh-keygen -e` prints for it. */
const keys: Record<'ed25519' | 'rsa' | 'ecdsa', { pub: string; exported: string; key: PublicKey }> = {} as never;

function keygen(type: 'ed25519' | 'rsa' | 'ecdsa', extra: string[]): void {
  const file = join(dir, type);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...extra, '-N', '', '-C', `test ${type} key`, '-f', file]);
  const pub = readFileSync(`${file}.pub`, 'utf8');
  const exported = execFileSync('ssh-keygen', ['-e', '-f', `${file}.pub`], { encoding: 'utf8' });
  keys[type] = { pub, exported, key: parseOpenSshPublicKey(pub) };
}

/** `ssh-keygen -e` output without its header lines (Comment: …, including continued lines). */
function withoutHeaders(block: string): string {
  const out: string[] = [];
  let continued = false;
  for (const line of block.split('\n')) {
    if (continued || /^[^\s:]+: /.test(line)) {
      continued = line.endsWith('\\');
      continue;
    }
    out.push(line);
  }
  return out.join('\n');
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hbs-rfc4716-'));
  keygen('ed25519', []);
  keygen('rsa', ['-b', '3072']);
  keygen('ecdsa', ['-b', '521']);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const BEGIN = '---- BEGIN SSH2 PUBLIC KEY ----';
const END = '---- END SSH2 PUBLIC KEY ----';

describe('parseOpenSshPublicKey', () => {
  it('reads type, blob and comment of a real .pub file', () => {
    const { pub, key } = keys.ed25519;
    const [type, blob] = pub.trim().split(' ');
    expect(key).toEqual({ type: 'ssh-ed25519', blob, comment: 'test ed25519 key' });
    expect(type).toBe('ssh-ed25519');
    expect(keys.rsa.key.type).toBe('ssh-rsa');
    expect(keys.ecdsa.key.type).toBe('ecdsa-sha2-nistp521');
  });

  it('reads a key without a comment and keeps a comment with spaces', () => {
    const { type, blob } = keys.ed25519.key;
    expect(parseOpenSshPublicKey(`${type} ${blob}\n`).comment).toBe('');
    expect(parseOpenSshPublicKey(`${type} ${blob} two  words`).comment).toBe('two words');
  });

  it.each(['', '   \n', 'hello', 'hello world', 'ssh-ed25519', 'ssh-ed25519 not*base64', 'ssh-ed25519 AAAA', '---- BEGIN SSH2 PUBLIC KEY ----'])(
    'rejects garbage %j',
    (text) => {
      expect(() => parseOpenSshPublicKey(text)).toThrow();
    },
  );

  it('rejects a blob whose embedded type does not match the named type', () => {
    expect(() => parseOpenSshPublicKey(`ssh-rsa ${keys.ed25519.key.blob} x`)).toThrow(/does not match its type ssh-rsa/);
    expect(() => parseOpenSshPublicKey(`ssh-ed25519 ${keys.rsa.key.blob}`)).toThrow(/does not match its type ssh-ed25519/);
  });
});

describe('toRfc4716', () => {
  it.each(['ed25519', 'rsa', 'ecdsa'] as const)('equals `ssh-keygen -e` for a real %s key, minus the Comment header', (type) => {
    const { exported, key } = keys[type];
    expect(exported).toMatch(/^Comment: /m);
    const expected = withoutHeaders(exported);
    expect(expected).not.toMatch(/Comment/);
    expect(toRfc4716(key)).toBe(expected);
  });

  it('wraps long keys over several lines of at most 70 characters', () => {
    const lines = toRfc4716(keys.rsa.key).trimEnd().split('\n');
    expect(lines[0]).toBe(BEGIN);
    expect(lines.at(-1)).toBe(END);
    const body = lines.slice(1, -1);
    expect(body.length).toBeGreaterThan(5);
    expect(body.slice(0, -1).every((l) => l.length === 70)).toBe(true);
    expect(body.join('')).toBe(keys.rsa.key.blob);
  });

  it('is read back by `ssh-keygen -i` as the same key', () => {
    const file = join(dir, 'import.rfc');
    writeFileSync(file, toRfc4716(keys.rsa.key));
    const line = execFileSync('ssh-keygen', ['-i', '-m', 'RFC4716', '-f', file], { encoding: 'utf8' });
    expect(line.trim()).toBe(`ssh-rsa ${keys.rsa.key.blob}`);
  });
});

describe('toOpenSshLine', () => {
  it('reproduces the .pub line', () => {
    expect(toOpenSshLine(keys.ed25519.key)).toBe(keys.ed25519.pub);
    expect(toOpenSshLine(keys.rsa.key)).toBe(keys.rsa.pub);
  });

  it('leaves out an empty comment', () => {
    const { type, blob } = keys.ed25519.key;
    expect(toOpenSshLine({ type, blob, comment: '' })).toBe(`${type} ${blob}\n`);
  });
});

describe('blobsIn', () => {
  it('finds blobs by format in an authorized_keys text', () => {
    const text = `# keys\n${keys.rsa.exported}${keys.ed25519.pub}\n`;
    const found = blobsIn(text);
    expect([...found.rfc4716]).toEqual([keys.rsa.key.blob]);
    expect([...found.openssh]).toEqual([keys.ed25519.key.blob]);
  });
});

describe('mergeAuthorizedKeys', () => {
  const key = (): PublicKey => keys.ed25519.key;
  const both = (): string => toRfc4716(key()) + toOpenSshLine(key());

  it('adds both formats to an empty text', () => {
    const r = mergeAuthorizedKeys('', key());
    expect(r.text).toBe(both());
    expect(r.added).toEqual(['RFC4716', 'OpenSSH']);
  });

  it('keeps every existing line byte for byte and appends after them', () => {
    const existing = `# managed by someone else\n\n   ${keys.rsa.pub.trim()}   \nno-pty\tssh-ecdsa-weird-entry\n${keys.ecdsa.exported}`;
    const r = mergeAuthorizedKeys(existing, key());
    expect(r.text).toBe(existing + both());
    expect(r.added).toEqual(['RFC4716', 'OpenSSH']);
  });

  it('adds a newline before its block when the existing text lacks one, and ends with a newline', () => {
    const existing = keys.rsa.pub.trim();
    const r = mergeAuthorizedKeys(existing, key());
    expect(r.text).toBe(existing + '\n' + both());
    expect(r.text.endsWith('\n')).toBe(true);
  });

  it('adds nothing the second time', () => {
    for (const start of ['', '# x', keys.rsa.pub, keys.rsa.exported + 'ssh-rsa junk']) {
      const once = mergeAuthorizedKeys(start, key());
      const twice = mergeAuthorizedKeys(once.text, key());
      expect(twice.text).toBe(once.text);
      expect(twice.added).toEqual([]);
    }
  });

  it('changes nothing when both formats are present, even without a final newline', () => {
    const existing = both() + '# trailing comment';
    const r = mergeAuthorizedKeys(existing, key());
    expect(r.added).toEqual([]);
    expect(r.text).toBe(existing + '\n');
  });

  it('recognises the RFC4716 block ssh-keygen -e prints (with a Comment header) and adds only the OpenSSH line', () => {
    const existing = keys.ed25519.exported;
    const r = mergeAuthorizedKeys(existing, key());
    expect(r.added).toEqual(['OpenSSH']);
    expect(r.text).toBe(existing + toOpenSshLine(key()));
  });

  it('recognises a multi-line RFC4716 block with several headers, one continued with a backslash', () => {
    const rsa = keys.rsa.key;
    const body = toRfc4716(rsa).split('\n').slice(1, -2);
    const existing = [
      BEGIN,
      'Comment: "a long comment that goes on \\',
      'and on over a second line"',
      'x-Private-Tag: something',
      ...body,
      END,
      '',
    ].join('\n');
    const r = mergeAuthorizedKeys(existing, rsa);
    expect(r.added).toEqual(['OpenSSH']);
    expect(r.text).toBe(existing + toOpenSshLine(rsa));
  });

  it('recognises an OpenSSH line with options before the key type and adds only the RFC4716 block', () => {
    const { type, blob } = key();
    const existing = `no-pty,command="x" ${type} ${blob} someone@else\n`;
    const r = mergeAuthorizedKeys(existing, key());
    expect(r.added).toEqual(['RFC4716']);
    expect(r.text).toBe(existing + toRfc4716(key()));
  });

  it('recognises keys in a text with CRLF line ends', () => {
    const existing = (keys.ed25519.exported + keys.ed25519.pub).replace(/\n/g, '\r\n');
    const r = mergeAuthorizedKeys(existing, key());
    expect(r.added).toEqual([]);
    expect(r.text).toBe(existing);
  });

  it('does not mistake another key for this one', () => {
    const existing = keys.rsa.exported + keys.rsa.pub;
    const r = mergeAuthorizedKeys(existing, key());
    expect(r.added).toEqual(['RFC4716', 'OpenSSH']);
    expect(r.text).toBe(existing + both());
  });

  it('does not count a commented-out OpenSSH line as present', () => {
    const existing = `# ${keys.ed25519.pub}`;
    const r = mergeAuthorizedKeys(existing, key());
    expect(r.added).toEqual(['RFC4716', 'OpenSSH']);
    expect(r.text).toBe(existing + both());
  });
});
