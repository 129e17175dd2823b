import type { Action } from './action.js';

export type Check = { done: true; detail: string } | { done: false; detail?: string };

/**
 * A provisioning step. `check` is read-only (is it already so?); `plan` lists the exact changes as
 * data; `verify` proves afterwards that they took. Steps never prompt and never run a change
 * themselves: the executor applies their plans, or — in a dry-run — prints them.
 *
 * `after` names the steps whose changes this step's check has to see (the box mount before the
 * image on it). While one of them is only planned — in a dry-run — the machine cannot show that
 * state, so `expect` stands in for `check`: what check would find, from what can be seen and what
 * is recorded (the config). Without `expect` the step counts as not done and is planned.
 */
export interface Step<C> {
  id: string;
  title: string;
  after?: readonly string[];
  check(ctx: C): Promise<Check>;
  expect?(ctx: C, pending: readonly string[]): Promise<Check>;
  /** `pending`: the steps of `after` that a dry-run only planned (what the machine shows now is what they will change). */
  plan(ctx: C, pending?: readonly string[]): Promise<Action[]>;
  verify?(ctx: C): Promise<void>;
}

/** A step that only looks (a check that throws on what must stop the run, and never plans anything). */
export function probeStep<C>(id: string, title: string, check: (ctx: C) => Promise<Check>, o: Pick<Step<C>, 'after' | 'expect'> = {}): Step<C> {
  return { id, title, ...o, check, plan: () => Promise.resolve([]) };
}
