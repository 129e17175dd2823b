/** A check of one answer: true, or the message shown under the prompt before asking again. */
export type Validate = (v: string) => true | string | Promise<true | string>;

/**
 * The only questions hbs asks, behind a tiny interface so tests can answer them. Only commands
 * ask (before their steps run); the Inquirer implementation lives in ui/.
 */
export interface Prompter {
  input(q: { message: string; default?: string; validate?: Validate }): Promise<string>;
  password(q: { message: string; validate?: Validate }): Promise<string>;
  confirm(q: { message: string; default?: boolean }): Promise<boolean>;
}
