// The backup/restore section of `npm run bench` and its 20 TiB row, called from bench/run.mjs.
//
// backup: one generated tree (many small files plus some larger ones, owners and modes varied),
// backed up, changed by 1 %, backed up again and restored — by hbs (the real stack `hbs init` made,
// through the relay), borg (`borg serve` on the stand-in box over ssh through the relay), restic
// (sftp through the relay) and plain sshfs (rsync -rlt, for reference), all in one run on the same
// data and the same link. Every timed step starts cold: page cache, dentries and inodes dropped
// (`echo 3 > /proc/sys/vm/drop_caches`: the box's disk is this machine's, so its side is cold too),
// the hbs stack taken down and brought up again with `hbs umount` / `hbs mount`, a plain sshfs mount
// remounted; the source tree is read back in afterwards (it is the same local disk for every tool).
// Restores go into a tmpfs, so the local disk takes no part in any tool's time.
//
// huge: the largest box (BX41, 20 TiB): `hbs init --size 20T` (time, bytes on the box, bytes over
// the link), `e2fsck -f -n` of that filesystem through the relay, and `hbs grow` 1 → 20 TiB. The
// stand-in box's home lies on a sparse XFS filesystem of its own (ext4 caps a file at 16 TiB).
import { chmod, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { startBox } from '../build/test-support/stand-in-box.js';
import { teardown } from '../build/test-support/teardown.js';
import { sshfsMountOptions } from '../dist/lib/ssh.js';
import { onCleanup, removeTempDir } from './lib/cleanup.mjs';
import { addLargeFiles, changeSome, makeTree } from './lib/tree.mjs';
import { GiB, MiB, allocated, fmtBytes, fmtS, fmtX, log, run, startRelayProcess, syncfs, timed } from './lib/util.mjs';

// ---------------------------------------------------------------------------------------------
// Small helpers.

async function dropCaches() {
  await run('sync', []);
  await writeFile('/proc/sys/vm/drop_caches', '3\n');
}

const mountedAt = async (dir) => (await execa('findmnt', ['--mountpoint', dir], { reject: false })).exitCode === 0;

/** Bytes allocated under `path` on the box's disk (du: what the box's quota counts). */
async function duBytes(path) {
  const r = await run('du', ['-s', '-B1', path], { reject: false });
  return r.exitCode === 0 ? Number(r.stdout.split(/\s/)[0]) : 0;
}

/** Entries (anything but directories) under `dir`. */
async function entriesUnder(dir) {
  const r = await run('bash', ['-c', 'find "$1" -mindepth 1 ! -type d 2>/dev/null | wc -l', 'bash', dir], { reject: false });
  return Number(r.stdout.trim()) || 0;
}

/** Reads a tree once (tar to nowhere): the source is then in the page cache for every tool alike. */
const warm = (dir) => run('bash', ['-c', 'tar -C "$1" -cf - . | cat >/dev/null', 'bash', dir]);

/**
 * How far a restored tree is from its source: the lines `rsync --dry-run --itemize-changes` would
 * act on (0: identical in content, owners, modes, times, links). Local, so it costs no link time.
 */
async function differences(src, dest) {
  const r = await run('rsync', ['-aHAX', '--numeric-ids', '--delete', '--dry-run', '--itemize-changes', `${src}/`, `${dest}/`], { reject: false, maxBuffer: 256 * MiB });
  if (r.exitCode !== 0 && r.exitCode !== 23 && r.exitCode !== 24) return { error: `rsync exit ${r.exitCode}` };
  const lines = r.stdout.split('\n').filter((l) => l.trim());
  // --itemize-changes: YXcstpoguax, so position 6 is the owner, 7 the group.
  const owners = lines.filter((l) => l[6] === 'o' || l[7] === 'g').length;
  return { items: lines.length, ownerOrGroup: owners, sample: lines.slice(0, 3) };
}

/** The time the link needs for `bytes`: serialisation at its rate plus one round trip. */
export const linkSeconds = (S, bytes) => bytes / ((S.rateMbit * 1e6) / 8) + (2 * S.delayMs) / 1000;

// ---------------------------------------------------------------------------------------------
// hbs's backup.

/**
 * One backup of `src` into hbs: snapshot `name` under <mount point>/snapshots, unchanged files hard
 * links into `prev`. `hbs backup` is not in this tree yet, so this runs exactly the rsync it will
 * run, written under `<name>.partial` and renamed when complete, `latest` pointing at it, then a sync
 * (the data is on the box when this returns). Returns the directory that holds `src`'s files.
 *
 * SWITCH AFTER MERGING `hbs backup`: replace the body by
 *   await o.hbs(env, 'backup', '--source', src, '--yes');
 *   return join(env.p.mountPoint, 'snapshots', 'latest', src);   // each source at its absolute path
 * and drop `name`/`prev` (hbs names its snapshots and finds the previous one itself); `method` below
 * then says so in the report.
 */
async function hbsBackup(env, src, name, prev) {
  const snaps = join(env.p.mountPoint, 'snapshots');
  await mkdir(snaps, { recursive: true });
  const partial = join(snaps, `${name}.partial`);
  const args = ['-aHAX', '--numeric-ids', '--delete', ...(prev ? [`--link-dest=${join(snaps, prev)}`] : []), `${src}/`, `${partial}/`];
  const r = await run('rsync', args, { reject: false, timeout: 60 * 60_000 });
  // 24: "some files vanished" is a warning for a backup; anything else fails the run.
  if (r.exitCode !== 0 && r.exitCode !== 24) throw new Error(`rsync ${args.join(' ')}: exit ${r.exitCode}: ${String(r.stderr).trim().split('\n').slice(-3).join(' / ')}`);
  await syncfs(env.p.mountPoint, env.p.boxMount);
  await rename(partial, join(snaps, name));
  await rm(join(snaps, 'latest.new'), { force: true });
  await symlink(name, join(snaps, 'latest.new'));
  await rename(join(snaps, 'latest.new'), join(snaps, 'latest'));
  await syncfs(env.p.mountPoint, env.p.boxMount);
  return join(snaps, name);
}
const HBS_BACKUP_METHOD = '`rsync -aHAX --numeric-ids --delete --link-dest=PREV SRC/ MNT/snapshots/NAME.partial/`, sync, rename, `latest` (what `hbs backup` will run)';

/** A snapshot name as hbs backup makes them: the UTC time. */
const snapshotName = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '');

