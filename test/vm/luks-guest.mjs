// Runs INSIDE the test VM (as root, real dm-crypt), driven by luks.vmtest.ts: the built bin/hbs
// against a stand-in box (sshd) started here. Prints `name=value` lines the test checks; exits
// non-zero on the first unexpected result. Argument: a scratch directory (shared with the host).
//   1-6  hbs init --encrypt → files → idle → umount → wrong key → mount → umount → e2fsck -fn
//   7    the same boot goes on as a reinstalled server (it needs an encrypted image with files, which
//        1-6 leave): hbs's local state deleted except the passphrase → `hbs init --adopt` with the
//        passphrase on stdin → same LUKS and ext4 UUIDs, data intact → umount. (`adopt.*` lines.)
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHEAP_KDF, testSupport, env, HBS, hbs as guestHbs, loopbackUp, must, out, sh } from './guest.mjs';

const { startBox } = await testSupport('stand-in-box.js');
const scratch = process.argv[2] ?? '/tmp/hbs-luks';
const PASS = 'vm test passphrase';
const hbs = (args, input = '', extraEnv = {}) => guestHbs(args, input, extraEnv);
const blkidValue = (dev, key) => sh('blkid', ['--probe', '--match-tag', key, '--output', 'value', dev]).trim();
/**
 * What `hbs status --json` says of the stack. The 100 GiB image is thin on a box of a few hundred MiB, so
 * status rightly exits 1 for the space alone (the box cannot hold what ext4 believes is free): every
 * other part must be healthy, and the shortfall reported.
 */
const statusFacts = (prefix, st) => {
  const doc = JSON.parse(st.stdout);
  out(`${prefix}.exit`, st.code);
  out(`${prefix}.spaceShort`, doc.space?.ok === false && doc.space.shortBytes > 0);
  const upApartFromSpace =
    doc.box.state === 'up' && doc.filesystem.state === 'up' && doc.lock.state === 'ours' && doc.fstab.state === 'ok' &&
    doc.encryption?.state === 'open' && doc.encryption.headerBackup.present && doc.filesystem.errors.count === 0 &&
    doc.filesystem.errors.kernel.lines === 0 && doc.boot.state !== 'missing';
  out(`${prefix}.upApartFromSpace`, upApartFromSpace);
  if (!upApartFromSpace) out(`${prefix}.doc`, JSON.stringify(doc));
};

