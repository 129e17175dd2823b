// Runs INSIDE the test VM (as root, real dm-crypt), driven by adopt.vmtest.ts: a reinstalled server
// gets its encrypted image back. `hbs init --encrypt` → files with owners → the stack taken down by
// hand and this machine's hbs state deleted (config, known_hosts, header backup, ssh key, fstab
// block: only the passphrase survives, as after a reinstall) → `hbs init --adopt` with the
// passphrase on stdin → same LUKS UUID, same ext4 UUID, data and owners intact → umount.
// Prints `name=value` lines the test checks. Argument: a scratch directory (shared with the host).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(fileURLToPath(import.meta.url), '../../..');
const { startBox } = await import(join(repo, 'dist/testing/stand-in-box.js'));
const HBS = join(repo, 'bin/hbs');
const scratch = process.argv[2] ?? '/tmp/hbs-adopt';
const PASS = 'vm adopt passphrase';
const env = { ...process.env, NO_COLOR: '1', HBS_TEST_CHEAP_PBKDF: '1' };
const out = (k, v) => console.log(`${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
const sh = (file, args, opts = {}) => execFileSync(file, args, { encoding: 'utf8', ...opts });
function hbs(args, input = '', extraEnv = {}) {
  const t = Date.now();
  const r = spawnSync(HBS, args, { input, env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t };
}
function must(name, r) {
  out(`${name}.exit`, r.code);
  out(`${name}.ms`, r.ms);
  if (r.code !== 0) {
    console.log(r.stdout);
    console.error(r.stderr);
    throw new Error(`${name} failed (exit ${r.code})`);
  }
}
const blkidValue = (dev, key) => sh('blkid', ['--probe', '--match-tag', key, '--output', 'value', dev]).trim();

mkdirSync(scratch, { recursive: true });
// The VM has no NIC, and its loopback starts down: sshd on 127.0.0.1 needs it up.
spawnSync('ip', ['link', 'set', 'lo', 'up']);
const box = await startBox();
const etc = join(scratch, 'etc');
const p = {
  boxMount: join(scratch, 'box'),
  mountPoint: join(scratch, 'data'),
  keys: join(scratch, 'keys'),
  key: join(scratch, 'keys/hbs_key'),
  fstab: join(scratch, 'fstab'),
  config: join(etc, 'config.json'),
};
writeFileSync(p.fstab, '');
const where = [
  '--user', box.user, '--host', box.host, '--port', String(box.port),
  '--box-mount', p.boxMount, '--mount-point', p.mountPoint, '--ssh-key', p.key,
  '--host-key-fingerprint', box.hostKeyFingerprint, '--fstab', p.fstab, '--config', p.config,
];
const boxPw = { HBS_BOX_PASSWORD: box.password };
let mapper = 'hbs-filesystem';
try {
  // 1. The first server: encrypted init, 4 GiB (sparse; --force: the guest's box is small), passphrase on stdin.
  must('init', hbs(['init', '--yes', '--force', '--encrypt', '--luks-passphrase-stdin', '--size', '4G', ...where], PASS + '\n', boxPw));
  const cfg = JSON.parse(readFileSync(p.config, 'utf8'));
  mapper = cfg.encryption.mapperName;
  const image = join(box.home, cfg.image.name);
  const luksUuid = blkidValue(image, 'UUID');
  out('before.luksUuid', luksUuid);
  out('before.ext4Uuid', cfg.image.uuid);

  // 2. Files with owners.
  mkdirSync(join(p.mountPoint, 'd'));
  writeFileSync(join(p.mountPoint, 'd/f'), 'kept across the reinstall\n');
  sh('chown', ['1234:5678', join(p.mountPoint, 'd/f')]);
  sh('sync');

  // 3. The reinstall: the stack goes down by hand (no `hbs umount`), and this machine forgets hbs.
  sh('umount', [p.mountPoint]);
  sh('cryptsetup', ['close', mapper]);
  sh('fusermount3', ['-u', p.boxMount]);
  rmSync(etc, { recursive: true, force: true });
  rmSync(p.keys, { recursive: true, force: true });
  writeFileSync(p.fstab, '');

  // 4. `hbs init --adopt`, the passphrase on stdin; --verbose shows every command that ran.
  const adopt = hbs(['init', '--yes', '--adopt', '--luks-passphrase-stdin', '--verbose', ...where], PASS + '\n', boxPw);
  must('adopt', adopt);
  console.log(adopt.stdout);
  out('adopt.ran', adopt.stdout.split('\n').filter((l) => l.includes('$ cryptsetup') || l.includes('$ mkfs') || l.includes('$ mke2fs') || l.includes('$ truncate')).map((l) => l.trim().split(' ').slice(0, 3).join(' ')));
  out('adopt.passphraseShown', adopt.stdout.includes(PASS) || adopt.stderr.includes(PASS));
  const after = JSON.parse(readFileSync(p.config, 'utf8'));
  out('after.luksUuid', blkidValue(image, 'UUID'));
  out('after.ext4Uuid', after.image.uuid);
  out('after.sizeBytes', after.image.sizeBytes);
  out('after.encryption', after.encryption);
  out('after.mountOptions', after.filesystem.mountOptions);
  out('header.mode', sh('stat', ['-c', '%a', after.encryption.headerBackup]).trim());
  out('header.uuid', blkidValue(after.encryption.headerBackup, 'UUID'));
  out('mounted', sh('findmnt', ['-n', '-o', 'SOURCE', p.mountPoint]).trim());
  out('data', readFileSync(join(p.mountPoint, 'd/f'), 'utf8').trim());
  out('owner', sh('stat', ['-c', '%u:%g', join(p.mountPoint, 'd/f')]).trim());
  out('fstab', readFileSync(p.fstab, 'utf8').split('\n').filter((l) => l.startsWith('/dev/mapper')).join(' | '));
  out('status.healthy', hbs(['status', '--json', '--config', p.config]).code === 0);

  // 5. Down again, and nothing left behind.
  must('umount', hbs(['umount', '--config', p.config]));
  out('leftover.loops', sh('losetup', ['-a']).trim());
  out('leftover.mappers', sh('ls', ['/dev/mapper']).trim().split(/\s+/).filter((n) => n !== 'control').join(','));
  out('done', true);
} finally {
  spawnSync('umount', [p.mountPoint]);
  spawnSync('cryptsetup', ['close', mapper]);
  spawnSync('fusermount3', ['-u', p.boxMount]);
  await box.stop();
}
