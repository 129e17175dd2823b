import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, HbsError, UsageError } from '../../../src/core/errors.js';
import type { Prompter } from '../../../src/core/prompter.js';
import { acquireKey, KEY_HINT, keySourceFor, type KeySource } from '../../../src/lib/keys.js';
import { WrongKeyError, type LuksKey } from '../../../src/lib/luks.js';

const IMAGE = '/srv/box/filesystem.img';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hbs-keys-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A prompter typing these passphrases, in order; records what it was asked. */
function typing(...answers: string[]): Prompter & { asked: string[]; validations: (true | string)[] } {
  const asked: string[] = [];
  const validations: (true | string)[] = [];
  return {
    asked,
    validations,
    input: () => Promise.reject(new Error('no input() expected')),
    confirm: () => Promise.reject(new Error('no confirm() expected')),
    password: async (q) => {
      asked.push(q.message);
      if (q.validate) validations.push(await q.validate(''));
      const a = answers.shift();
      if (a === undefined) throw new Error(`unexpected question: ${q.message}`);
      return a;
    },
  };
}

const text = (k: LuksKey | undefined): string | undefined => (k ? Buffer.from(k.bytes).toString('utf8') : undefined);
/** A key test that accepts only `right`, counting how often it was asked. */
function tester(right: string): { test: (k: LuksKey) => Promise<'ok' | 'wrong'>; calls: () => number } {
  let n = 0;
  return { test: (k) => (n++, Promise.resolve(text(k) === right ? 'ok' : 'wrong')), calls: () => n };
}

describe('keySourceFor', () => {
  const stdin = (bytes: string) => () => Promise.resolve(Buffer.from(bytes));

  it('takes --luks-key-file first, then a passphrase init read, then --luks-key-stdin, then the unattended key, then a prompt', async () => {
    const file = join(dir, 'k');
    const unattended = join(dir, 'unattended');
    await writeFile(file, 'from file');
    await writeFile(unattended, 'unattended');
    const o = { unattendedKeyFile: unattended, prompter: typing('typed'), readStdinBytes: stdin('from stdin'), defer: false };
    const read = async (s: KeySource): Promise<string | undefined> => (s.kind === 'read' ? text(await s.read()) : s.kind);
    expect(await read(keySourceFor(IMAGE, { luksKeyFile: file, passphrase: 'pw' }, o))).toBe('from file');
    expect(await read(keySourceFor(IMAGE, { passphrase: 'pw', luksKeyStdin: true }, o))).toBe('pw');
    expect(await read(keySourceFor(IMAGE, { luksKeyStdin: true }, o))).toBe('from stdin');
    expect(await read(keySourceFor(IMAGE, {}, o))).toBe('unattended');
    expect(keySourceFor(IMAGE, {}, { ...o, unattendedKeyFile: null }).kind).toBe('ask');
    expect(keySourceFor(IMAGE, {}, { ...o, unattendedKeyFile: null, prompter: undefined }).kind).toBe('none');
  });

  it('labels keys by where they came from, never by what they are', async () => {
    const file = join(dir, 'k');
    await writeFile(file, 'secret');
    const o = { readStdinBytes: stdin('secret'), defer: false };
    const label = async (s: KeySource): Promise<string> => (s.kind === 'read' ? (await s.read()).label : s.kind);
    expect(await label(keySourceFor(IMAGE, { luksKeyFile: file }, o))).toBe(`key file ${file}`);
    expect(await label(keySourceFor(IMAGE, { luksKeyStdin: true }, o))).toBe('key from stdin');
    expect(await label(keySourceFor(IMAGE, { passphrase: 'secret' }, o))).toBe('passphrase');
  });

  it('refuses --luks-key-file with --luks-key-stdin, and --luks-key-stdin without stdin or with nothing on it', async () => {
    expect(() => keySourceFor(IMAGE, { luksKeyFile: '/k', luksKeyStdin: true }, { defer: false })).toThrow(UsageError);
    expect(() => keySourceFor(IMAGE, { luksKeyStdin: true }, { defer: false })).toThrow('--luks-key-stdin: no stdin here');
    const empty = keySourceFor(IMAGE, { luksKeyStdin: true }, { readStdinBytes: stdin(''), defer: false });
    expect(empty.kind === 'read' && (await empty.read().catch((e: unknown) => e))).toBeInstanceOf(UsageError);
  });

  it('a dry-run asks nobody and reads no stdin (`later`); a key file is still read to be checked', () => {
    let reads = 0;
    const o = { prompter: typing(), readStdinBytes: () => (reads++, Promise.resolve(Buffer.from('x'))), defer: true };
    expect(keySourceFor(IMAGE, {}, o).kind).toBe('later');
    expect(keySourceFor(IMAGE, { luksKeyStdin: true }, o).kind).toBe('later');
    expect(reads).toBe(0);
    expect(keySourceFor(IMAGE, { luksKeyFile: join(dir, 'k') }, o).kind).toBe('read');
    // Without a terminal, a dry-run fails like the real run would.
    expect(keySourceFor(IMAGE, {}, { defer: true }).kind).toBe('none');
  });
});

