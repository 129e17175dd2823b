import { chmod, mkdir, open, readFile, rename, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Action } from '../../core/action.js';
import { EXIT, HbsError, UsageError } from '../../core/errors.js';
import { fileExists } from '../../core/files.js';
import type { Step } from '../../core/step.js';
import { mergeAuthorizedKeys, parseOpenSshPublicKey } from '../../lib/rfc4716.js';
import { passwordMountArgv, withThrowawayKnownHosts } from '../../lib/ssh.js';
import type { InitCtx } from './context.js';

/**
 * Puts the public key into ~/.ssh/authorized_keys on the box in both formats. Works on a mounted
 * home directory, so it needs nothing but SFTP (which both ports of a real box offer).
 */
export async function installKey(home: string, publicKey: string): Promise<string[]> {
  const key = parseOpenSshPublicKey(publicKey);
  const sshDir = join(home, '.ssh');
  const file = join(sshDir, 'authorized_keys');
  await mkdir(sshDir, { recursive: true, mode: 0o700 });
  await chmod(sshDir, 0o700);
  let existing = '';
  if (await fileExists(file)) existing = await readFile(file, 'utf8');
  const { text, added } = mergeAuthorizedKeys(existing, key);
  if (added.length > 0) {
    const tmp = `${file}.hbs-tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, file);
    } catch {
      // Servers without POSIX rename cannot replace a file by rename: write it in place instead.
      await rm(tmp, { force: true });
      const out = await open(file, 'w', 0o600);
      try {
        await out.writeFile(text);
      } finally {
        await out.close();
      }
    }
  }
  await chmod(file, 0o600);
  return added;
}

/** Whether key login works, with the pinned host key (or, before it is pinned, the confirmed one through a throwaway known_hosts). */
async function keyLogin(ctx: InitCtx, hostKeyPinned: boolean): Promise<boolean> {
  const conn = ctx.stack.conn;
  if (hostKeyPinned) return (await ctx.probe.keyLogin(conn)).ok;
  const key = ctx.state.hostKey;
  if (!key) return false;
  return withThrowawayKnownHosts((prefix) => ctx.deps.mkTempDir(prefix), conn.host, conn.port, key, async (knownHosts) => (await ctx.probe.keyLogin({ ...conn, knownHosts })).ok);
}

/** The key on the box, in both formats, so key login works on both ports. */
export const keyUploadStep: Step<InitCtx> = {
  id: 'key-upload',
  title: 'Key login to the box',
  after: ['ssh-key', 'host-key'],
  async check(ctx) {
    return (await keyLogin(ctx, true)) ? { done: true, detail: `${ctx.opts.user}@${ctx.opts.host} accepts ${ctx.opts.sshKey}` } : { done: false };
  },
  async expect(ctx, pending) {
    // A key made in this run is not on the box; an existing one may be, which a probe with the confirmed host key shows.
    if (pending.includes('ssh-key')) return { done: false, detail: 'the key is not on the box yet' };
    return (await keyLogin(ctx, false)) ? { done: true, detail: `${ctx.opts.user}@${ctx.opts.host} accepts ${ctx.opts.sshKey}` } : { done: false };
  },
  plan(ctx) {
    const conn = ctx.stack.conn;
    const describe = [
      `mount the account's home with the password: ${passwordMountArgv(conn, '<temp dir>').join(' ')} <<(password on stdin)`,
      `add ${conn.key}.pub to .ssh/authorized_keys in RFC4716 and OpenSSH formats (keeping every line there; .ssh 0700, file 0600)`,
      'unmount the temporary mount',
    ];
    return Promise.resolve<Action[]>([
      {
        kind: 'task',
        describe,
        run: async (runner) => {
          const password = ctx.password;
          if (password === undefined) {
            throw new UsageError(
              `key login to ${conn.user}@${conn.host} does not work yet and no box password was given`,
              'pass it with --password-stdin or in the environment variable HBS_BOX_PASSWORD (once; the key is used from then on)',
            );
          }
          const dir = await ctx.deps.mkTempDir('hbs-home-');
          const argv = passwordMountArgv(conn, dir);
          const mounted = await runner.run({ argv, stdin: `${password}\n`, secrets: [password], allowFail: true, timeoutMs: 60_000, detached: true });
          try {
            if (mounted.exitCode !== 0) {
              throw new HbsError(
                `logging in to ${conn.user}@${conn.host} port ${conn.port} with the password failed`,
                EXIT.failed,
                'check the password (and that SFTP is enabled for this account), then re-run',
                mounted.stderr.trim().split('\n').slice(-3).join('\n'),
              );
            }
            const added = await installKey(dir, await readFile(`${conn.key}.pub`, 'utf8'));
            ctx.reporter.line(added.length ? `added the key in ${added.join(' and ')} format` : 'the key was already in authorized_keys');
          } finally {
            if (mounted.exitCode === 0) await runner.run({ argv: ['fusermount3', '-u', dir], allowFail: true });
            // rmdir, never a recursive delete: if the unmount failed, the box's files are still in there.
            await rmdir(dir).catch(() => undefined);
          }
        },
      },
    ]);
  },
  async verify(ctx) {
    const r = await ctx.probe.keyLogin(ctx.stack.conn);
    if (!r.ok) {
      throw new HbsError(
        `the key is on the box, but key login to ${ctx.opts.user}@${ctx.opts.host} still fails`,
        EXIT.failed,
        'the box may take a minute to pick up new keys; re-run `hbs init` (finished steps are skipped)',
        r.stderr,
      );
    }
  },
};
