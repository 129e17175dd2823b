/**
 * The stand-in box kept in a state directory (what the VM reboot test needs): stopped, and started
 * again with an /etc/passwd that no longer knows the account, it is the same box — account, uid,
 * files, host key, port, password.
 */
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { e2eUnavailable, startBox, type StandInBox } from '../support/stand-in-box.js';

const skip = await e2eUnavailable();
if (skip) console.warn(`skipping the stand-in box state test: ${skip}`);

const knows = async (user: string): Promise<boolean> => (await execa('getent', ['passwd', user], { reject: false })).exitCode === 0;

describe.skipIf(skip !== undefined)('stand-in box with a state directory', () => {
  let dir = '';
  let box: StandInBox | undefined;
  afterAll(async () => {
    await box?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('comes back as the same box after stop(), with its files and host key', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hbs-box-state-'));
    await chmod(dir, 0o755); // the account must reach its home below it
    const state = join(dir, 'box');
    const first = await startBox({ stateDir: state });
    box = first;
    expect(first.home).toBe(join(state, 'home'));
    const file = join(first.home, 'kept');
    await writeFile(file, 'still here\n');
    const owner = (await stat(first.home)).uid;
    await execa('chown', [`${owner}:${owner}`, file]);
    await first.stop();
    box = undefined;
    // What a second boot looks like: no account in /etc/passwd, the state directory still there.
    expect(await knows(first.user)).toBe(false);
    expect((await stat(file)).size).toBe(11);
    // As if its uid had gone to another account meanwhile: the files belong to a stranger now.
    await execa('chown', ['-R', '4242:4242', first.home]);

    const again = await startBox({ stateDir: state });
    box = again;
    expect({ user: again.user, port: again.port, password: again.password, fingerprint: again.hostKeyFingerprint, home: again.home }).toEqual({
      user: first.user,
      port: first.port,
      password: first.password,
      fingerprint: first.hostKeyFingerprint,
      home: first.home,
    });
    // It owns its home and files again (under whatever uid was free this time).
    const uid = Number((await execa('id', ['-u', again.user])).stdout.trim());
    expect([(await stat(again.home)).uid, (await stat(file)).uid]).toEqual([uid, uid]);
    // The account can log in with a key and sees its file.
    const key = join(dir, 'id');
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    await execa('install', ['-d', '-m', '0700', '-o', again.user, join(again.home, '.ssh')]);
    await execa('install', ['-m', '0600', '-o', again.user, `${key}.pub`, join(again.home, '.ssh', 'authorized_keys')]);
    const r = await execa('sftp', ['-P', String(again.port), '-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-b', '-', `${again.user}@127.0.0.1`], {
      input: 'ls\n',
    });
    expect(r.stdout).toContain('kept');
    await again.stop();
    box = undefined;
    expect(await knows(again.user)).toBe(false);
  });
});
