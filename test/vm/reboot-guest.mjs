// Runs INSIDE the test VM (as root, real dm-crypt), twice, driven by reboot.vmtest.ts: a "reboot" is
// a second boot with the same share. Everything that must survive (the stand-in box's home and host
// key, config, keys, fstab, crypttab, mount points) lives in the share; the rest of the guest's root
// is a tmpfs overlay that vanishes at power-off. Prints `name=value` lines the test checks.
//   node reboot-guest.mjs boot1 STATE   init --encrypt --luks-unattended + a plain init; files;
//                                       the plain stack unmounted by hbs, the encrypted one left
//                                       mounted (power-off without umount: a crash).
//   node reboot-guest.mjs boot2 STATE   the box back from its state; (a) `hbs mount` brings both back
//                                       (unattended key, no prompt), data intact, status, umount;
//                                       (b) what boot does: `mount -a -T fstab`, the crypttab line
//                                       through systemd-cryptsetup, `mount -a -T fstab` again.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHEAP_KDF, dist, testSupport, env, HBS, loopbackUp, must, out, run, sh } from './guest.mjs';

const { startBox } = await testSupport('stand-in-box.js');
const { parseCrypttabLine } = await dist('lib/crypttab.js');
const { blockText } = await dist('core/block.js');
const [phase, state = '/tmp/hbs-reboot'] = process.argv.slice(2);
const PASS = 'vm reboot passphrase';
const NAME = 'hbs-enc';
const hbs = (args, opts = {}) => run(HBS, args, { env, input: '', ...opts });
const mounted = (p) => spawnSync('findmnt', ['--mountpoint', p]).status === 0;
const mappers = () => sh('ls', ['/dev/mapper']).trim().split(/\s+/).filter((n) => n && n !== 'control');
const loops = () => sh('losetup', ['-a']).trim();

const stack = (name) => ({
  config: join(state, name, 'etc/config.json'),
  boxMount: join(state, name, 'box'),
  mountPoint: join(state, name, 'data'),
});
const enc = stack('enc');
const plain = stack('plain');
const sshKey = join(state, 'keys/hbs_key');
const fstab = join(state, 'fstab');
const crypttab = join(state, 'crypttab');
const FOREIGN = '# a line hbs must leave alone\nother /dev/disk/by-uuid/0000 none luks,noauto\n';

/** Files with owners, checked after each way back. */
function writeData(s, text) {
  mkdirSync(join(s.mountPoint, 'd'));
  writeFileSync(join(s.mountPoint, 'd/f'), text);
  sh('chown', ['1234:5678', join(s.mountPoint, 'd/f')]);
}
const readData = (s) => ({ text: readFileSync(join(s.mountPoint, 'd/f'), 'utf8'), owner: sh('stat', ['-c', '%u:%g', join(s.mountPoint, 'd/f')]).trim() });

// The VM has no NIC, and its loopback starts down: sshd on 127.0.0.1 needs it up.
loopbackUp();
mkdirSync(state, { recursive: true });
const box = await startBox({ stateDir: join(state, 'box') });
out(`${phase}.box`, { user: box.user, port: box.port, fingerprint: box.hostKeyFingerprint });

if (phase === 'boot1') {
  writeFileSync(fstab, '');
  writeFileSync(crypttab, FOREIGN, { mode: 0o600 });
  const common = (s, image) => [
    'init', '--yes', '--user', box.user, '--host', box.host, '--port', String(box.port), '--size', '2G', '--image', image,
    '--box-mount', s.boxMount, '--mount-point', s.mountPoint, '--ssh-key', sshKey,
    '--host-key-fingerprint', box.hostKeyFingerprint, '--fstab', fstab, '--config', s.config,
  ];
  const boxEnv = { ...env, HBS_BOX_PASSWORD: box.password };
  const i1 = must('init.enc', hbs([...common(enc, 'enc.img'), '--encrypt', ...CHEAP_KDF, '--luks-passphrase-stdin', '--luks-unattended', '--luks-name', NAME, '--crypttab', crypttab], { input: PASS + '\n', env: boxEnv }));
  out('init.enc.summary', i1.stdout.split('\n').filter((l) => /Unattended|protect|crypttab/.test(l)));
  must('init.plain', hbs(common(plain, 'plain.img'), { env: boxEnv }));
  writeData(enc, 'encrypted, survives a crash\n');
  writeData(plain, 'plain, unmounted cleanly\n');
  sh('sync');
  out('config.enc.encryption', JSON.parse(readFileSync(enc.config, 'utf8')).encryption);
  out('crypttab', readFileSync(crypttab, 'utf8').split('\n'));
  out('crypttab.mode', sh('stat', ['-c', '%a', crypttab]).trim());
  out('key.mode', sh('stat', ['-c', '%a', join(state, 'enc/etc', `${NAME}.key`)]).trim());
  out('fstab.lines', readFileSync(fstab, 'utf8').split('\n').filter((l) => l && !l.startsWith('#')));
  must('umount.plain', hbs(['umount', '--config', plain.config]));
  out('boot1.encMounted', mounted(enc.mountPoint));
  out('boot1.plainMounted', mounted(plain.mountPoint));
  out('done', true);
  // No umount, no box.stop(): run-in-vm syncs and powers off with the encrypted stack still up.
  process.exit(0);
}

