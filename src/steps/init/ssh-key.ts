import { dirname } from 'node:path';
import { exists } from '../../core/files.js';
import type { Step } from '../../core/step.js';
import type { InitCtx } from './context.js';

/** A dedicated ed25519 key for the box, made only when none is at --ssh-key. */
export const sshKeyStep: Step<InitCtx> = {
  id: 'ssh-key',
  title: 'SSH key for the box',
  async check(ctx) {
    const key = ctx.opts.sshKey;
    if (await exists(key)) {
      if (!(await exists(`${key}.pub`))) return { done: false, detail: `${key}.pub derived from ${key}` };
      return { done: true, detail: `using ${key}` };
    }
    return { done: false };
  },
  async plan(ctx) {
    const key = ctx.opts.sshKey;
    if (await exists(key)) {
      // The private key is there, its .pub is not: derive it, never replace the key.
      return [{ kind: 'write', path: `${key}.pub`, content: await ctx.probe.publicKeyOf(key), mode: 0o644, how: 'atomic', show: true, what: `the public half of ${key}` }];
    }
    ctx.state.sshKeyMade = true;
    return [
      { kind: 'mkdir', path: dirname(key), mode: 0o700 },
      { kind: 'run', cmd: { argv: ['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `hbs@${ctx.deps.hostname()}`, '-f', key] } },
    ];
  },
};
