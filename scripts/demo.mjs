#!/usr/bin/env node
// `npm run demo` (as root): a throwaway local stand-in box, `hbs init` against it, files with
// several owners, unmount and mount again from the fstab hbs wrote, `ls -ln`, and a clean-up.
import { execa } from 'execa';
import { spawnSync } from 'node:child_process';
import { chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { missingForE2e, startBox } from '../build/test-support/stand-in-box.js';
import { teardown } from '../build/test-support/teardown.js';

const root = resolve(import.meta.dirname, '..');
const hbs = join(root, 'bin', 'hbs');
const say = (s) => console.log(`\n\x1b[1m== ${s}\x1b[0m`);
const sh = (cmd, args, opts = {}) => execa(cmd, args, { stdio: 'inherit', ...opts });

const missing = await missingForE2e();
if (missing) {
  console.error(`demo: ${missing}`);
  // Which Debian packages are missing (the tests' list, a superset of the demo's), and how to get them.
  spawnSync('bash', [join(root, 'scripts', 'test'), '--check'], { stdio: ['ignore', 2, 2] });
  if (process.getuid?.() !== 0) console.error('demo: run it as root');
  console.error('demo: `scripts/test --deps` (as root) installs the Debian packages it needs (and those of the tests)');
  process.exit(3);
}

say('starting a stand-in Storage Box: sshd on 127.0.0.1, an account with a password');
const box = await startBox();
const t = await mkdtemp(join(tmpdir(), 'hbs-demo-'));
const p = { boxMount: join(t, 'box'), mountPoint: join(t, 'backup'), fstab: join(t, 'fstab'), config: join(t, 'hbs', 'config.json'), key: join(t, 'hbs_ed25519') };
console.log(`box: ${box.user}@${box.host} port ${box.port}, host key ${box.hostKeyFingerprint}`);
try {
  say('hbs init (password on stdin, fstab and config in a temp dir)');
  await sh(hbs, ['init', '--yes', '--user', box.user, '--host', box.host, '--port', String(box.port), '--size', '20G',
    '--host-key-fingerprint', box.hostKeyFingerprint, '--password-stdin', '--box-mount', p.boxMount,
    '--mount-point', p.mountPoint, '--ssh-key', p.key, '--fstab', p.fstab, '--config', p.config], { input: box.password + '\n', stdio: ['pipe', 'inherit', 'inherit'] });

  say('writing files with several owners into the filesystem');
  for (const [name, uid, gid] of [['alice', 1001, 1001], ['bob', 1002, 100], ['www', 33, 33], ['root-only', 0, 0]]) {
    await mkdir(join(p.mountPoint, name), { recursive: true });
    await writeFile(join(p.mountPoint, name, 'file.txt'), `${name}\n`);
    await chown(join(p.mountPoint, name), uid, gid);
    await chown(join(p.mountPoint, name, 'file.txt'), uid, gid);
  }
  say('what plain sshfs does with the same chown');
  await execa('chown', ['4242:4242', join(p.boxMount, '.profile')]).then(
    () => console.log('chown on plain sshfs worked (unexpected)'),
    (e) => console.log(e.stderr.trim()),
  );

  say('unmount everything, then mount again from the fstab lines hbs wrote');
  await teardown([p.mountPoint], [p.boxMount]);
  await sh('mount', ['--fstab', p.fstab, p.boxMount]);
  await sh('mount', ['--fstab', p.fstab, p.mountPoint]);
  await sh('ls', ['-ln', p.mountPoint]);
  say('the image on the box: apparent size vs bytes allocated');
  await sh('du', ['-h', '--apparent-size', join(box.home, 'filesystem.img')]);
  await sh('du', ['-h', join(box.home, 'filesystem.img')]);
  say('the fstab block');
  await sh('cat', [p.fstab]);
} finally {
  say('cleaning up');
  await teardown([p.mountPoint], [p.boxMount]);
  await box.stop();
  await rm(t, { recursive: true, force: true });
  console.log('done: nothing left mounted, attached or running');
}
