// Runs INSIDE the test VM (as root, real dm-crypt), driven by multi.vmtest.ts: two encrypted configs
// in one directory (etc/a.json with --luks-unattended and a crypttab line, etc/b.json with a
// passphrase), on two stand-in boxes, the same image name and no --luks-name: each derives its own
// mapping, header backup and kept key from its config's name. Both open and mounted at once →
// status of each and status --all → uninstall a (b untouched, healthy; a's header backup kept) →
// init --adopt a with its passphrase → data back → uninstall both: fstab and crypttab as they were.
// Prints `name=value` lines; exits non-zero on the first unexpected result. Argument: a scratch directory.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHEAP_KDF, testSupport, env, HBS, hbs, loopbackUp, must, out, sh } from './guest.mjs';

const { startBox } = await testSupport('stand-in-box.js');
const scratch = process.argv[2] ?? '/tmp/hbs-multi';
const PASS = { a: 'vm passphrase of a', b: 'vm passphrase of b' };
const FSTAB = '# fstab of the VM test\nUUID=0000 / ext4 defaults 0 1';
const CRYPTTAB = '# crypttab of the VM test\nswap /dev/sdz /dev/urandom swap';

mkdirSync(join(scratch, 'etc'), { recursive: true });
loopbackUp();
const boxes = { a: await startBox(), b: await startBox() };
const fstab = join(scratch, 'fstab');
const crypttab = join(scratch, 'crypttab');
writeFileSync(fstab, FSTAB);
writeFileSync(crypttab, CRYPTTAB);
const config = (n) => join(scratch, 'etc', `${n}.json`);
const mountPoint = (n) => join(scratch, n, 'data');
const boxMount = (n) => join(scratch, n, 'box');
const where = (n) => {
  const box = boxes[n];
  return [
    '--config', config(n), 'init', '--yes', '--user', box.user, '--host', box.host, '--port', String(box.port),
    '--box-mount', boxMount(n), '--mount-point', mountPoint(n), '--ssh-key', join(scratch, 'keys', 'hbs_key'),
    '--host-key-fingerprint', box.hostKeyFingerprint, '--fstab', fstab, '--systemd-dir', join(scratch, 'systemd'),
    '--luks-passphrase-stdin',
  ];
};
const unattended = ['--luks-unattended', '--crypttab', crypttab];
const mapper = (n) => JSON.parse(readFileSync(config(n), 'utf8')).encryption;
/** `hbs status` of a config: its exit code; its report printed when not healthy. */
const status = (n) => {
  const r = hbs(['--config', config(n), 'status']);
  if (r.code !== 0) console.log(`status of ${n}:\n${r.stdout}${r.stderr}`);
  return r.code;
};
const source = (mp) => sh('findmnt', ['-n', '-o', 'SOURCE', mp], { stdio: ['ignore', 'pipe', 'ignore'] }).trim();
try {
  // 1. two encrypted inits, same image name, derived names.
  for (const n of ['a', 'b']) {
    const r = must(`init.${n}`, hbs([...where(n), '--encrypt', ...CHEAP_KDF, '--size', '160M', ...(n === 'a' ? unattended : [])], PASS[n] + '\n', { HBS_BOX_PASSWORD: boxes[n].password }));
    if (r.code !== 0) console.log(r.stdout);
    out(`${n}.encryption`, mapper(n));
    out(`${n}.mounted`, source(mountPoint(n)));
    writeFileSync(join(mountPoint(n), 'whose'), `${n}'s data\n`);
  }
  sh('sync');
  out('both.mappers', sh('ls', ['/dev/mapper']).trim().split(/\s+/).filter((x) => x !== 'control').sort().join(','));
  for (const n of ['a', 'b']) out(`${n}.status.exit`, status(n));
  const all = hbs(['--config', config('a'), 'status', '--all']);
  out('all.exit', all.code);
  if (all.code !== 0) console.log(all.stdout + all.stderr);
  out('all.lines', all.stdout.trim().split('\n').length);

  // 2. uninstall a: b stays as it is, open and healthy; a's header backup stays.
  const header = mapper('a').headerBackup;
  const keptKey = mapper('a').unattendedKeyFile;
  const bConfig = readFileSync(config('b'), 'utf8');
  const u = must('uninstall.a', hbs(['--config', config('a'), 'uninstall', '--yes']));
  out('uninstall.a.saysHeader', u.stdout.includes(`the LUKS header backup: ${header}`));
  out('a.after.mapperOpen', spawnSync('cryptsetup', ['status', 'hbs-a-filesystem']).status === 0);
  out('a.after.mounted', spawnSync('findmnt', [mountPoint('a')]).status === 0);
  out('a.after.config', existsSync(config('a')));
  out('a.after.header', existsSync(header));
  out('a.after.keptKey', existsSync(keptKey));
  out('a.after.crypttab', readFileSync(crypttab, 'utf8') === CRYPTTAB);
  out('a.after.image', existsSync(join(boxes.a.home, 'filesystem.img')));
  out('b.after.config', readFileSync(config('b'), 'utf8') === bConfig);
  out('b.after.status.exit', status('b'));
  out('b.after.data', readFileSync(join(mountPoint('b'), 'whose'), 'utf8').trim());
  out('b.after.mounted', source(mountPoint('b')));

  // 3. init --adopt a with its passphrase: the same image back, with its data.
  const adopt = hbs([...where('a'), '--adopt'], PASS.a + '\n', { HBS_BOX_PASSWORD: boxes.a.password });
  must('adopt.a', adopt);
  out('adopt.a.data', readFileSync(join(mountPoint('a'), 'whose'), 'utf8').trim());
  out('adopt.a.status.exit', status('a'));
  out('adopt.all.exit', hbs(['--config', config('b'), 'status', '--all']).code);

  // 4. both uninstalled: the fstab and crypttab as they were, nothing open.
  for (const n of ['b', 'a']) must(`uninstall2.${n}`, hbs(['--config', config(n), 'uninstall', '--yes']));
  out('end.fstab', readFileSync(fstab, 'utf8') === FSTAB);
  out('end.crypttab', readFileSync(crypttab, 'utf8') === CRYPTTAB);
  out('leftover.loops', sh('losetup', ['-a']).trim());
  out('leftover.mappers', sh('ls', ['/dev/mapper']).trim().split(/\s+/).filter((x) => x !== 'control').join(','));
  out('done', true);
} finally {
  for (const n of ['a', 'b']) {
    spawnSync('umount', [mountPoint(n)]);
    spawnSync('cryptsetup', ['close', `hbs-${n}-filesystem`]);
    spawnSync('fusermount3', ['-u', boxMount(n)]);
  }
  await boxes.a.stop();
  await boxes.b.stop();
}
void env;
void HBS;
