import { AbortError } from '../core/errors.js';
import type { Prompter } from '../core/prompter.js';

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
