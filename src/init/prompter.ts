import { AbortError } from '../core/errors.js';

/** A check of one answer: true, or the message shown under the prompt before asking again. */
export type Validate = (v: string) => true | string | Promise<true | string>;

/** The only questions hbs asks, behind a tiny interface so tests can answer them. */
export interface Prompter {
  input(q: { message: string; default?: string; validate?: Validate }): Promise<string>;
  password(q: { message: string; validate?: Validate }): Promise<string>;
  confirm(q: { message: string; default?: boolean }): Promise<boolean>;
}

/** Inquirer-backed prompts; loaded only when a question is actually asked (keeps start-up fast). */
export async function inquirerPrompter(): Promise<Prompter> {
  const { input, password, confirm } = await import('@inquirer/prompts');
  const guard = async <T>(p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } catch (err) {
      if (err instanceof Error && err.name === 'ExitPromptError') throw new AbortError('aborted at a prompt; nothing was changed');
      throw err;
    }
  };
  return {
    input: (q) => guard(input({ message: q.message, default: q.default, validate: q.validate })),
    password: (q) => guard(password({ message: q.message, mask: '*', toggleMask: false, validate: q.validate })),
    confirm: (q) => guard(confirm({ message: q.message, default: q.default ?? false })),
  };
}
