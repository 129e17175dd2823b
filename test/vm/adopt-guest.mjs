// Runs INSIDE the test VM (as root, real dm-crypt), driven by adopt.vmtest.ts: a reinstalled server
// gets its encrypted image back. `hbs init --encrypt` → files with owners → the stack taken down by
// hand and this machine's hbs state deleted (config, known_hosts, header backup, ssh key, fstab
// block: only the passphrase survives, as after a reinstall) → `hbs init --adopt` with the
// passphrase on stdin → same LUKS UUID, same ext4 UUID, data and owners intact → umount.
// Prints `name=value` lines the test checks. Argument: a scratch directory (shared with the host).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testSupport, hbs as guestHbs, loopbackUp, must, out, sh } from './guest.mjs';

const { startBox } = await testSupport('stand-in-box.js');
const scratch = process.argv[2] ?? '/tmp/hbs-adopt';
const PASS = 'vm adopt passphrase';
const hbs = guestHbs;
const blkidValue = (dev, key) => sh('blkid', ['--probe', '--match-tag', key, '--output', 'value', dev]).trim();

mkdirSync(scratch, { recursive: true });
loopbackUp();
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