// ---- boot 2 ------------------------------------------------------------------------------------
try {
  out('boot2.start', { mounts: [enc.boxMount, enc.mountPoint, plain.boxMount, plain.mountPoint].filter(mounted), mappers: mappers(), loops: loops() });

  // (a) hbs mount: stdin is empty and not a terminal, so only the unattended key can open it.
  for (const [label, s] of [['enc', enc], ['plain', plain]]) {
    must(`a.mount.${label}`, hbs(['mount', '--config', s.config]));
    out(`a.data.${label}`, readData(s));
    const st = hbs(['status', '--json', '--config', s.config]);
    out(`a.status.${label}.exit`, st.code);
    const doc = JSON.parse(st.stdout);
    out(`a.status.${label}.encryption`, doc.encryption);
    must(`a.umount.${label}`, hbs(['umount', '--config', s.config]));
  }
  out('a.after', { mappers: mappers(), loops: loops(), mounts: [enc.boxMount, enc.mountPoint, plain.boxMount, plain.mountPoint].filter(mounted) });

  // (b) what boot does, step by step: fstab's box lines (the mapping is not there yet: its line is
  // nofail, so mount -a passes it over), the crypttab line as systemd-cryptsetup@.service runs it,
  // then fstab again for the filesystem on the mapping.
  const m1 = run('mount', ['-a', '-T', fstab]);
  out('b.mountAll1', { exit: m1.code, stderr: m1.stderr.trim(), mounted: [enc.boxMount, enc.mountPoint, plain.boxMount, plain.mountPoint].filter(mounted) });
  const block = blockText(readFileSync(crypttab, 'utf8'), enc.config) ?? '';
  const entries = block.split('\n').map(parseCrypttabLine).filter(Boolean);
  out('b.crypttabEntries', entries);
  for (const e of entries) {
    // Exactly the argv systemd-cryptsetup-generator puts in ExecStart= for this line.
    const a = run('/lib/systemd/systemd-cryptsetup', ['attach', e.name, e.source, e.keyFile, e.options.join(',')], { env: { ...process.env, SYSTEMD_LOG_LEVEL: 'info' } });
    out('b.attach', { exit: a.code, stderr: a.stderr.trim(), ms: a.ms });
  }
  out('b.afterAttach', { mappers: mappers(), loops: loops() });
  // Second pass: what systemd does once the mapping is there — start the mount units whose target is
  // not mounted yet, each as `mount` with its fstab line. Not a second `mount -a`: libmount cannot
  // tell that the `sshfs#…` box lines are mounted already (the mounted source is `user@host:`), so
  // `mount -a` mounts every box again on top, and a plain image a second time through a new loop
  // device (measured on the host; systemd goes by the mount point and does not).
  const pass2 = [];
  for (const line of readFileSync(fstab, 'utf8').split('\n')) {
    const target = line.startsWith('#') ? undefined : line.split(/\s+/)[1];
    if (!target || mounted(target)) continue;
    const m = run('mount', ['-T', fstab, target]);
    pass2.push({ target, exit: m.code, stderr: m.stderr.trim() });
  }
  out('b.mountPass2', { mounts: pass2, mounted: [enc.boxMount, enc.mountPoint, plain.boxMount, plain.mountPoint].filter(mounted) });
  out('b.source.enc', sh('findmnt', ['-n', '-o', 'SOURCE', enc.mountPoint]).trim());
  out('b.data.enc', readData(enc));
  out('b.data.plain', readData(plain));
  const v = run('findmnt', ['--verify', '--tab-file', fstab]);
  const counts = /Success, no errors or warnings/.test(v.stdout + v.stderr) ? [0, 0, 0, 0] : /(\d+) parse errors?, (\d+) errors?, (\d+) warnings?/.exec(v.stdout + v.stderr);
  out('b.verify', { exit: v.code, parseErrors: Number(counts?.[1] ?? -1), errors: Number(counts?.[2] ?? -1), warnings: Number(counts?.[3] ?? -1), text: (v.stdout + v.stderr).trim() });
  for (const [label, s] of [['enc', enc], ['plain', plain]]) {
    const st = hbs(['status', '--json', '--config', s.config]);
    const doc = JSON.parse(st.stdout);
    out(`b.status.${label}`, { exit: st.code, box: doc.box.state, fs: doc.filesystem.state, lock: doc.lock.state, encryption: doc.encryption?.state ?? null });
  }
  // Down again the way a person would after a boot: hbs umount (unmount → close → box).
  for (const [label, s] of [['enc', enc], ['plain', plain]]) {
    const u = hbs(['umount', '--config', s.config]);
    out(`b.umount.${label}`, { exit: u.code, stdout: u.stdout.trim(), stderr: u.stderr.trim() });
  }
  out('leftover', { mappers: mappers(), loops: loops(), mounts: [enc.boxMount, enc.mountPoint, plain.boxMount, plain.mountPoint].filter(mounted) });
  out('done', true);
} finally {
  for (const s of [enc, plain]) spawnSync('umount', [s.mountPoint]);
  spawnSync('cryptsetup', ['close', NAME]);
  for (const s of [enc, plain]) spawnSync('fusermount3', ['-u', s.boxMount]);
  for (const l of loops().split('\n').filter(Boolean)) spawnSync('losetup', ['-d', l.split(':')[0]]);
  await box.stop();
}
