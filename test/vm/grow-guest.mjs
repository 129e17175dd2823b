// Runs INSIDE the test VM (as root, real dm-crypt, CAP_SYS_RESOURCE), driven by grow.vmtest.ts: the
// built bin/hbs against a stand-in box (sshd) started here. Prints `name=value` lines the test
// checks; exits non-zero on the first unexpected result. Argument: a scratch directory.
//   plain:     init 1 GiB → files → online grow to 2 GiB → size and data checked → unmounted by hand
//   encrypted: init --encrypt 99 GiB → files with owners → grow without a key (refused at once) →
//              a wrong key (refused, nothing changed) → online grow to 100 GiB, key on stdin →
//              data intact → unmount + close (box stays up) → offline grow 100 → 200 GiB →
//              mount → data → idle → umount → e2fsck -fn on the mapping; bytes on the box measured
//              around each grow. (Online, the kernel writes 16 MiB of inode tables per GiB added,
//              as ciphertext through sshfs: 100 GiB online would take far too long under emulation.)
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHEAP_KDF, testSupport, hbs as guestHbs, loopbackUp, must, out, sh } from './guest.mjs';

const { startBox } = await testSupport('stand-in-box.js');
const scratch = process.argv[2] ?? '/tmp/hbs-grow';
const PASS = 'vm grow passphrase';
// A generous limit: an online grow through sshfs under emulation is slow.
const hbs = (args, input = '', extraEnv = {}) => guestHbs(args, input, extraEnv, 900_000);
const firstLine = (s) => s.trim().split('\n')[0] ?? '';
const fsSize = (mp) => Number(sh('df', ['--block-size=1', '--output=size', mp]).trim().split('\n')[1]);
const fileSize = (f) => Number(sh('stat', ['-c', '%s', f]).trim());

