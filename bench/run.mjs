#!/usr/bin/env node
// `npm run bench` (as root): hbs against the local stand-in box, through a WAN-like relay.
// Writes bench/results/latest.json and prints Markdown tables on stdout (progress on stderr).
// Figures only: nothing here asserts a timing. Sizes come from BENCH_* variables (listed in
// bench/README.md), or the same as arguments: `--quick` is BENCH_QUICK=1, `--only=backup,huge` is
// BENCH_ONLY=backup,huge, `--backup-files=3000` is BENCH_BACKUP_FILES=3000 (any --name=value).
// The backup/restore section and the 20 TiB row are in bench/backup.mjs.
import { mkdir, mkdtemp, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { e2eUnavailable, startBox } from '../build/test-support/stand-in-box.js';
import { teardown } from '../build/test-support/teardown.js';
import { sshfsMountOptions } from '../dist/lib/ssh.js';
import { cleanupAll, installSignalHandlers, onCleanup, removeTempDir } from './lib/cleanup.mjs';
import { changeSome, makeTree, ownersKept } from './lib/tree.mjs';
import { render } from './lib/report.mjs';
import { backupSection, hugeSection } from './backup.mjs';
import { GiB, MiB, allocated, log, median, run, sleep, startRelayProcess, syncfs, timed } from './lib/util.mjs';

const ROOT = resolve(import.meta.dirname, '..');
const HBS = join(ROOT, 'bin', 'hbs');

// Arguments are the BENCH_* variables spelt as options (`npm run bench -- --quick --only=backup`).
for (const a of process.argv.slice(2)) {
  const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(a);
  if (!m) {
    process.stderr.write(`bench: ${a}: not an option (--quick, --only=SECTIONS, --NAME=VALUE for BENCH_NAME)\n`);
    process.exit(2);
  }
  process.env[`BENCH_${m[1].toUpperCase().replace(/-/g, '_')}`] = m[2] ?? '1';
}
const QUICK = process.env.BENCH_QUICK === '1';

/** A BENCH_* number: the variable if set, else the full or the quick default. */
function setting(name, full, quick) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return QUICK ? quick : full;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${raw}: not a number`);
  return n;
}

const S = {
  quick: QUICK,
  imageGiB: setting('BENCH_IMAGE_GIB', 100, 100),
  growToGiB: setting('BENCH_GROW_GIB', 200, 200),
  idleS: setting('BENCH_IDLE_S', 60, 5),
  growIdleS: setting('BENCH_GROW_IDLE_S', 30, 5),
  files: setting('BENCH_FILES', 3000, 300),
  changedShare: 0.1,
  sshfsTimeoutS: setting('BENCH_SSHFS_TIMEOUT_S', 60, 20),
  largeMiB: setting('BENCH_LARGE_MIB', 1024, 64),
  variantMiB: setting('BENCH_VARIANT_MIB', 128, 32),
  loopbackMiB: setting('BENCH_LOOPBACK_MIB', 256, 64),
  variantRepeat: setting('BENCH_VARIANT_REPEAT', 1, 1),
  startupRuns: setting('BENCH_STARTUP_RUNS', 15, 5),
  delayMs: setting('BENCH_DELAY_MS', 10, 10),
  rateMbit: setting('BENCH_RATE_MBIT', 200, 200),
  relayLifetimeS: setting('BENCH_RELAY_LIFETIME_S', 4 * 3600, 3600),
  sections: (process.env.BENCH_ONLY || 'startup,bytes,files,large,grow,backup,huge').split(',').map((s) => s.trim()),
  backup: {
    files: setting('BENCH_BACKUP_FILES', 20000, 2000),
    largeFiles: setting('BENCH_BACKUP_LARGE_FILES', 8, 2),
    largeMiB: setting('BENCH_BACKUP_LARGE_MIB', 24, 8),
    changedPct: setting('BENCH_BACKUP_CHANGED_PCT', 1, 1),
    timeoutS: setting('BENCH_BACKUP_TIMEOUT_S', 1800, 600),
    tools: (process.env.BENCH_BACKUP_TOOLS || 'hbs,borg,restic,sshfs').split(',').map((s) => s.trim()),
  },
  huge: {
    tib: setting('BENCH_HUGE_TIB', 20, 20),
    fromTiB: setting('BENCH_HUGE_FROM_TIB', 1, 1),
    xfsGiB: setting('BENCH_HUGE_XFS_GIB', 16, 16),
    timeoutS: setting('BENCH_HUGE_TIMEOUT_S', 1800, 1800),
    fsckTimeoutS: setting('BENCH_HUGE_FSCK_TIMEOUT_S', 600, 300),
    compare: setting('BENCH_HUGE_COMPARE', 1, 1) === 1,
    // 4096: what hbs sets on the box mount (and e2fsck's image file inherits); 0: the kernel's default.
    fsckReadaheadKb: (process.env.BENCH_HUGE_FSCK_RA_KB || '4096,0').split(',').map(Number),
  },
};
const KNOWN = ['startup', 'bytes', 'files', 'large', 'grow', 'backup', 'huge'];
for (const s of S.sections) {
  if (!KNOWN.includes(s)) {
    process.stderr.write(`bench: BENCH_ONLY: unknown section ${s} (known: ${KNOWN.join(', ')})\n`);
    process.exit(2);
  }
}
const want = (s) => S.sections.includes(s);

/**
 * sshfs, loop and ext4 variants for the large-file table; `plain` ones write onto sshfs itself.
 * `hbs` is the stack as hbs mounts it today: the loop device buffered (no direct I/O) and the box
 * mount's readahead (its bdi's read_ahead_kb) raised to 4 MiB before the image is opened
 * (src/steps/box.ts boxReadaheadStep, src/steps/fs.ts loopBufferedStep). Loop direct I/O wrote ~10 %
 * faster but made restores of many small files ~40× slower (bench/restore-results.md); it stays
 * here as a variant for the write side.
 */
// `^` puts AES-GCM first and keeps the default list behind it, so a server without it still connects.
const GCM = 'Ciphers=^aes128-gcm@openssh.com';
const RA = 4096; // KiB: hbs's BOX_READAHEAD_KB
const VARIANTS = [
  { id: 'plain', label: 'plain sshfs (hbs’s sshfs options)', plain: true },
  { id: 'plain-gcm', label: `plain sshfs + ${GCM}`, plain: true, sshfs: [GCM] },
  { id: 'hbs', label: 'hbs now: mount -o loop, buffered, box readahead 4 MiB', boxRaKb: RA },
  { id: 'buf-ra128', label: 'mount -o loop, buffered, kernel default readahead (hbs before 2026-11-29)' },
  { id: 'loop-dio', label: 'hbs + losetup --direct-io=on (hbs 2026-11-29 … 12-02: restores ~40× slower)', loopDio: true, boxRaKb: RA },
  { id: 'gcm', label: `hbs + ${GCM}`, sshfs: [GCM], boxRaKb: RA },
  { id: 'conns4', label: 'hbs + max_conns=4', sshfs: ['max_conns=4'], boxRaKb: RA },
  { id: 'sshfs-dio', label: 'hbs + sshfs direct_io', sshfs: ['direct_io'], boxRaKb: RA },
  { id: 'commit60', label: 'hbs + ext4 commit=60', ext4: ['commit=60'], boxRaKb: RA },
  // Only on request (BENCH_VARIANTS=…): a read-side option, one that is unsafe on a network link, and combinations.
  { id: 'kcache', label: 'hbs + sshfs kernel_cache', sshfs: ['kernel_cache'], boxRaKb: RA, extra: true },
  { id: 'nobarrier', label: 'hbs + ext4 nobarrier (unsafe: reference only)', ext4: ['nobarrier'], boxRaKb: RA, extra: true },
  { id: 'conns2', label: 'hbs + max_conns=2', sshfs: ['max_conns=2'], boxRaKb: RA, extra: true },
  { id: 'combo', label: `hbs + ${GCM} + loop direct I/O + commit=60`, sshfs: [GCM], loopDio: true, ext4: ['commit=60'], boxRaKb: RA, extra: true },
  { id: 'gcm-dio', label: `hbs + ${GCM} + loop direct I/O`, sshfs: [GCM], loopDio: true, boxRaKb: RA, extra: true },
  { id: 'dio-commit60', label: 'hbs + loop direct I/O + commit=60', loopDio: true, ext4: ['commit=60'], boxRaKb: RA, extra: true },
];
const chosen = (process.env.BENCH_VARIANTS || VARIANTS.filter((v) => !v.extra).map((v) => v.id).join(',')).split(',');

async function machine() {
  const v = (cmd, args, re) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    const m = re.exec(`${r.stdout}${r.stderr}`);
    return m ? m[1] : undefined;
  };
  const os = await readFile('/etc/os-release', 'utf8').catch(() => '');
  return {
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    memGiB: Math.round(totalmem() / GiB),
    kernel: release(),
    os: /PRETTY_NAME="([^"]*)"/.exec(os)?.[1],
    virt: v('systemd-detect-virt', [], /(\S+)/),
    node: process.version,
    sshfs: v('sshfs', ['--version'], /SSHFS version (\S+)/),
    openssh: v('ssh', ['-V'], /OpenSSH_([^\s,]+)/),
    e2fsprogs: v('mke2fs', ['-V'], /mke2fs (\S+)/),
    rsync: v('rsync', ['--version'], /version (\S+)/),
  };
}

// ---------------------------------------------------------------------------------------------
// 6. Start-up: first, on a quiet machine.

function startup() {
  const nowhere = '/nonexistent/hbs-bench/config.json';
  const status = spawnSync(HBS, ['status', '--config', nowhere], { encoding: 'utf8' });
  const statusKnown = !/unknown command/i.test(status.stderr);
  const cmds = [
    { id: 'node', label: 'node -e 0', argv: [process.execPath, '-e', '0'] },
    { id: 'help', label: 'hbs --help', argv: [HBS, '--help'] },
    statusKnown
      ? { id: 'status', label: 'hbs status (no config)', argv: [HBS, 'status', '--config', nowhere] }
      : { id: 'status', label: 'hbs init --help (hbs status does not exist yet)', argv: [HBS, 'init', '--help'] },
  ];
  const times = Object.fromEntries(cmds.map((c) => [c.id, []]));
  for (let i = -1; i < S.startupRuns; i++) {
    // Interleaved, the order rotating every round; round -1 warms the file cache and is not counted.
    for (let k = 0; k < cmds.length; k++) {
      const c = cmds[(k + Math.max(i, 0)) % cmds.length];
      const t = process.hrtime.bigint();
      spawnSync(c.argv[0], c.argv.slice(1), { stdio: 'ignore', env: { ...process.env, NO_COLOR: '1' } });
      if (i >= 0) times[c.id].push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  }
  const base = median(times.node);
  return {
    runs: S.startupRuns,
    statusExists: statusKnown,
    statusExit: status.status,
    commands: cmds.map((c) => ({ id: c.id, label: c.label, medianMs: median(times[c.id]), ratio: median(times[c.id]) / base, samplesMs: times[c.id] })),
  };
}

// ---------------------------------------------------------------------------------------------
// The stand-in box, the relay, and hbs init through it.

async function setUp(t) {
  const box = await startBox();
  onCleanup('stand-in box (sshd, account, its home)', () => box.stop());
  log(`box: ${box.user}@127.0.0.1 port ${box.port}`);
  const relay = await startRelayProcess({ targetPort: box.port, delayMs: S.delayMs, rateMbit: S.rateMbit, lifetimeS: S.relayLifetimeS });
  log(`relay: 127.0.0.1:${relay.port} → ${box.port}, ${S.delayMs} ms each way, ${S.rateMbit} Mbit/s`);
  const p = {
    boxMount: join(t, 'box'),
    mountPoint: join(t, 'fs'),
    config: join(t, 'etc', 'config.json'),
    key: join(t, 'hbs_ed25519'),
    plain: join(t, 'plain'),
    manualFs: join(t, 'manual-fs'),
    vbox: join(t, 'variant-box'),
    vfs: join(t, 'variant-fs'),
    knownHosts: join(t, 'known_hosts'),
  };
  onCleanup('mounts and loop devices', () => teardown([p.mountPoint, p.manualFs, p.vfs], [p.boxMount, p.plain, p.vbox]));
  // One known_hosts for the mounts the benchmark makes itself: the box directly and through the relay.
  const blob = (await readFile(join(box.dir, 'host_key.pub'), 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
  await writeFile(p.knownHosts, `[127.0.0.1]:${relay.port} ${blob}\n[127.0.0.1]:${box.port} ${blob}\n`, { mode: 0o600 });

  const free = (await statfs(box.home)).bavail * (await statfs(box.home)).bsize;
  const force = free < S.imageGiB * GiB;
  const args = ['init', '--yes', '--user', box.user, '--host', '127.0.0.1', '--port', String(relay.port), '--size', `${S.imageGiB}G`,
    '--host-key-fingerprint', box.hostKeyFingerprint, '--password-stdin', '--box-mount', p.boxMount, '--mount-point', p.mountPoint,
    '--ssh-key', p.key, '--no-fstab', '--no-systemd', '--config', p.config, ...(force ? ['--force'] : [])];
  log(`hbs init ${S.imageGiB} GiB through the relay${force ? ' (--force: this disk has less free space than the image size)' : ''}`);
  const before = await relay.stats();
  const [r, initS] = await timed(() => run(HBS, args, { input: `${box.password}\n`, reject: false, env: { NO_COLOR: '1' } }));
  if (r.exitCode !== 0) throw new Error(`hbs init failed (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
  const after = await relay.stats();
  const cfg = JSON.parse(await readFile(p.config, 'utf8'));
  const conn = (port) => ({ user: box.user, host: '127.0.0.1', port, remotePath: '', key: p.key, knownHosts: p.knownHosts });
  return {
    box, relay, p, cfg, conn, initS, forced: force,
    initLinkBytes: after.bytesUp - before.bytesUp,
    imageOnBox: join(box.home, cfg.box.remotePath, cfg.image.name),
  };
}

/**
 * sshfs with hbs's own options (and `extra`) onto `dir`, through the relay or straight to sshd. In a
 * session of its own, as hbs starts it: a Ctrl+C must not kill the ssh under a mount before clean-up.
 */
async function sshfs(env, dir, { direct = false, extra = [] } = {}) {
  await mkdir(dir, { recursive: true });
  const c = env.conn(direct ? env.box.port : env.relay.port);
  await run('sshfs', ['-o', [...sshfsMountOptions(c), ...extra].join(','), `${c.user}@${c.host}:`, dir], { timeout: 60_000, detached: true });
}

const fusermount = (dir) => run('fusermount3', ['-u', dir], { timeout: 120_000 });
const hbs = (env, ...args) => run(HBS, [...args, '--config', env.p.config], { env: { NO_COLOR: '1' }, timeout: 10 * 60_000 });

// ---------------------------------------------------------------------------------------------
// 1. Bytes written by init, next to the classic manual procedure on the same box in the same run.

async function bytesOnBox(env) {
  const { p, relay } = env;
  await syncfs(p.mountPoint, p.boxMount);
  const hbsAfterInit = await allocated(env.imageOnBox);
  log(`after hbs init: ${hbsAfterInit} bytes allocated; now the manual procedure on a plain sshfs mount`);

  await sshfs(env, p.plain);
  const manualImg = join(p.plain, 'manual.img');
  const onBox = join(env.box.home, 'manual.img');
  await run('truncate', ['-s', `${S.imageGiB}G`, manualImg]);
  const before = await relay.stats();
  const [, mkfsS] = await timed(async () => {
    await run('mkfs.ext4', ['-q', '-F', manualImg]);
    await syncfs(p.plain);
  });
  const manualAfterMkfs = await allocated(onBox);
  await mkdir(p.manualFs, { recursive: true });
  await run('mount', ['-o', 'loop', manualImg, p.manualFs]);
  const manualAfterMount = await allocated(onBox);
  const manualLinkBytes = (await relay.stats()).bytesUp - before.bytesUp;

  log(`idle ${S.idleS} s with both filesystems mounted`);
  const samples = [];
  const t0 = Date.now();
  for (let s = 10; s <= S.idleS; s += 10) {
    await sleep(t0 + s * 1000 - Date.now());
    samples.push({ s, hbs: await allocated(env.imageOnBox), manual: await allocated(onBox) });
  }
  await sleep(t0 + S.idleS * 1000 - Date.now());
  await syncfs(p.mountPoint, p.boxMount, p.manualFs, p.plain);
  const hbsAfterIdle = await allocated(env.imageOnBox);
  const manualAfterIdle = await allocated(onBox);
  samples.push({ s: Math.round((Date.now() - t0) / 1000), hbs: hbsAfterIdle, manual: manualAfterIdle, synced: true });

  await run('umount', [p.manualFs]);
  await syncfs(p.plain);
  const manualAfterUmount = await allocated(onBox);
  await rm(onBox, { force: true });
  return {
    imageGiB: S.imageGiB,
    idleS: S.idleS,
    hbs: { afterInit: hbsAfterInit, afterIdle: hbsAfterIdle, growthWhileIdle: hbsAfterIdle - hbsAfterInit, initS: env.initS, linkBytesInit: env.initLinkBytes },
    manual: {
      procedure: `truncate -s ${S.imageGiB}G; mkfs.ext4 (defaults); mount -o loop; ${S.idleS} s idle`,
      mkfsS,
      afterMkfs: manualAfterMkfs,
      afterMount: manualAfterMount,
      afterIdle: manualAfterIdle,
      afterUmount: manualAfterUmount,
      linkBytesMkfsMount: manualLinkBytes,
    },
    ratio: manualAfterIdle / hbsAfterIdle,
    samples,
    targets: { hbsMaxBytes: 8 * MiB, ratioMin: 60 },
  };
}

// ---------------------------------------------------------------------------------------------
// 4. Many small files: rsync -a into hbs vs rsync -rlt onto plain sshfs, then 10 % changed.

async function dropCaches() {
  await run('sync', []);
  await writeFile('/proc/sys/vm/drop_caches', '3\n').catch(() => undefined);
}

async function smallFiles(env, tree, src) {
  const { p } = env;
  if (!(await mountedAt(p.plain))) await sshfs(env, p.plain);
  const hbsDest = join(p.mountPoint, 'tree');
  const plainDest = join(p.plain, 'tree');
  const limit = S.sshfsTimeoutS * 1000;

  log(`rsync -a of ${tree.files.length} files into the hbs mount`);
  const [hbsFull, hbsFullS] = await timed(async () => {
    const r = await run('rsync', ['-a', `${src}/`, `${hbsDest}/`], { reject: false });
    await syncfs(p.mountPoint, p.boxMount);
    return r;
  });
  log(`rsync -rlt onto plain sshfs (at most ${S.sshfsTimeoutS} s)`);
  const [plainFull, plainFullS] = await timed(async () => {
    const r = await run('rsync', ['-rlt', `${src}/`, `${plainDest}/`], { reject: false, timeout: limit });
    if (!r.timedOut) await syncfs(p.plain);
    return r;
  });
  // The incremental run needs the full copy in place on both sides. If plain sshfs did not finish,
  // the rest is copied on the box's side (as the account), where it costs no link time.
  let seeded = false;
  if (plainFull.timedOut) {
    seeded = true;
    log('plain sshfs hit its time limit: completing its copy on the box side for the incremental run');
    await fusermount(p.plain);
    const onBox = join(env.box.home, 'tree');
    await run('rsync', ['-rlt', '--delete', `${src}/`, `${onBox}/`]);
    await run('chown', ['-R', `${env.box.user}:${env.box.user}`, onBox]);
    await sshfs(env, p.plain);
  }

  const changed = await changeSome(src, tree.files, S.changedShare);
  // Incremental runs start cold on both sides, as a nightly backup would: page cache, dentries and
  // sshfs's own directory cache dropped.
  await dropCaches();
  await fusermount(p.plain);
  await sshfs(env, p.plain);
  log(`incremental (${changed} files changed), caches dropped: hbs`);
  const [hbsIncr, hbsIncrS] = await timed(async () => {
    const r = await run('rsync', ['-a', `${src}/`, `${hbsDest}/`], { reject: false });
    await syncfs(p.mountPoint, p.boxMount);
    return r;
  });
  await dropCaches();
  log('incremental: plain sshfs');
  const [plainIncr, plainIncrS] = await timed(async () => {
    const r = await run('rsync', ['-rlt', `${src}/`, `${plainDest}/`], { reject: false, timeout: limit });
    if (!r.timedOut) await syncfs(p.plain);
    return r;
  });
  // Owners are compared once both copies are complete (after the incremental run).
  const ownersHbs = await ownersKept(src, hbsDest, tree.files);
  const ownersPlain = await ownersKept(src, plainDest, tree.files, 60);
  await rm(join(env.box.home, 'tree'), { recursive: true, force: true });
  const side = (r, s) => ({ seconds: s, timedOut: Boolean(r.timedOut), exitCode: r.exitCode ?? null, stderrTail: String(r.stderr ?? '').trim().split('\n').slice(-2).join('\n') });
  return {
    files: tree.files.length,
    bytes: tree.bytes,
    symlinks: tree.symlinks,
    hardlinks: tree.hardlinks,
    changed,
    timeoutS: S.sshfsTimeoutS,
    plainSeededOnBox: seeded,
    full: { hbs: side(hbsFull, hbsFullS), plain: side(plainFull, plainFullS) },
    incremental: { hbs: side(hbsIncr, hbsIncrS), plain: side(plainIncr, plainIncrS) },
    owners: { hbs: ownersHbs, plain: ownersPlain },
    commands: { hbs: 'rsync -a SRC/ MOUNT/tree/ && sync -f', plain: 'rsync -rlt SRC/ SSHFS/tree/ && sync -f' },
  };
}

async function mountedAt(dir) {
  return (await run('findmnt', ['--mountpoint', dir], { reject: false })).exitCode === 0;
}

// ---------------------------------------------------------------------------------------------
// 5. Large files: sequential write + sync, hbs vs plain sshfs, and option variants side by side.

async function writeAndSync(source, dest, mib, ...syncPaths) {
  await run('cat', [source], { stdout: 'ignore' }); // the source comes from the page cache
  const [, s] = await timed(async () => {
    await run('dd', [`if=${source}`, `of=${dest}`, 'bs=1M', `count=${mib}`, 'iflag=fullblock', 'conv=fsync', 'status=none']);
    await syncfs(...syncPaths);
  });
  await rm(dest, { force: true });
  await syncfs(...syncPaths);
  return { seconds: s, mibPerS: mib / s };
}

/** Mounts a variant's stack on the variant paths, writes, takes it down again. */
async function variantRun(env, v, { direct, mib, source }) {
  const { p, cfg } = env;
  await sshfs(env, p.vbox, { direct, extra: v.sshfs ?? [] });
  let dev;
  try {
    // As hbs does it: the box mount's readahead before anything opens the image.
    if (v.boxRaKb) await writeFile(`/sys/class/bdi/${(await run('mountpoint', ['-d', p.vbox])).stdout.trim()}/read_ahead_kb`, `${v.boxRaKb}\n`);
    if (v.plain) return await writeAndSync(source, join(p.vbox, 'large.bin'), mib, p.vbox);
    const image = join(p.vbox, cfg.image.name);
    const opts = [...cfg.filesystem.mountOptions, ...(v.ext4 ?? [])];
    await mkdir(p.vfs, { recursive: true });
    if (v.loopDio) {
      dev = (await run('losetup', ['--find', '--show', '--direct-io=on', image])).stdout.trim();
      const dio = (await run('losetup', ['--list', '--noheadings', '--output', 'DIO', dev])).stdout.trim();
      if (dio !== '1') log(`  note: ${dev} did not switch to direct I/O (DIO=${dio})`);
      await run('mount', ['-t', 'ext4', ...(opts.length ? ['-o', opts.join(',')] : []), dev, p.vfs]);
    } else {
      await run('mount', ['-t', 'ext4', '-o', ['loop', ...opts].join(','), image, p.vfs]);
    }
    try {
      return await writeAndSync(source, join(p.vfs, 'large.bin'), mib, p.vfs, p.vbox);
    } finally {
      await run('umount', [p.vfs]);
    }
  } finally {
    if (dev) await run('losetup', ['--detach', dev], { reject: false });
    await fusermount(p.vbox);
  }
}

async function largeFiles(env, source) {
  const { p } = env;
  if (!(await mountedAt(p.plain))) await sshfs(env, p.plain);
  log(`${S.largeMiB} MiB sequential write + sync: plain sshfs, then the hbs stack as hbs mounted it`);
  const headline = {
    mib: S.largeMiB,
    plain: await writeAndSync(source, join(p.plain, 'large.bin'), S.largeMiB, p.plain),
    hbs: await writeAndSync(source, join(p.mountPoint, 'large.bin'), S.largeMiB, p.mountPoint, p.boxMount),
  };
  headline.ratio = headline.hbs.mibPerS / headline.plain.mibPerS;

  // The variants mount the same image on other paths: hbs's own stack must be down meanwhile.
  await hbs(env, 'umount');
  const list = VARIANTS.filter((x) => chosen.includes(x.id));
  const runs = Object.fromEntries(list.map((v) => [v.id, { relay: [], loopback: [] }]));
  try {
    // Repeats go in passes over all variants, so slow phases of a shared machine hit them alike.
    for (let pass = 0; pass < S.variantRepeat; pass++) {
      for (const v of list) {
        log(`variant ${v.id} (pass ${pass + 1} of ${S.variantRepeat}): ${[S.variantMiB && `${S.variantMiB} MiB through the relay`, S.loopbackMiB && `${S.loopbackMiB} MiB on loopback`].filter(Boolean).join(', ')}`);
        if (S.variantMiB) runs[v.id].relay.push(await variantRun(env, v, { direct: false, mib: S.variantMiB, source }));
        if (S.loopbackMiB) runs[v.id].loopback.push(await variantRun(env, v, { direct: true, mib: S.loopbackMiB, source }));
      }
    }
  } finally {
    await hbs(env, 'mount');
  }
  const summary = (xs) => (xs.length ? { mibPerS: median(xs.map((x) => x.mibPerS)), seconds: median(xs.map((x) => x.seconds)), runsMiBPerS: xs.map((x) => x.mibPerS) } : undefined);
  const variants = list.map((v) => ({ id: v.id, label: v.label, relay: summary(runs[v.id].relay), loopback: summary(runs[v.id].loopback) }));
  const base = (id, k) => variants.find((x) => x.id === id)?.[k]?.mibPerS;
  for (const row of variants) {
    for (const k of ['relay', 'loopback']) {
      if (!row[k]) continue;
      row[k].vsPlain = base('plain', k) ? row[k].mibPerS / base('plain', k) : undefined;
      row[k].vsHbs = base('hbs', k) ? row[k].mibPerS / base('hbs', k) : undefined;
    }
  }
  return { headline, variantMiB: S.variantMiB, loopbackMiB: S.loopbackMiB, repeat: S.variantRepeat, variants, linkLimitMiBPerS: (S.rateMbit * 1e6) / 8 / MiB };
}

// ---------------------------------------------------------------------------------------------
// 2. Bytes written by grow (100 → 200 GiB), and by the first mount after it.

/**
 * Block groups in the image, and how many have their inode table marked zeroed. Read on the box's
 * side (the stand-in box's disk is local), so it costs no link time; a mounted filesystem may be a
 * few seconds stale there, which is fine for a count.
 */
async function itableZeroed(image) {
  const r = await run('dumpe2fs', [image], { reject: false, stderr: 'ignore', maxBuffer: 256 * MiB });
  const out = String(r.stdout);
  return { groups: (out.match(/^Group \d+:/gm) ?? []).length, zeroed: (out.match(/ITABLE_ZEROED/g) ?? []).length };
}

async function grow(env) {
  const { p, cfg } = env;
  const help = await run(HBS, ['grow', '--help'], { reject: false });
  const native = help.exitCode === 0 && help.stdout.includes('--offline');
  await syncfs(p.mountPoint, p.boxMount);
  const before = await allocated(env.imageOnBox);
  const linkBefore = (await env.relay.stats()).bytesUp;
  let method;
  const [, seconds] = await timed(async () => {
    if (native) {
      // --force only where this disk has less free space than the image may come to need.
      const fs = await statfs(env.box.home);
      const force = fs.bavail * fs.bsize < S.growToGiB * GiB ? ['--force'] : [];
      method = `hbs grow --size ${S.growToGiB}G --offline --yes${force.length ? ' --force' : ''}`;
      await hbs(env, 'grow', '--size', `${S.growToGiB}G`, '--offline', '--yes', ...force);
    } else {
      method = `hbs grow is not there: hbs umount; losetup; truncate -s '>${S.growToGiB}G'; losetup -c; e2fsck -f -p; resize2fs; losetup -d; hbs mount`;
      await hbs(env, 'umount');
      await sshfs(env, p.boxMount);
      const image = join(p.boxMount, cfg.image.name);
      const dev = (await run('losetup', ['--find', '--show', image])).stdout.trim();
      try {
        await run('truncate', [`--size=>${S.growToGiB}G`, image]);
        await run('losetup', ['-c', dev]);
        const fsck = await run('e2fsck', ['-f', '-p', dev], { reject: false });
        if (fsck.exitCode & ~3) throw new Error(`e2fsck -f -p exit ${fsck.exitCode}: ${fsck.stdout}${fsck.stderr}`);
        await run('resize2fs', [dev]);
      } finally {
        await run('losetup', ['--detach', dev], { reject: false });
      }
      await fusermount(p.boxMount);
      await hbs(env, 'mount');
    }
  });
  await syncfs(p.mountPoint, p.boxMount);
  const afterGrow = await allocated(env.imageOnBox);
  const linkAfter = (await env.relay.stats()).bytesUp;
  // The first mount after a grow is where ext4's lazy inode-table init would start on new groups.
  const mounted = await mountedAt(p.mountPoint);
  const zeroedAfterGrow = await itableZeroed(env.imageOnBox);
  log(`grown (${method}); ${S.growIdleS} s idle ${mounted ? 'mounted' : '(not mounted!)'}`);
  const samples = [];
  const t0 = Date.now();
  for (let s = 10; s <= S.growIdleS; s += 10) {
    await sleep(t0 + s * 1000 - Date.now());
    samples.push({ s, bytes: await allocated(env.imageOnBox) });
  }
  await sleep(t0 + S.growIdleS * 1000 - Date.now());
  await syncfs(p.mountPoint, p.boxMount);
  const afterIdle = await allocated(env.imageOnBox);
  const zeroedAfterIdle = await itableZeroed(env.imageOnBox);
  return {
    fromGiB: S.imageGiB,
    toGiB: S.growToGiB,
    method,
    seconds,
    mountedAfter: mounted,
    before,
    afterGrow,
    afterIdle,
    idleS: S.growIdleS,
    samples,
    groups: { afterGrow: zeroedAfterGrow, afterIdle: zeroedAfterIdle },
    newlyAllocated: afterGrow - before,
    newlyAllocatedInclIdle: afterIdle - before,
    linkBytes: linkAfter - linkBefore,
  };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const missing = await e2eUnavailable();
  if (missing) {
    process.stderr.write(`bench: ${missing}\n`);
    return 3;
  }
  installSignalHandlers();
  const started = new Date();
  const results = { started: started.toISOString(), settings: S, machine: await machine() };
  const t = await mkdtemp('/tmp/hbs-bench-');
  onCleanup('temp dir', () => removeTempDir(t));
  let failed = false;
  try {
    if (want('startup')) {
      log(`start-up: ${S.startupRuns} runs each, interleaved`);
      const load = loadavg()[0];
      results.startup = startup();
      results.startup.loadAvg1 = { before: load, after: loadavg()[0] };
    }
    const src = join(t, 'src-tree');
    const large = join(t, 'large.src');
    let tree;
    if (want('files')) {
      log(`generating ${S.files} small files`);
      tree = await makeTree(src, S.files);
    }
    if (want('large')) {
      const mib = Math.max(S.largeMiB, S.variantMiB, S.loopbackMiB);
      log(`generating ${mib} MiB of random data`);
      await run('dd', ['if=/dev/urandom', `of=${large}`, 'bs=1M', `count=${mib}`, 'iflag=fullblock', 'status=none']);
    }
    if (['bytes', 'files', 'large', 'grow', 'backup'].some(want)) {
      const env = await setUp(t);
      results.relay = { delayMs: S.delayMs, rateMbit: S.rateMbit, port: env.relay.port };
      // A section that fails is recorded as such; the others still run.
      const section = async (name, fn) => {
        if (!want(name)) return;
        try {
          const load = loadavg()[0];
          results[name] = await fn();
          results[name].loadAvg1 = { before: load, after: loadavg()[0] };
        } catch (err) {
          failed = true;
          log(`bench: section ${name} failed: ${err?.stack ?? err}`);
          results.errors = { ...results.errors, [name]: String(err?.message ?? err) };
        }
      };
      await section('bytes', () => bytesOnBox(env));
      await section('files', () => smallFiles(env, tree, src));
      await section('large', () => largeFiles(env, large));
      // Before grow: the backup section works on the image as init made it.
      await section('backup', () => backupSection(env, { S, t, HBS, hbs, sshfs }));
      await section('grow', () => grow(env));
      results.relay.stats = await env.relay.stats();
    }
    if (want('huge')) {
      try {
        const load = loadavg()[0];
        results.huge = await hugeSection({ S, HBS });
        results.huge.loadAvg1 = { before: load, after: loadavg()[0] };
      } catch (err) {
        failed = true;
        log(`bench: section huge failed: ${err?.stack ?? err}`);
        results.errors = { ...results.errors, huge: String(err?.message ?? err) };
      }
    }
  } finally {
    log('cleaning up');
    await cleanupAll();
  }
  results.seconds = (Date.now() - started.getTime()) / 1000;
  const md = render(results);
  results.markdown = md;
  const out = resolve(process.env.BENCH_OUT || join(import.meta.dirname, 'results', 'latest.json'));
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, JSON.stringify(results, null, 2) + '\n');
  process.stdout.write(md + '\n');
  log(`wrote ${out} (${results.seconds.toFixed(0)} s in all)`);
  return failed ? 1 : 0;
}

process.exitCode = await main().catch(async (err) => {
  process.stderr.write(`bench: ${err?.stack ?? err}\n`);
  await cleanupAll();
  return 1;
});
