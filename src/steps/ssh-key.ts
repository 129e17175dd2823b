import { dirname } from 'node:path';
import type { Step } from '../core/plan.js';
import { exists, writeFileAtomic } from '../lib/fs-util.js';
import type { InitContext } from '../init/context.js';

/** A dedicated ed25519 key for the box, made only when none is at --ssh-key. */
export const sshKeyStep: Step<InitContext> = {
  id: 'ssh-key',
  title: 'SSH key for the box',
  async check(ctx) {
    const key = ctx.opts.sshKey;
    if (await exists(key)) {
      if (!(await exists(`${key}.pub`))) return { done: false, detail: `${key}.pub is missing` };
      return { done: true, detail: `using ${key}` };
    }
    return { done: false };
  },
  async plan(ctx) {
    const key = ctx.opts.sshKey;
    if (await exists(key)) {
      // The private key is there, its .pub is not: derive it, never replace the key.
      return [
        {
          kind: 'task',
          describe: [`ssh-keygen -y -f ${key} > ${key}.pub`],
          run: async () => {
            const r = await ctx.runner.run({ argv: ['ssh-keygen', '-y', '-f', key], write: false });
            await writeFileAtomic(`${key}.pub`, r.stdout.endsWith('\n') ? r.stdout : r.stdout + '\n', 0o644);
          },
        },
      ];
    }
    return [
      { kind: 'mkdir', path: dirname(key), mode: 0o700 },
      {
        kind: 'run',
        cmd: { argv: ['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `hbs@${ctx.deps.hostname()}`, '-f', key] },
      },
    ];
  },
};
