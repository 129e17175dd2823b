import { chmod, mkdir, open, readFile, rename, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { EXIT, HbsError, UsageError } from '../core/errors.js';
import type { Action, Step } from '../core/plan.js';
import { mergeAuthorizedKeys, parseOpenSshPublicKey } from '../lib/rfc4716.js';
import { keyLoginWorks, sshOptionPairs, sshfsSource, withThrowawayKnownHosts, type BoxConn } from '../lib/ssh.js';
import { sshTarget } from '../lib/host-keys.js';
import { boxConn, type InitContext } from '../init/context.js';
import { fileExists } from '../lib/fs-util.js';

/** The sshfs command that mounts the account's home with the password (read from stdin). */
export function passwordMountArgv(c: BoxConn, dir: string): string[] {
  const opts = [
    'password_stdin',
    `port=${c.port}`,
    'PubkeyAuthentication=no',
    'NumberOfPasswordPrompts=1',
    ...sshOptionPairs(c, { batch: false }).filter((o) => !o.startsWith('IdentityFile=') && o !== 'IdentitiesOnly=yes'),
  ];
  return ['sshfs', '-o', opts.join(','), `${sshTarget(c.user, c.host)}:`, dir];
}

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

export const keyUploadStep: Step<InitContext> = {
  id: 'key-upload',
  title: 'Key login to the box',
  async check(ctx) {
    const c = ctx.opts;
    if (ctx.state.simulated.has('ssh-key')) return { done: false, detail: 'the key is not on the box yet' };
    const conn = boxConn(c);
    let r: { ok: boolean };
    if (ctx.state.simulated.has('host-key')) {
      // Dry-run: the host key is confirmed but not pinned yet; probe with a throwaway known_hosts.
      const key = ctx.state.hostKey;
      if (!key) return { done: false, detail: 'the key is not on the box yet' };
      r = await withThrowawayKnownHosts((prefix) => ctx.deps.mkTempDir(prefix), c.host, c.port, key, (knownHosts) => keyLoginWorks(ctx.runner, { ...conn, knownHosts }));
    } else {
      r = await keyLoginWorks(ctx.runner, conn);
    }
    if (r.ok) return { done: true, detail: `${c.user}@${c.host} accepts ${c.sshKey}` };
    return { done: false };
  },
  plan(ctx) {
    const conn = boxConn(ctx.opts);
    const password = ctx.password;
    if (password === undefined && !ctx.runner.dryRun) {
      // Rejected, not thrown: plan() promises a Promise, and callers may rely on .catch().
      return Promise.reject(
        new UsageError(
          `key login to ${conn.user}@${conn.host} does not work yet and no box password was given`,
          'pass it with --password-stdin or in the environment variable HBS_BOX_PASSWORD (once; the key is used from then on)',
        ),
      );
    }
    const describe = [
      `mount the account's home with the password: ${passwordMountArgv(conn, '<temp dir>').join(' ')} <<(password on stdin)`,
      `add ${conn.key}.pub to .ssh/authorized_keys in RFC4716 and OpenSSH formats (keeping every line there; .ssh 0700, file 0600)`,
      'unmount the temporary mount',
    ];
    return Promise.resolve<Action[]>([
      {
        kind: 'task',
        describe,
        run: async () => {
          const dir = await ctx.deps.mkTempDir('hbs-home-');
          const argv = passwordMountArgv(conn, dir);
          const mounted = await ctx.runner.run({ argv, stdin: `${password ?? ''}\n`, secrets: password ? [password] : [], allowFail: true, timeoutMs: 60_000, detached: true });
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
            if (mounted.exitCode === 0) await ctx.runner.run({ argv: ['fusermount3', '-u', dir], allowFail: true });
            // rmdir, never a recursive delete: if the unmount failed, the box's files are still in there.
            await rmdir(dir).catch(() => undefined);
          }
        },
      },
      {
        kind: 'task',
        describe: [`prove key login over SFTP: sftp -b - -P ${conn.port} … ${sshfsSource({ ...conn, remotePath: '' })}`],
        run: async () => {
          const r = await keyLoginWorks(ctx.runner, conn);
          if (!r.ok) {
            throw new HbsError(
              `the key is on the box, but key login to ${conn.user}@${conn.host} still fails`,
              EXIT.failed,
              'the box may take a minute to pick up new keys; re-run `hbs init` (finished steps are skipped)',
              r.stderr,
            );
          }
        },
      },
    ]);
  },
};