describe('acquireKey', () => {
  const acquire = (source: KeySource, t: ReturnType<typeof tester>, warned: string[] = []) => acquireKey(source, IMAGE, 'opening it', t.test, (w) => warned.push(w));

  it('a key from a file or stdin that opens the image is returned after one check', async () => {
    const t = tester('right');
    const key = await acquire({ kind: 'read', read: () => Promise.resolve({ kind: 'keyfile', bytes: Buffer.from('right'), label: 'key from stdin' }) }, t);
    expect(text(key)).toBe('right');
    expect(t.calls()).toBe(1);
  });

  it('a wrong key from a file or stdin cannot change: WrongKeyError (exit 2) at once, no retry', async () => {
    const t = tester('right');
    let reads = 0;
    const err = await acquire({ kind: 'read', read: () => (reads++, Promise.resolve({ kind: 'keyfile', bytes: Buffer.from('wrong'), label: 'key file /k' })) }, t).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WrongKeyError);
    expect((err as WrongKeyError).exitCode).toBe(EXIT.usage);
    expect((err as WrongKeyError).message).toBe(`the key file /k does not open ${IMAGE} (no key slot matches); nothing was changed`);
    expect([reads, t.calls()]).toEqual([1, 1]);
  });

  it('a typed passphrase may be typed again, up to three attempts, each wrong one warned about', async () => {
    const p = typing('one', 'right');
    const warned: string[] = [];
    const t = tester('right');
    const source = keySourceFor(IMAGE, {}, { prompter: p, defer: false });
    expect(text(await acquire(source, t, warned))).toBe('right');
    expect(p.asked).toEqual([`LUKS passphrase of ${IMAGE}:`, `LUKS passphrase of ${IMAGE} (attempt 2 of 3):`]);
    expect(warned).toEqual([`the passphrase does not open ${IMAGE} (no key slot matches); nothing was changed`]);
    // An empty answer is refused at the prompt itself.
    expect(p.validations[0]).toBe('the passphrase is needed to open the image');

    const three = typing('a', 'b', 'c', 'never asked');
    const warned3: string[] = [];
    const err = await acquire(keySourceFor(IMAGE, {}, { prompter: three, defer: false }), tester('right'), warned3).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WrongKeyError);
    expect(three.asked).toHaveLength(3);
    expect(three.asked[2]).toContain('attempt 3 of 3');
    expect(warned3).toHaveLength(2);
  });

  it('`later` (a dry-run) asks nobody and tests nothing', async () => {
    const t = tester('right');
    expect(await acquire({ kind: 'later' }, t)).toBeUndefined();
    expect(t.calls()).toBe(0);
  });

  it('no source: exit 2 naming what needed the key and the ways to give one; nothing tested', async () => {
    const t = tester('right');
    const err = (await acquire({ kind: 'none' }, t).catch((e: unknown) => e)) as HbsError;
    expect(err).toBeInstanceOf(HbsError);
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`${IMAGE} is encrypted and opening it needs its key, but none was given; nothing was changed`);
    expect(err.hint).toBe(KEY_HINT);
    expect(KEY_HINT).toContain('--luks-key-file');
    expect(KEY_HINT).toContain('--luks-key-stdin');
    expect(t.calls()).toBe(0);
  });

  it('a key file that is not there, or empty, is a usage error before any test', async () => {
    const t = tester('right');
    const missing = await acquire(keySourceFor(IMAGE, { luksKeyFile: join(dir, 'nope') }, { defer: false }), t).catch((e: unknown) => e);
    expect((missing as HbsError).exitCode).toBe(EXIT.usage);
    expect((missing as HbsError).message).toMatch(/does not exist or is not a file/);
    await writeFile(join(dir, 'empty'), '');
    const empty = await acquire(keySourceFor(IMAGE, { luksKeyFile: join(dir, 'empty') }, { defer: false }), t).catch((e: unknown) => e);
    expect((empty as HbsError).message).toMatch(/is empty or larger than 8 MiB/);
    expect(t.calls()).toBe(0);
  });
});
