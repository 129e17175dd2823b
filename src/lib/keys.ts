import { resolve } from 'node:path';
import { EXIT, HbsError, UsageError } from '../core/errors.js';
import type { Prompter } from '../core/prompter.js';
import { passphraseKey, readKeyFile, WrongKeyError, type LuksKey } from './luks.js';

/**
 * Where the key of an existing encrypted image comes from — one answer for mount, grow and init
 * --adopt. A key read from a file or stdin cannot change, so a wrong one stops at once; a typed
 * passphrase may be typed again (three attempts). In a dry-run nobody is asked and stdin is not read
 * (`later`): the plan shows the commands the key goes to, and a key given as a file is still
 * checked (read-only).
 */
export type KeySource =
  | { kind: 'none' }
  | { kind: 'read'; read: () => Promise<LuksKey> }
  | { kind: 'ask'; ask: (attempt: number) => Promise<LuksKey> }
  | { kind: 'later' };

export interface KeyFlags {
  luksKeyFile?: string;
  luksKeyStdin?: boolean;
  /** init --adopt: the passphrase, already read from stdin or HBS_LUKS_PASSPHRASE. */
  passphrase?: string;
}

/**
 * The source, in this order: --luks-key-file, --luks-key-stdin (or a passphrase init read), the
 * unattended key the config keeps, a prompt in a terminal. A conflict between flags is a usage error.
 */
export function keySourceFor(
  image: string,
  flags: KeyFlags,
  /** `defer`: nobody is asked and stdin is not read now (a dry-run: the plan shows where the key would go). */
  o: { unattendedKeyFile?: string | null; prompter?: Prompter; readStdinBytes?: () => Promise<Buffer>; defer: boolean },
): KeySource {
  if (flags.luksKeyFile && flags.luksKeyStdin) throw new UsageError('--luks-key-file and --luks-key-stdin exclude each other');
  if (flags.luksKeyFile) {
    const path = resolve(flags.luksKeyFile);
    return { kind: 'read', read: () => readKeyFile(path) };
  }
  if (flags.passphrase !== undefined) {
    const pw = flags.passphrase;
    return { kind: 'read', read: () => Promise.resolve(passphraseKey(pw)) };
  }
  if (flags.luksKeyStdin) {
    const read = o.readStdinBytes;
    if (!read) throw new UsageError('--luks-key-stdin: no stdin here');
    // Deferred (a dry-run), stdin stays unread: no key is held from it.
    if (o.defer) return { kind: 'later' };
    return {
      kind: 'read',
      read: async () => {
        const bytes = await read();
        if (bytes.length === 0) throw new UsageError('--luks-key-stdin: nothing came in on stdin');
        return { kind: 'keyfile', bytes, label: 'key from stdin' };
      },
    };
  }
  const unattended = o.unattendedKeyFile;
  if (unattended) return { kind: 'read', read: () => readKeyFile(unattended) };
  if (!o.prompter) return { kind: 'none' };
  if (o.defer) return { kind: 'later' };
  const prompter = o.prompter;
  return {
    kind: 'ask',
    ask: async (attempt) =>
      passphraseKey(
        await prompter.password({
          message: `LUKS passphrase of ${image}${attempt > 1 ? ` (attempt ${attempt} of 3)` : ''}:`,
          validate: (v) => (v === '' ? 'the passphrase is needed to open the image' : true),
        }),
      ),
  };
}

export const KEY_HINT = 'give --luks-key-file PATH or --luks-key-stdin (printf %s "$PASSPHRASE" | hbs … --luks-key-stdin), or run in a terminal to type the passphrase';

/**
 * Gets the key and checks it against the image (read-only) before anything changes: a wrong key
 * changes nothing. Undefined for `later` (a dry-run that asks nobody).
 */
export async function acquireKey(
  source: KeySource,
  image: string,
  purpose: string,
  test: (key: LuksKey) => Promise<'ok' | 'wrong'>,
  warn: (text: string) => void,
): Promise<LuksKey | undefined> {
  if (source.kind === 'none') throw new HbsError(`${image} is encrypted and ${purpose} needs its key, but none was given; nothing was changed`, EXIT.usage, KEY_HINT);
  if (source.kind === 'later') return undefined;
  for (let attempt = 1; ; attempt++) {
    const key = source.kind === 'read' ? await source.read() : await source.ask(attempt);
    if ((await test(key)) === 'ok') return key;
    const wrong = new WrongKeyError(image, key.label);
    // A typed passphrase may be typed again; a key from a file or stdin cannot change.
    if (source.kind !== 'ask' || attempt >= 3) throw wrong;
    warn(wrong.message);
  }
}