// ---------------------------------------------------------------------------------------------
// The backup/restore section.

/**
 * @param env the stack from run.mjs's setUp (hbs init through the relay)
 * @param o { S, t, hbs(env, ...args), sshfs(env, dir, opts) }
 */
export async function backupSection(env, o) {
  const { S, t } = o;
  const { p, box, relay } = env;
  const B = S.backup;

  // ---- the data ------------------------------------------------------------------------------
  const src = join(t, 'backup-src');
  log(`backup: generating ${B.files} small files and ${B.largeFiles} larger ones (${B.largeMiB} MiB)`);
  const tree = await makeTree(src, B.files, 4242);
  const big = await addLargeFiles(src, B.largeFiles, B.largeMiB);
  const data = {
    files: tree.files.length + big.files.length,
    smallFiles: tree.files.length,
    largeFiles: big.files.length,
    bytes: tree.bytes + big.bytes,
    largeBytes: big.bytes,
    symlinks: tree.symlinks,
    hardlinks: tree.hardlinks,
  };
  data.entries = data.files + data.symlinks + data.hardlinks;

  // The restore target: RAM.
  const dest = join(t, 'restore');
  await mkdir(dest, { recursive: true });
  const tmpfsBytes = Math.max(2 * GiB, 3 * data.bytes);
  await run('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsBytes},mode=0755`, 'tmpfs', dest]);
  onCleanup('restore target (tmpfs)', () => execa('umount', ['-l', dest], { reject: false }));
  const clearDest = () => run('bash', ['-c', 'find "$1" -mindepth 1 -delete', 'bash', dest]);

  // ---- the tools -----------------------------------------------------------------------------
  const ssh = ['ssh', '-i', p.key, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${p.knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes'];
  const borgEnv = {
    BORG_RSH: ssh.join(' '),
    BORG_REPO: `ssh://${box.user}@127.0.0.1:${relay.port}/./bench-borg`,
    BORG_PASSPHRASE: 'bench',
    BORG_BASE_DIR: join(t, 'borg-home'),
    BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  };
  const resticEnv = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: join(t, 'restic-cache'), RESTIC_REPOSITORY: `sftp:${box.user}@127.0.0.1:bench-restic` };
  const sftpCmd = ['-o', `sftp.command=${[...ssh, '-p', String(relay.port)].join(' ')} ${box.user}@127.0.0.1 -s sftp`];
  const tool = async (cmd, args, opts, what) => {
    const r = await run(cmd, args, { reject: false, timeout: B.timeoutS * 1000, maxBuffer: 64 * MiB, ...opts });
    if (r.timedOut) throw new Error(`${what}: no result within ${B.timeoutS} s`);
    if (r.exitCode !== 0) throw new Error(`${what}: exit ${r.exitCode}: ${String(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`);
    return r;
  };
  const borg = (args, what, opts = {}) => tool('borg', args, { env: borgEnv, ...opts }, what);
  const restic = (args, what) => tool('restic', [...sftpCmd, ...args], { env: resticEnv }, what);
  const onBox = {
    hbs: env.imageOnBox,
    borg: join(box.home, 'bench-borg'),
    restic: join(box.home, 'bench-restic'),
    sshfs: join(box.home, 'bench-sshfs'),
  };
  const boxBytes = async (id) => (id === 'hbs' ? allocated(onBox.hbs) : duBytes(onBox[id]));
  const plainDir = join(p.plain, 'bench-sshfs');
  const sshfsLimitMs = S.sshfsTimeoutS * 1000;

  const versions = {
    borg: (await run('borg', ['--version'], { reject: false })).stdout.trim(),
    restic: (await run('restic', ['version'], { reject: false })).stdout.trim().split(' compiled')[0],
    rsync: (await run('rsync', ['--version'], { reject: false })).stdout.split('\n')[0],
  };
  // Listed in `hbs --help` (`hbs backup --help` would print the main help for an unknown command).
  const hbsBackupExists = /^\s+backup\b/m.test((await run(o.HBS, ['--help'], { reject: false })).stdout);

  log('backup: borg init (repokey-blake2) and restic init on the box, through the relay');
  await borg(['init', '--encryption=repokey-blake2'], 'borg init');
  await restic(['init'], 'restic init');

  // ---- cold starts ---------------------------------------------------------------------------
  /** Everything cold; then the hbs stack up again (hbs umount / hbs mount), or plain sshfs remounted. */
  const cold = async (which, { warmSource = false } = {}) => {
    await o.hbs(env, 'umount');
    if (await mountedAt(p.plain)) await run('fusermount3', ['-u', p.plain]);
    await dropCaches();
    if (which === 'hbs') await o.hbs(env, 'mount');
    if (which === 'sshfs') await o.sshfs(env, p.plain);
    if (warmSource) await warm(src);
  };

  const rows = [];
  /** One timed operation: seconds, link bytes both ways, growth of the tool's space on the box. */
  const measure = async (id, op, fn) => {
    const before = await relay.stats();
    const boxBefore = await boxBytes(id);
    const load = loadavg()[0];
    const [extra, seconds] = await timed(fn);
    const after = await relay.stats();
    const rec = {
      tool: id,
      op,
      seconds,
      linkUp: after.bytesUp - before.bytesUp,
      linkDown: after.bytesDown - before.bytesDown,
      boxGrowth: (await boxBytes(id)) - boxBefore,
      load: [load, loadavg()[0]],
      ...(extra ?? {}),
    };
    rows.push(rec);
    log(`  ${id} ${op}: ${rec.timedOut ? '> ' : ''}${fmtS(seconds)}${rec.extrapolatedS ? ` (≈ ${fmtS(rec.extrapolatedS)} extrapolated)` : ''}, ` +
      `link ↑${fmtBytes(rec.linkUp)} ↓${fmtBytes(rec.linkDown)}, box +${fmtBytes(rec.boxGrowth)}, load ${load.toFixed(1)}→${rec.load[1].toFixed(1)}`);
    return rec;
  };
  const tools = B.tools;
  const want = (id) => tools.includes(id);

  // ---- first backup --------------------------------------------------------------------------
  const snap1 = snapshotName();
  if (want('hbs')) {
    await cold('hbs', { warmSource: true });
    await measure('hbs', 'first', async () => {
      await hbsBackup(env, src, snap1);
    });
  }
  if (want('borg')) {
    await cold(undefined, { warmSource: true });
    await measure('borg', 'first', async () => {
      await borg(['create', '--compression', 'lz4', '::first', '.'], 'borg create', { cwd: src });
    });
  }
  if (want('restic')) {
    await cold(undefined, { warmSource: true });
    await measure('restic', 'first', async () => {
      await restic(['backup', '--quiet', src], 'restic backup');
    });
  }
  let sshfsSeeded = false;
  if (want('sshfs')) {
    await cold('sshfs', { warmSource: true });
    const rec = await measure('sshfs', 'first', async () => {
      const r = await run('rsync', ['-rlt', `${src}/`, `${plainDir}/`], { reject: false, timeout: sshfsLimitMs });
      if (!r.timedOut) await syncfs(p.plain);
      return { timedOut: Boolean(r.timedOut), exitCode: r.exitCode ?? null };
    });
    if (rec.timedOut) {
      // The rest of the copy on the box's side, where it costs no link time, so the incremental and
      // the restore below find the full tree.
      const done = await entriesUnder(onBox.sshfs);
      rec.entriesDone = done;
      rec.extrapolatedS = (rec.seconds * data.entries) / Math.max(1, done);
      sshfsSeeded = true;
      await run('fusermount3', ['-u', p.plain]);
      await run('rsync', ['-rlt', '--delete', `${src}/`, `${onBox.sshfs}/`]);
      await run('chown', ['-R', `${box.user}:${box.user}`, onBox.sshfs]);
    }
  }

  // ---- 1 % changed, incremental --------------------------------------------------------------
  const changed = await changeSome(src, tree.files, B.changedPct / 100);
  data.changed = changed;
  const snap2 = snapshotName() === snap1 ? `${snap1}-2` : snapshotName();
  let hbsRestoreFrom;
  if (want('hbs')) {
    await cold('hbs', { warmSource: true });
    await measure('hbs', 'incremental', async () => {
      hbsRestoreFrom = await hbsBackup(env, src, snap2, snap1);
    });
    // Unchanged files must be hard links into the first snapshot (same inode): checked on one.
    const unchanged = tree.files[1];
    const [a, b] = await Promise.all([run('stat', ['-c', '%i', join(p.mountPoint, 'snapshots', snap1, unchanged)]), run('stat', ['-c', '%i', join(hbsRestoreFrom, unchanged)])]);
    rows.at(-1).hardLinked = a.stdout.trim() === b.stdout.trim();
    // For comparison: the same change into one mirror updated in place (the first snapshot, no
    // --link-dest): what the incremental costs without making a snapshot of every file.
    await cold('hbs', { warmSource: true });
    await measure('hbs', 'incremental, one mirror in place', async () => {
      const m = join(p.mountPoint, 'snapshots', snap1);
      await tool('rsync', ['-aHAX', '--numeric-ids', '--delete', `${src}/`, `${m}/`], {}, 'rsync -aHAX (mirror)');
      await syncfs(p.mountPoint, p.boxMount);
    });
  }
  if (want('borg')) {
    await cold(undefined, { warmSource: true });
    await measure('borg', 'incremental', async () => {
      await borg(['create', '--compression', 'lz4', '::second', '.'], 'borg create', { cwd: src });
    });
  }
  if (want('restic')) {
    await cold(undefined, { warmSource: true });
    await measure('restic', 'incremental', async () => {
      await restic(['backup', '--quiet', src], 'restic backup');
    });
  }
  if (want('sshfs')) {
    await cold('sshfs', { warmSource: true });
    await measure('sshfs', 'incremental', async () => {
      const r = await run('rsync', ['-rlt', '--delete', `${src}/`, `${plainDir}/`], { reject: false, timeout: sshfsLimitMs });
      if (!r.timedOut) await syncfs(p.plain);
      return { timedOut: Boolean(r.timedOut), exitCode: r.exitCode ?? null };
    });
  }

  // ---- restore all, cold ---------------------------------------------------------------------
  const restored = async (id, op, root, fn) => {
    await clearDest();
    const rec = await measure(id, op, fn);
    rec.entries = await entriesUnder(dest);
    if (!rec.timedOut) rec.diff = await differences(src, root);
    if (rec.timedOut) rec.extrapolatedS = (rec.seconds * data.entries) / Math.max(1, rec.entries);
    await clearDest();
    return rec;
  };
  const r = join(dest, 'r');
  if (want('hbs')) {
    await cold('hbs');
    await restored('hbs', 'restore: cp -a', r, async () => {
      await tool('cp', ['-a', `${hbsRestoreFrom}/.`, r], {}, 'cp -a');
    });
    await cold('hbs');
    await restored('hbs', 'restore: rsync -aHAX', r, async () => {
      await tool('rsync', ['-aHAX', '--numeric-ids', `${hbsRestoreFrom}/`, `${r}/`], {}, 'rsync -aHAX');
    });
  }
  if (want('borg')) {
    await cold(undefined);
    await restored('borg', 'restore', r, async () => {
      await mkdir(r, { recursive: true });
      await borg(['extract', '::second'], 'borg extract', { cwd: r });
    });
  }
  if (want('restic')) {
    await cold(undefined);
    await restored('restic', 'restore', join(r, src), async () => {
      await restic(['restore', 'latest', '--target', r], 'restic restore');
    });
  }
  if (want('sshfs')) {
    await cold('sshfs');
    await restored('sshfs', 'restore', r, async () => {
      const x = await run('rsync', ['-rlt', `${plainDir}/`, `${r}/`], { reject: false, timeout: sshfsLimitMs });
      return { timedOut: Boolean(x.timedOut), exitCode: x.exitCode ?? null };
    });
  }
  if (!(await mountedAt(p.mountPoint))) await o.hbs(env, 'mount');
  if (await mountedAt(p.plain)) await run('fusermount3', ['-u', p.plain]);

  // ---- space on the box, in all --------------------------------------------------------------
  const onBoxTotal = {};
  for (const id of tools) onBoxTotal[id] = await boxBytes(id);
  await rm(onBox.sshfs, { recursive: true, force: true });

  return {
    data,
    link: { delayMs: S.delayMs, rateMbit: S.rateMbit, seconds: linkSeconds(S, data.bytes) },
    method: { hbs: hbsBackupExists ? `${HBS_BACKUP_METHOD}; note: \`hbs backup\` exists in this build but the bench still runs the rsync (switch hbsBackup() in bench/backup.mjs)` : HBS_BACKUP_METHOD },
    versions,
    sshfsTimeoutS: S.sshfsTimeoutS,
    sshfsSeeded,
    onBoxTotal,
    rows,
  };
}

// ---------------------------------------------------------------------------------------------
// The 20 TiB row.

/**
 * @param o { S, HBS, t }
 */
export async function hugeSection(o) {
  const { S, HBS } = o;
  const H = S.huge;
  const out = { tib: H.tib, fromTiB: H.fromTiB, xfsGiB: H.xfsGiB };
  // The box's home on XFS: a sparse image file on this disk (it holds only what is written), loop-mounted.
  const dir = await mkdtemp('/tmp/hbs-bench-20t-');
  onCleanup('20 TiB box: temp dir', () => removeTempDir(dir));
  await chmod(dir, 0o755); // sshd reaches the account's home below it as the account
  const xfsImg = join(dir, 'xfs.img');
  const xfs = join(dir, 'xfs');
  await run('truncate', ['-s', `${H.xfsGiB}G`, xfsImg]);
  await run('mkfs.xfs', ['-q', xfsImg]);
  await mkdir(xfs);
  await run('mount', ['-o', 'loop', xfsImg, xfs]);
  onCleanup('20 TiB box: XFS', async () => {
    if ((await execa('umount', [xfs], { reject: false })).exitCode !== 0) await execa('umount', ['-l', xfs], { reject: false });
  });
  await chmod(xfs, 0o755);
  const box = await startBox({ stateDir: join(xfs, 'box') });
  onCleanup('20 TiB box: sshd and account', () => box.stop());
  const relay = await startRelayProcess({ targetPort: box.port, delayMs: S.delayMs, rateMbit: S.rateMbit, lifetimeS: S.relayLifetimeS });
  log(`huge: box ${box.user} on XFS (${H.xfsGiB} GiB sparse image, ${xfs}), relay 127.0.0.1:${relay.port}`);

  const t = join(dir, 'local');
  await mkdir(t, { mode: 0o700 });
  const key = join(t, 'key');
  const knownHosts = join(t, 'known_hosts');
  const blob = (await readFile(join(box.dir, 'host_key.pub'), 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
  await writeFile(knownHosts, `[127.0.0.1]:${relay.port} ${blob}\n`, { mode: 0o600 });
  const stacks = ['init', 'grow'].map((k) => ({ config: join(t, `${k}.json`), boxMount: join(t, `${k}-box`), mountPoint: join(t, `${k}-fs`), image: `${k}.img` }));
  const fsckBox = join(t, 'fsck-box');
  onCleanup('20 TiB box: mounts', () => teardown([...stacks.map((s) => s.mountPoint), join(t, 'classic-fs')], [...stacks.map((s) => s.boxMount), fsckBox]));
  const hbs = (s, ...args) => run(HBS, [...args, '--config', s.config], { env: { NO_COLOR: '1' }, timeout: H.timeoutS * 1000, reject: false });
  const must = (r, what) => {
    if (r.timedOut) throw new Error(`${what}: no result within ${H.timeoutS} s`);
    if (r.exitCode !== 0) throw new Error(`${what}: exit ${r.exitCode}: ${String(r.stderr || r.stdout).trim().split('\n').slice(-4).join(' / ')}`);
    return r;
  };
  const init = async (s, size) => {
    const args = ['init', '--yes', '--user', box.user, '--host', '127.0.0.1', '--port', String(relay.port), '--size', size, '--image', s.image,
      '--host-key-fingerprint', box.hostKeyFingerprint, '--password-stdin', '--box-mount', s.boxMount, '--mount-point', s.mountPoint,
      // --force: the XFS under the box holds far less than 20 TiB; the image is sparse.
      '--ssh-key', key, '--no-fstab', '--no-systemd', '--force', '--config', s.config];
    const before = await relay.stats();
    const [r, seconds] = await timed(() => run(HBS, args, { input: `${box.password}\n`, reject: false, env: { NO_COLOR: '1' }, timeout: H.timeoutS * 1000 }));
    must(r, `hbs init --size ${size}`);
    const after = await relay.stats();
    return { seconds, linkUp: after.bytesUp - before.bytesUp, linkDown: after.bytesDown - before.bytesDown };
  };
  const imageOnBox = (s) => join(box.home, s.image);

  // init 20 TiB
  log(`huge: hbs init --size ${H.tib}T through the relay`);
  const [si, sg] = stacks;
  out.init = await init(si, `${H.tib}T`);
  must(await hbs(si, 'umount'), 'hbs umount');
  out.init.onBox = await allocated(imageOnBox(si));
  log(`  init ${fmtS(out.init.seconds)}, ${fmtBytes(out.init.onBox)} on the box, ${fmtBytes(out.init.linkUp)} over the link`);

  // hbs mount of it, cold: the kernel reads every group-descriptor block (one per meta group).
  await dropCaches();
  {
    const before = await relay.stats();
    const [r, seconds] = await timed(() => hbs(si, 'mount'));
    must(r, 'hbs mount');
    const after = await relay.stats();
    out.mount = { seconds, linkDown: after.bytesDown - before.bytesDown };
    log(`  hbs mount ${fmtS(seconds)}, ${fmtBytes(out.mount.linkDown)} read over the link`);
    must(await hbs(si, 'umount'), 'hbs umount');
  }

  // e2fsck -f through the relay, as hbs runs it before a mount or an offline grow: on the image file
  // on the box mount (-n here: reads only, a forced full check). Twice, each cold on a fresh sshfs
  // mount: with the box readahead hbs sets (the file takes it at open) and with the kernel's default.
  const c = { user: box.user, host: '127.0.0.1', port: relay.port, remotePath: '', key, knownHosts };
  out.fsck = [];
  for (const ra of H.fsckReadaheadKb) {
    log(`huge: e2fsck -f -n through the relay, box readahead ${ra || 'kernel default'}${ra ? ' KiB' : ''}`);
    await mkdir(fsckBox, { recursive: true });
    await dropCaches();
    await run('sshfs', ['-o', sshfsMountOptions(c).join(','), `${box.user}@127.0.0.1:`, fsckBox], { timeout: 60_000, detached: true });
    try {
      const bdi = `/sys/class/bdi/${(await run('mountpoint', ['-d', fsckBox])).stdout.trim()}/read_ahead_kb`;
      if (ra) await writeFile(bdi, `${ra}\n`);
      const raKb = Number((await readFile(bdi, 'utf8')).trim());
      const before = await relay.stats();
      const [r, seconds] = await timed(() => run('e2fsck', ['-f', '-n', join(fsckBox, si.image)], { reject: false, timeout: H.fsckTimeoutS * 1000 }));
      const after = await relay.stats();
      const rec = { readaheadKb: raKb, seconds, exitCode: r.exitCode ?? null, timedOut: Boolean(r.timedOut), linkDown: after.bytesDown - before.bytesDown, summary: String(r.stdout).trim().split('\n').pop() };
      out.fsck.push(rec);
      log(`  e2fsck ${r.timedOut ? '> ' : ''}${fmtS(seconds)} (exit ${r.exitCode}), ${fmtBytes(rec.linkDown)} read over the link: ${rec.summary}`);
    } finally {
      await run('fusermount3', ['-u', fsckBox], { reject: false });
    }
  }
  await rm(imageOnBox(si), { force: true });
  await rm(`${imageOnBox(si)}.hbs-lock`, { force: true });

  // grow 1 → 20 TiB
  log(`huge: hbs init --size ${H.fromTiB}T, then hbs grow --size ${H.tib}T`);
  out.growInit = await init(sg, `${H.fromTiB}T`);
  await syncfs(sg.mountPoint, sg.boxMount);
  const beforeGrow = await allocated(imageOnBox(sg));
  const before = await relay.stats();
  const [gr, seconds] = await timed(() => hbs(sg, 'grow', '--size', `${H.tib}T`, '--offline', '--yes', '--force'));
  must(gr, `hbs grow --size ${H.tib}T`);
  const after = await relay.stats();
  await syncfs(sg.mountPoint, sg.boxMount);
  out.grow = {
    seconds,
    linkUp: after.bytesUp - before.bytesUp,
    before: beforeGrow,
    after: await allocated(imageOnBox(sg)),
    online: !/offline|unmount/i.test(`${gr.stdout}${gr.stderr}`),
    output: String(gr.stdout).trim().split('\n').slice(-3).join(' / '),
  };
  out.grow.added = out.grow.after - out.grow.before;
  log(`  grow ${fmtS(seconds)}, +${fmtBytes(out.grow.added)} on the box, ${fmtBytes(out.grow.linkUp)} over the link`);
  must(await hbs(sg, 'umount'), 'hbs umount');
  out.grow.afterUmount = await allocated(imageOnBox(sg));
  await rm(imageOnBox(sg), { force: true });
  await rm(`${imageOnBox(sg)}.hbs-lock`, { force: true });

  // For comparison: the same size made without meta_bg (mkfs.ext4's default resize_inode, the group
  // descriptor table in one piece and copied into every backup group), as hbs did before: its bytes
  // on the box, and how long a cold mount of it takes through the relay.
  if (H.compare) {
    log('huge: for comparison, mkfs.ext4 without meta_bg (resize_inode) through the relay, and a cold mount');
    const img = join(fsckBox, 'classic.img');
    const mp = join(t, 'classic-fs');
    await mkdir(mp, { recursive: true });
    const mountBox = async () => {
      await run('sshfs', ['-o', sshfsMountOptions(c).join(','), `${box.user}@127.0.0.1:`, fsckBox], { timeout: 60_000, detached: true });
      await writeFile(`/sys/class/bdi/${(await run('mountpoint', ['-d', fsckBox])).stdout.trim()}/read_ahead_kb`, '4096\n');
    };
    await mountBox();
    try {
      await run('truncate', ['-s', `${H.tib}T`, img]);
      const before = await relay.stats();
      const [, seconds] = await timed(async () => {
        await run('mkfs.ext4', ['-q', '-m', '0', '-E', 'assume_storage_prezeroed=1,nodiscard', img], { timeout: H.timeoutS * 1000 });
        await syncfs(fsckBox);
      });
      const after = await relay.stats();
      out.classic = { features: 'mkfs.ext4 defaults (resize_inode, no meta_bg), -E assume_storage_prezeroed=1,nodiscard', seconds, linkUp: after.bytesUp - before.bytesUp, onBox: await allocated(join(box.home, 'classic.img')) };
      await run('fusermount3', ['-u', fsckBox]);
      await dropCaches();
      await mountBox();
      const b2 = await relay.stats();
      const [, ms] = await timed(() => run('mount', ['-t', 'ext4', '-o', 'loop,noatime,noinit_itable', img, mp], { timeout: H.timeoutS * 1000 }));
      out.classic.mountS = ms;
      out.classic.mountLinkDown = (await relay.stats()).bytesDown - b2.bytesDown;
      await run('umount', [mp]);
      log(`  classic mkfs ${fmtS(seconds)}, ${fmtBytes(out.classic.onBox)} on the box; cold mount ${fmtS(ms)}`);
    } finally {
      if (await mountedAt(mp)) await run('umount', [mp], { reject: false });
      await run('fusermount3', ['-u', fsckBox], { reject: false });
    }
  }
  out.xfsUsed = (await run('df', ['-B1', '--output=used', xfs])).stdout.trim().split('\n').pop().trim();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Markdown.

const row = (cells) => `| ${cells.join(' | ')} |`;
const head = (cells) => [row(cells), row(cells.map(() => '---'))];
const TOOL = { hbs: 'hbs', borg: 'borg', restic: 'restic', sshfs: 'plain sshfs' };

export function renderBackup(b, settings) {
  const out = [];
  const d = b.data;
  const linkS = b.link.seconds;
  out.push('', `### Backup and restore: ${d.files} files (${d.smallFiles} of 1–16 KiB, ${d.largeFiles} larger ones of ${fmtBytes(d.largeBytes)} in all), ${fmtBytes(d.bytes)}, ${d.symlinks} symlinks, ${d.hardlinks} hard links; ${d.changed} changed for the incremental`, '');
  out.push(`Same data, same link (${b.link.delayMs} ms each way, ${b.link.rateMbit} Mbit/s), one run. The link needs **${fmtS(linkS)}** for the ${fmtBytes(d.bytes)} (bytes / bandwidth + one round trip). ` +
    'Every step starts cold (caches dropped; the hbs stack unmounted and mounted again with `hbs umount` / `hbs mount`; sshfs remounted); the source is read into the page cache first; restores go into a tmpfs.', '');
  const find = (tool, op) => b.rows.find((x) => x.tool === tool && x.op === op);
  // A run stopped at its limit shows how far it came (entries done of all), not an extrapolation:
  // rsync copies big/ first, so a rate from the first minute says little about the rest.
  const done = (x) => (x.entriesDone ?? x.entries);
  const secs = (x) => (x ? `${x.timedOut ? '> ' : ''}${fmtS(x.seconds)}${x.timedOut && done(x) !== undefined ? ` (${done(x)} of ${d.entries} entries)` : ''}` : 'n/a');
  const t = (x) => (x ? x.seconds : undefined);
  const ratio = (a, c) => (a && c ? `${c.timedOut ? '< ' : ''}${fmtX(t(a) / t(c))}` : '');
  const hbsRestore = find('hbs', 'restore: cp -a');
  const hbsRsync = find('hbs', 'restore: rsync -aHAX');
  const ops = [
    ['first backup', 'first', 'first'],
    ['incremental (1 % changed), cold', 'incremental', 'incremental'],
    ['restore all, cold: `cp -a`', 'restore: cp -a', 'restore'],
    ['restore all, cold: `rsync -aHAX`', 'restore: rsync -aHAX', 'restore'],
  ];
  out.push(...head(['', 'hbs', 'borg', 'restic', 'plain sshfs', 'hbs / borg', 'hbs / restic', 'hbs / link', 'target']));
  const target = {
    first: 'hbs ≤ 1× borg',
    incremental: 'hbs ≤ 1.2× borg',
    'restore: cp -a': 'hbs ≤ 2× link and ≤ 1× borg',
    'restore: rsync -aHAX': 'hbs ≤ 2× link and ≤ 1× borg',
  };
  const met = (op, h, bo) => {
    if (!h || !bo) return '';
    const vsBorg = t(h) / t(bo);
    if (op === 'first') return `${target[op]}: ${vsBorg <= 1 ? 'met' : '**missed**'}`;
    if (op === 'incremental') return `${target[op]}: ${vsBorg <= 1.2 ? 'met' : '**missed**'}`;
    const vsLink = t(h) / linkS;
    return `${target[op]}: ${vsLink <= 2 && vsBorg <= 1 ? 'met' : '**missed**'}`;
  };
  const mirror = find('hbs', 'incremental, one mirror in place');
  for (const [label, hop, oop] of ops) {
    const h = find('hbs', hop);
    const bo = find('borg', oop);
    const re = find('restic', oop);
    const pl = find('sshfs', oop);
    const isRestore = hop.startsWith('restore');
    if (!h && hop === 'restore: rsync -aHAX') continue;
    out.push(row([label, secs(h), isRestore && hop !== 'restore: cp -a' ? '(same)' : secs(bo), isRestore && hop !== 'restore: cp -a' ? '(same)' : secs(re), isRestore && hop !== 'restore: cp -a' ? '(same)' : secs(pl),
      ratio(h, bo), ratio(h, re), h && (hop === 'first' || isRestore) ? fmtX(t(h) / linkS) : '', met(hop, h, bo)]));
  }
  if (mirror) {
    const bo = find('borg', 'incremental');
    out.push(row(['… for comparison: the same change into one mirror in place (no snapshot, no `--link-dest`)', secs(mirror), '', '', '', ratio(mirror, bo), ratio(mirror, find('restic', 'incremental')), '', `↑ ${fmtBytes(mirror.linkUp)}, ↓ ${fmtBytes(mirror.linkDown)}`]));
  }
  out.push('');
  out.push('Bytes: sent to the box over the link (↑) / read from it (↓) / growth of the space the tool takes on the box (what the quota counts):', '');
  out.push(...head(['', 'hbs', 'borg', 'restic', 'plain sshfs']));
  const cell = (x, k) => (x ? fmtBytes(x[k]) : 'n/a');
  for (const [label, op] of [['first backup', 'first'], ['incremental', 'incremental']]) {
    out.push(row([`${label}: ↑ link / + on the box`, ...['hbs', 'borg', 'restic', 'sshfs'].map((id) => {
      const x = find(id, op);
      return x ? `${cell(x, 'linkUp')} / ${cell(x, 'boxGrowth')}` : 'n/a';
    })]));
  }
  out.push(row(['restore: ↓ link', ...['hbs', 'borg', 'restic', 'sshfs'].map((id) => cell(find(id, id === 'hbs' ? 'restore: cp -a' : 'restore'), 'linkDown'))]));
  // hbs's image also holds what earlier sections wrote (and freed: the image never shrinks), so its
  // figure is what the two backups added to it; the others' repositories are theirs alone.
  const grew = (id) => ['first', 'incremental'].map((op) => find(id, op)?.boxGrowth ?? 0).reduce((a, c) => a + c, 0);
  out.push(row(['on the box after both backups', ...['hbs', 'borg', 'restic', 'sshfs'].map((id) => (b.onBoxTotal[id] === undefined ? 'n/a' : id === 'hbs' ? `+${fmtBytes(grew(id))} (image growth)` : fmtBytes(b.onBoxTotal[id])))]));
  out.push('');
  const notes = [];
  notes.push(`hbs backup: ${b.method.hbs}.`);
  const inc = find('hbs', 'incremental');
  if (inc?.hardLinked !== undefined) notes.push(`Unchanged files in the second snapshot are hard links into the first: ${inc.hardLinked ? 'yes' : '**no**'}.`);
  notes.push(`borg: ${b.versions.borg}, \`borg create --compression lz4\` with repokey-blake2, \`borg serve\` on the box; restore \`borg extract\`. restic: ${b.versions.restic}, sftp; restore \`restic restore latest\`. Both encrypt; hbs here does not (plain image).`);
  notes.push(`Plain sshfs (reference): \`rsync -rlt\` (the box account cannot chown: owners are lost), each run stopped after ${b.sshfsTimeoutS} s.${b.sshfsSeeded ? ' Its first copy did not finish, so the rest was copied on the box side before the incremental and the restore.' : ''}`);
  const diffs = b.rows.filter((x) => x.diff);
  if (diffs.length) notes.push(`Restored trees against the source (\`rsync -aHAX --numeric-ids -n -i\`, items that differ; owner/group among them): ${diffs.map((x) => `${TOOL[x.tool]} ${x.op.replace('restore: ', '').replace('restore', '')} ${x.diff.error ?? `${x.diff.items} (${x.diff.ownerOrGroup})`}`.replace(/\s+/g, ' ')).join('; ')}.`);
  const loads = b.rows.map((x) => `${TOOL[x.tool]} ${x.op.replace('restore: ', 'restore ')} ${x.load[0].toFixed(1)}→${x.load[1].toFixed(1)}`);
  notes.push(`1-minute load average around each step (${settings?.cores ?? 2} cores): ${loads.join(', ')}.`);
  for (const n of notes) out.push(`- ${n}`);
  return out;
}

/** Rows for the summary table at the top (what, hbs, compared with, ratio, target). */
export function summaryRows(r) {
  const rows = [];
  const b = r.backup;
  if (b) {
    const find = (tool, op) => b.rows.find((x) => x.tool === tool && x.op === op);
    const n = `${b.data.files} files, ${fmtBytes(b.data.bytes)}`;
    const lines = [
      [`first backup (${n})`, 'first', 'first', 1, false],
      [`incremental, ${b.data.changed} changed (1 %), cold`, 'incremental', 'incremental', 1.2, false],
      ['restore all, cold (`cp -a` out of the snapshot)', 'restore: cp -a', 'restore', 1, true],
    ];
    for (const [what, hop, bop, max, restore] of lines) {
      const h = find('hbs', hop);
      const bo = find('borg', bop);
      if (!h || !bo) continue;
      const x = h.seconds / bo.seconds;
      const vsLink = h.seconds / b.link.seconds;
      const target = restore ? `≤ 2× link (${fmtS(b.link.seconds)}), ≤ 1× borg: ${vsLink <= 2 && x <= 1 ? 'met' : '**missed**'} (${fmtX(vsLink)} link)` : `≤ ${max}× borg: ${x <= max ? 'met' : '**missed**'}`;
      rows.push([what, fmtS(h.seconds), `borg ${fmtS(bo.seconds)}`, fmtX(x), target]);
    }
  }
  const h = r.huge;
  if (h?.init) rows.push([`\`hbs init --size ${h.tib}T\`: bytes on the box, time`, `${fmtBytes(h.init.onBox)}, ${fmtS(h.init.seconds)}`, '', '', '']);
  if (h?.mount) rows.push([`\`hbs mount\` of the ${h.tib} TiB filesystem, cold, through the relay`, fmtS(h.mount.seconds), '', '', '']);
  if (h?.grow) rows.push([`\`hbs grow\` ${h.fromTiB} → ${h.tib} TiB: bytes added, time`, `+${fmtBytes(h.grow.added)}, ${fmtS(h.grow.seconds)}`, '', '', '']);
  for (const f of h?.fsck ?? []) rows.push([`e2fsck -f of the ${h.tib} TiB filesystem through the relay (box readahead ${f.readaheadKb} KiB)`, `${f.timedOut ? '> ' : ''}${fmtS(f.seconds)}, ↓ ${fmtBytes(f.linkDown)}`, '', '', '']);
  return rows;
}

export function renderHuge(h) {
  const out = [];
  out.push('', `### The largest box: ${h.tib} TiB (the stand-in box's home on a sparse XFS of ${h.xfsGiB} GiB)`, '');
  out.push(...head(['what', 'time', 'on the box', 'over the link']));
  if (h.init) out.push(row([`\`hbs init --size ${h.tib}T\` (through the relay)`, fmtS(h.init.seconds), fmtBytes(h.init.onBox), `↑ ${fmtBytes(h.init.linkUp)}`]));
  if (h.mount) out.push(row(['`hbs mount` of it, cold (through the relay)', fmtS(h.mount.seconds), '', `↓ ${fmtBytes(h.mount.linkDown)}`]));
  for (const f of h.fsck ?? []) out.push(row([`\`e2fsck -f -n\` of it on the box mount, through the relay, box readahead ${f.readaheadKb} KiB`, `${f.timedOut ? '> ' : ''}${fmtS(f.seconds)} (exit ${f.exitCode})`, '', `↓ ${fmtBytes(f.linkDown)}`]));
  if (h.growInit) out.push(row([`\`hbs init --size ${h.fromTiB}T\``, fmtS(h.growInit.seconds), h.grow ? fmtBytes(h.grow.before) : '', `↑ ${fmtBytes(h.growInit.linkUp)}`]));
  if (h.grow) out.push(row([`\`hbs grow --size ${h.tib}T --offline\` (${h.fromTiB} → ${h.tib} TiB)`, fmtS(h.grow.seconds), `+${fmtBytes(h.grow.added)} (${fmtBytes(h.grow.after)} in all)`, `↑ ${fmtBytes(h.grow.linkUp)}`]));
  if (h.classic) {
    out.push(row([`for comparison: \`mkfs.ext4\` of ${h.tib} TiB without meta_bg (resize_inode, as hbs did before)`, fmtS(h.classic.seconds), fmtBytes(h.classic.onBox), `↑ ${fmtBytes(h.classic.linkUp)}`]));
    out.push(row(['… a cold mount of that one through the relay', fmtS(h.classic.mountS), '', `↓ ${fmtBytes(h.classic.mountLinkDown)}`]));
  }
  const sum = (h.fsck ?? []).find((f) => f.summary)?.summary;
  if (sum) out.push('', `e2fsck: ${sum}`);
  return out;
}