mkdirSync(scratch, { recursive: true });
loopbackUp();
const box = await startBox();
const p = {
  boxMount: join(scratch, 'box'),
  mountPoint: join(scratch, 'data'),
  key: join(scratch, 'keys/hbs_key'),
  fstab: join(scratch, 'fstab'),
  config: join(scratch, 'etc/config.json'),
};
writeFileSync(p.fstab, '');
const common = ['--config', p.config];
try {
  // 1. encrypted init, 100 GiB, passphrase on stdin, box password from the environment.
  const init = spawnSync(
    HBS,
    [
      'init', '--yes', '--force', '--encrypt', ...CHEAP_KDF, '--luks-passphrase-stdin',
      '--user', box.user, '--host', box.host, '--port', String(box.port), '--size', '100G',
      '--box-mount', p.boxMount, '--mount-point', p.mountPoint, '--ssh-key', p.key,
      '--host-key-fingerprint', box.hostKeyFingerprint, '--fstab', p.fstab, '--config', p.config,
    ],
    { input: PASS + '\n', env: { ...env, HBS_BOX_PASSWORD: box.password }, encoding: 'utf8', timeout: 600_000 },
  );
  must('init', { code: init.status, stdout: init.stdout, stderr: init.stderr, ms: 0 });
  console.log(init.stdout);
  const cfg = JSON.parse(readFileSync(p.config, 'utf8'));
  out('config.encryption', cfg.encryption);
  out('config.mountOptions', cfg.filesystem.mountOptions);
  const image = join(box.home, cfg.image.name);
  const allocated = () => Number(sh('du', ['--block-size=1', image]).split(/\s+/)[0]);
  out('alloc.afterInit', allocated());
  out('mapper.afterInit', sh('findmnt', ['-n', '-o', 'SOURCE', p.mountPoint]).trim());
  out('header.mode', (Number(sh('stat', ['-c', '%a', cfg.encryption.headerBackup]).trim())));
  out('argvLeak', sh('ps', ['-eo', 'args']).includes(PASS));

  // 2. files with owners.
  mkdirSync(join(p.mountPoint, 'd'));
  writeFileSync(join(p.mountPoint, 'd/f'), 'hello luks\n');
  sh('chown', ['1234:5678', join(p.mountPoint, 'd/f')]);
  sh('sync');

  // 3. idle with the filesystem mounted: nothing may zero inode tables in the background (without
  // noinit_itable, ext4lazyinit wrote ~180 MiB in 20 s through sshfs: a few seconds show it).
  await new Promise((r) => setTimeout(r, Number(process.env.IDLE_MS ?? 15_000)));
  out('alloc.afterIdle', allocated());

  // 4. status, umount (unmount → close → box), mapping gone.
  const st = hbs(['status', '--json', ...common]);
  out('status.exit', st.code);
  out('status.encryption', JSON.parse(st.stdout).encryption);
  must('umount', hbs(['umount', ...common]));
  out('mapperAfterUmount', spawnSync('cryptsetup', ['status', cfg.encryption.mapperName]).status);

  // 5. a wrong key: refused, nothing mounted, no lock; then the right one.
  const wrong = hbs(['mount', '--luks-key-stdin', ...common], 'not the passphrase');
  out('wrong.exit', wrong.code);
  out('wrong.stderr', wrong.stderr.trim().split('\n')[0]);
  out('wrong.fsMounted', spawnSync('findmnt', [p.mountPoint]).status === 0);
  out('wrong.mapperOpen', spawnSync('cryptsetup', ['status', cfg.encryption.mapperName]).status === 0);
  must('mount', hbs(['mount', '--luks-key-stdin', ...common], PASS));
  out('data', readFileSync(join(p.mountPoint, 'd/f'), 'utf8').trim());
  out('owner', sh('stat', ['-c', '%u:%g', join(p.mountPoint, 'd/f')]).trim());
  statusFacts('remount.status', hbs(['status', '--json', ...common]));

  // 6. umount, then e2fsck -fn on the opened mapping.
  must('umount2', hbs(['umount', ...common]));
  sh('sshfs', ['-o', `port=${box.port},IdentityFile=${p.key},UserKnownHostsFile=${join(scratch, 'etc/known_hosts')},StrictHostKeyChecking=yes`, `${box.user}@${box.host}:`, p.boxMount]);
  sh('cryptsetup', ['open', '--key-file', '-', image, 'hbs-check'], { input: PASS });
  const fsck = spawnSync('e2fsck', ['-fn', '/dev/mapper/hbs-check'], { encoding: 'utf8' });
  out('fsck.exit', fsck.status);
  sh('cryptsetup', ['close', 'hbs-check']);
  sh('fusermount3', ['-u', p.boxMount]);
  out('alloc.final', allocated());
  out('fstab', readFileSync(p.fstab, 'utf8').split('\n').filter((l) => l.startsWith('/dev/mapper')).join(' | '));
  out('leftover.loops', sh('losetup', ['-a']).trim());
  out('leftover.mappers', sh('ls', ['/dev/mapper']).trim().split(/\s+/).filter((n) => n !== 'control').join(','));
  out('done', true);

  // 7. A reinstalled server adopts the image. The stack is down (6.); this machine forgets hbs: config,
  // known_hosts and header backup (etc/), the SSH key, the fstab block. Only the passphrase survives.
  const luksUuid = blkidValue(image, 'UUID');
  out('adopt.before.luksUuid', luksUuid);
  out('adopt.before.ext4Uuid', cfg.image.uuid);
  rmSync(join(scratch, 'etc'), { recursive: true, force: true });
  rmSync(join(scratch, 'keys'), { recursive: true, force: true });
  writeFileSync(p.fstab, '');
  const where = [
    '--user', box.user, '--host', box.host, '--port', String(box.port),
    '--box-mount', p.boxMount, '--mount-point', p.mountPoint, '--ssh-key', p.key,
    '--host-key-fingerprint', box.hostKeyFingerprint, '--fstab', p.fstab, '--config', p.config,
  ];
  // --verbose shows every command that ran.
  const adopt = must('adopt', hbs(['init', '--yes', '--adopt', '--luks-passphrase-stdin', '--verbose', ...where], PASS + '\n', { HBS_BOX_PASSWORD: box.password }));
  console.log(adopt.stdout);
  out('adopt.ran', adopt.stdout.split('\n').filter((l) => l.includes('$ cryptsetup') || l.includes('$ mkfs') || l.includes('$ mke2fs') || l.includes('$ truncate')).map((l) => l.trim().split(' ').slice(0, 3).join(' ')));
  out('adopt.passphraseShown', adopt.stdout.includes(PASS) || adopt.stderr.includes(PASS));
  const after = JSON.parse(readFileSync(p.config, 'utf8'));
  out('adopt.after.luksUuid', blkidValue(image, 'UUID'));
  out('adopt.after.ext4Uuid', after.image.uuid);
  out('adopt.after.sizeBytes', after.image.sizeBytes);
  out('adopt.after.encryption', after.encryption);
  out('adopt.after.mountOptions', after.filesystem.mountOptions);
  out('adopt.header.mode', sh('stat', ['-c', '%a', after.encryption.headerBackup]).trim());
  out('adopt.header.uuid', blkidValue(after.encryption.headerBackup, 'UUID'));
  out('adopt.mounted', sh('findmnt', ['-n', '-o', 'SOURCE', p.mountPoint]).trim());
  out('adopt.data', readFileSync(join(p.mountPoint, 'd/f'), 'utf8').trim());
  out('adopt.owner', sh('stat', ['-c', '%u:%g', join(p.mountPoint, 'd/f')]).trim());
  out('adopt.fstab', readFileSync(p.fstab, 'utf8').split('\n').filter((l) => l.startsWith('/dev/mapper')).join(' | '));
  statusFacts('adopt.status', hbs(['status', '--json', ...common]));
  must('adopt.umount', hbs(['umount', ...common]));
  out('adopt.leftover.loops', sh('losetup', ['-a']).trim());
  out('adopt.leftover.mappers', sh('ls', ['/dev/mapper']).trim().split(/\s+/).filter((n) => n !== 'control').join(','));
  out('adopt.done', true);
} finally {
  spawnSync('umount', [p.mountPoint]);
  spawnSync('cryptsetup', ['close', 'hbs-filesystem']);
  spawnSync('fusermount3', ['-u', p.boxMount]);
  await box.stop();
}