mkdirSync(scratch, { recursive: true });
loopbackUp();
const box = await startBox();
// The box's files live in RAM here: a tmpfs of its own, large enough for what an online grow
// writes through LUKS (the root overlay's tmpfs would be capped at half the guest's memory).
sh('mount', ['-t', 'tmpfs', '-o', 'size=3g,mode=0750', 'boxhome', box.home]);
sh('chown', [`${box.user}:${box.user}`, box.home]);
const key = join(scratch, 'keys/hbs_key');
const layout = (name) => ({
  boxMount: join(scratch, name, 'box'),
  mountPoint: join(scratch, name, 'data'),
  fstab: join(scratch, name, 'fstab'),
  config: join(scratch, name, 'etc/config.json'),
});
const plain = layout('plain');
const enc = layout('enc');
function init(p, image, size, extra = [], input = '') {
  mkdirSync(join(p.fstab, '..'), { recursive: true });
  writeFileSync(p.fstab, '');
  return hbs(
    [
      'init', '--yes', '--force', ...extra,
      '--user', box.user, '--host', box.host, '--port', String(box.port), '--size', size, '--image', image,
      '--box-mount', p.boxMount, '--mount-point', p.mountPoint, '--ssh-key', key,
      '--host-key-fingerprint', box.hostKeyFingerprint, '--fstab', p.fstab, '--config', p.config,
    ],
    input,
    { HBS_BOX_PASSWORD: box.password },
  );
}
let encCfg;
try {
  // --- plain: online grow (the VM's root holds CAP_SYS_RESOURCE) ---------------------------------
  must('plain.init', init(plain, 'plain.img', '1G'));
  mkdirSync(join(plain.mountPoint, 'd'));
  writeFileSync(join(plain.mountPoint, 'd/f'), 'hello plain\n');
  sh('chown', ['1234:5678', join(plain.mountPoint, 'd/f')]);
  const pg = must('plain.grow', hbs(['grow', '--size', '2G', '--config', plain.config]));
  out('plain.grow.online', pg.stdout.includes('stayed mounted'));
  out('plain.file', fileSize(join(box.home, 'plain.img')));
  out('plain.fsSize', fsSize(plain.mountPoint));
  out('plain.data', readFileSync(join(plain.mountPoint, 'd/f'), 'utf8').trim());
  out('plain.owner', sh('stat', ['-c', '%u:%g', join(plain.mountPoint, 'd/f')]).trim());
  out('plain.recorded', JSON.parse(readFileSync(plain.config, 'utf8')).image.sizeBytes);
  // Taken down by hand (quicker than another hbs start under emulation); the box stays for later.
  sh('umount', [plain.mountPoint]);
  sh('fusermount3', ['-u', plain.boxMount]);

  // --- encrypted ---------------------------------------------------------------------------------
  must('enc.init', init(enc, 'secret.img', '99G', ['--encrypt', ...CHEAP_KDF, '--luks-passphrase-stdin'], PASS + '\n'));
  encCfg = JSON.parse(readFileSync(enc.config, 'utf8'));
  out('enc.mountOptions', encCfg.filesystem.mountOptions);
  const image = join(box.home, 'secret.img');
  const allocated = () => {
    sh('sync');
    return Number(sh('du', ['--block-size=1', image]).split(/\s+/)[0]);
  };
  const common = ['--config', enc.config];
  // The stand-in box is a 3 GiB tmpfs: --force lets a sparse 200 GiB image onto it.
  const growArgs = (size, ...more) => ['grow', '--size', size, '--force', ...more, ...common];
  mkdirSync(join(enc.mountPoint, 'd'));
  writeFileSync(join(enc.mountPoint, 'd/f'), 'hello luks grow\n');
  sh('chown', ['1234:5678', join(enc.mountPoint, 'd/f')]);
  sh('mkdir', ['-p', join(enc.mountPoint, 'e')]);
  sh('chown', ['42:43', join(enc.mountPoint, 'e')]);
  out('enc.fsSize.before', fsSize(enc.mountPoint));
  out('alloc.beforeOnline', allocated());

  // No key flag, no unattended key, no terminal: refused at once, nothing changed.
  const nokey = hbs(growArgs('100G', '--yes'));
  out('nokey.exit', nokey.code);
  out('nokey.ms', nokey.ms);
  out('nokey.stderr', firstLine(nokey.stderr));
  // A wrong key: refused before the file is touched.
  const wrong = hbs(growArgs('100G', '--luks-key-stdin'), 'not the passphrase');
  out('wrong.exit', wrong.code);
  out('wrong.stderr', firstLine(wrong.stderr));
  out('wrong.file', fileSize(image));
  out('wrong.recorded', JSON.parse(readFileSync(enc.config, 'utf8')).image.sizeBytes);

  // Online, key on stdin; --verbose shows each command as it runs.
  const og = must('enc.growOnline', hbs(growArgs('100G', '--luks-key-stdin', '--verbose'), PASS));
  console.log(og.stdout);
  out('online.leak', og.stdout.includes(PASS) || og.stderr.includes(PASS) || sh('ps', ['-eo', 'args']).includes(PASS));
  out('online.resizeLine', og.stdout.split('\n').find((l) => l.includes('cryptsetup resize'))?.trim() ?? '');
  out('online.stayedMounted', og.stdout.includes('stayed mounted'));
  out('alloc.afterOnline', allocated());
  out('enc.file.afterOnline', fileSize(image));
  out('enc.fsSize.afterOnline', fsSize(enc.mountPoint));
  out('enc.mountOpts.afterOnline', sh('findmnt', ['-n', '-o', 'OPTIONS', enc.mountPoint]).trim());
  out('enc.data.afterOnline', readFileSync(join(enc.mountPoint, 'd/f'), 'utf8').trim());
  out('enc.owner.afterOnline', sh('stat', ['-c', '%u:%g', join(enc.mountPoint, 'd/f'), join(enc.mountPoint, 'e')]).trim().split('\n').join(','));
  out('enc.recorded.afterOnline', JSON.parse(readFileSync(enc.config, 'utf8')).image.sizeBytes);

  // Offline: the filesystem unmounted and the mapping closed, the box still mounted; key on stdin.
  // The mapping is closed again afterwards.
  sh('umount', [enc.mountPoint]);
  sh('cryptsetup', ['close', encCfg.encryption.mapperName]);
  out('alloc.beforeOffline', allocated());
  const fg = must('enc.growOffline', hbs(growArgs('200G', '--luks-key-stdin'), PASS));
  out('offline.notMounted', fg.stdout.includes('offline (it was not mounted)'));
  out('offline.leak', fg.stdout.includes(PASS) || fg.stderr.includes(PASS));
  out('alloc.afterOffline', allocated());
  out('offline.mapperOpen', spawnSync('cryptsetup', ['status', encCfg.encryption.mapperName]).status === 0);
  out('offline.loops', sh('losetup', ['-a']).trim());
  must('enc.mount', hbs(['mount', '--luks-key-stdin', ...common], PASS));
  out('enc.fsSize.afterOffline', fsSize(enc.mountPoint));
  out('enc.data.afterOffline', readFileSync(join(enc.mountPoint, 'd/f'), 'utf8').trim());
  out('enc.owner.afterOffline', sh('stat', ['-c', '%u:%g', join(enc.mountPoint, 'd/f'), join(enc.mountPoint, 'e')]).trim().split('\n').join(','));
  // Mounted with noinit_itable: nothing may zero the new groups' inode tables in the background.
  await new Promise((r) => setTimeout(r, Number(process.env.IDLE_MS ?? 15_000)));
  out('alloc.afterOfflineIdle', allocated());
  out('enc.recorded.afterOffline', JSON.parse(readFileSync(enc.config, 'utf8')).image.sizeBytes);

  // Mounted, --offline: unmounted for the resize from the start (never the online resize, which
  // would write the new inode tables as ciphertext), mounted again.
  out('alloc.beforeOfflineFirst', allocated());
  const ff = must('enc.growOfflineFirst', hbs(growArgs('300G', '--offline', '--luks-key-stdin'), PASS));
  out('offlineFirst.unmountedFor', /unmounted for \d+\.\d s/.test(ff.stdout));
  out('offlineFirst.leak', ff.stdout.includes(PASS) || ff.stderr.includes(PASS));
  out('alloc.afterOfflineFirst', allocated());
  out('enc.fsSize.afterOfflineFirst', fsSize(enc.mountPoint));
  out('enc.mountOpts.afterOfflineFirst', sh('findmnt', ['-n', '-o', 'OPTIONS', enc.mountPoint]).trim());
  out('enc.data.afterOfflineFirst', readFileSync(join(enc.mountPoint, 'd/f'), 'utf8').trim());
  out('enc.recorded.afterOfflineFirst', JSON.parse(readFileSync(enc.config, 'utf8')).image.sizeBytes);
  must('enc.umount2', hbs(['umount', ...common]));

  // e2fsck -fn on the mapping, opened by hand.
  sh('sshfs', ['-o', `port=${box.port},IdentityFile=${key},UserKnownHostsFile=${encCfg.ssh.knownHosts},StrictHostKeyChecking=yes`, `${box.user}@${box.host}:`, enc.boxMount]);
  sh('cryptsetup', ['open', '--key-file', '-', image, 'hbs-check'], { input: PASS });
  const t = Date.now();
  const fsck = spawnSync('e2fsck', ['-fn', '/dev/mapper/hbs-check'], { encoding: 'utf8' });
  out('fsck.exit', fsck.status);
  out('fsck.ms', Date.now() - t);
  out('fsck.summary', fsck.stdout.trim().split('\n').at(-1) ?? '');
  sh('cryptsetup', ['close', 'hbs-check']);
  sh('fusermount3', ['-u', enc.boxMount]);
  out('leftover.loops', sh('losetup', ['-a']).trim());
  out('leftover.mappers', sh('ls', ['/dev/mapper']).trim().split(/\s+/).filter((n) => n !== 'control').join(','));
  out('leftover.mounts', sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').filter((m) => m.startsWith(scratch)).join(','));
  out('done', true);
} finally {
  for (const p of [enc, plain]) {
    spawnSync('umount', [p.mountPoint]);
    spawnSync('fusermount3', ['-u', p.boxMount]);
  }
  if (encCfg) spawnSync('cryptsetup', ['close', encCfg.encryption.mapperName]);
  spawnSync('cryptsetup', ['close', 'hbs-check']);
  spawnSync('umount', [box.home]);
  await box.stop();
}
