#!/usr/bin/env node
// `node bench/restore.mjs` (as root, after `npm ci`): restore (read back everything) of many small
// files through hbs's stack — ext4 → loop → image on sshfs → ssh → box — through the WAN-like relay,
// with the knobs under it (loop direct I/O, loop and sshfs readahead, FUSE background requests,
// sshfs and ext4 options, the order files are read in), the write side with the same settings, and
// borg / restic / plain sshfs on the same data and link. Every measurement starts cold: the ext4
// and the sshfs mount are taken down, caches dropped, both mounted again with the setting under test.
//
// Writes bench/results/restore.json (not committed; RESTORE_OUT elsewhere; rewritten after every
// run, so an interrupted run keeps its figures: `node bench/restore.mjs --render FILE` prints their
// Markdown) and prints Markdown on stdout (progress on stderr); `RESTORE_MD=path` writes it there too. Figures only: nothing is asserted.
// Whatever it mounts, attaches or starts is undone on success, failure and Ctrl+C.
//
// Settings (environment): RESTORE_FILES (3000) and RESTORE_LARGE_FILES (20000, 0 skips) small files
// of 1–16 KiB (bench/lib/tree.mjs); RESTORE_SEQ_MIB (256) for the sequential write and read;
// RESTORE_ONLY (sweep,writes,large) sections; RESTORE_CONFIGS (all) the sweep's stack settings;
// RESTORE_RECOMMEND (the sweep's fastest `cp -a`) the setting the large set is measured with;
// RESTORE_DIO_CP_LARGE (1) whether to run `cp -a` with hbs's current settings over the large set
// (about 9 minutes); RESTORE_RUN_TIMEOUT_S (900), RESTORE_PLAIN_TIMEOUT_S (240) limits per run;
// RESTORE_DELAY_MS (10), RESTORE_RATE_MBIT (200) the link; RESTORE_NICE (-5) the priority of the
// benchmark and all it starts (relay, sshd, sshfs); RESTORE_QUICK=1 smoke sizes.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, release, setPriority, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { execa } from 'execa';
import { e2eUnavailable, startBox } from '../build/test-support/stand-in-box.js';
import { teardown } from '../build/test-support/teardown.js';
import { sshfsMountOptions } from '../dist/lib/ssh.js';
import { cleanupAll, installSignalHandlers, isAborting, onCleanup, removeTempDir } from './lib/cleanup.mjs';
import { changeSome, makeTree } from './lib/tree.mjs';
import { GiB, MiB, fmtBytes, fmtS, fmtX, log, run, sleep, syncfs, timed } from './lib/util.mjs';

const ROOT = resolve(import.meta.dirname, '..');
const HBS = join(ROOT, 'bin', 'hbs');
const PCOPY = join(import.meta.dirname, 'lib', 'pcopy.mjs');
const QUICK = process.env.RESTORE_QUICK === '1';

function setting(name, full, quick) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return QUICK ? quick : full;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${raw}: not a number`);
  return n;
}

const S = {
  quick: QUICK,
  files: setting('RESTORE_FILES', 3000, 300),
  largeFiles: setting('RESTORE_LARGE_FILES', 20000, 1000),
  seqMiB: setting('RESTORE_SEQ_MIB', 256, 32),
  imageGiB: setting('RESTORE_IMAGE_GIB', 20, 20),
  changedShare: 0.01,
  dioCpLarge: setting('RESTORE_DIO_CP_LARGE', 1, 1) === 1,
  runTimeoutS: setting('RESTORE_RUN_TIMEOUT_S', 900, 300),
  plainTimeoutS: setting('RESTORE_PLAIN_TIMEOUT_S', 240, 60),
  delayMs: setting('RESTORE_DELAY_MS', 10, 10),
  rateMbit: setting('RESTORE_RATE_MBIT', 200, 200),
  sections: (process.env.RESTORE_ONLY || 'sweep,writes,large').split(',').map((s) => s.trim()),
  recommend: process.env.RESTORE_RECOMMEND || undefined,
};
const want = (s) => S.sections.includes(s);
const linkBytesPerS = (S.rateMbit * 1e6) / 8;

// ---------------------------------------------------------------------------------------------
// Stack settings. dio: loop direct I/O; fuseRaKb: read_ahead_kb of the sshfs mount's bdi (set
// before the loop device opens the image: a file takes its readahead size from the bdi at open);
// loopRaKb: blockdev --setra of the loop device; maxBg: the FUSE connection's max_background (and
// congestion_threshold at ¾ of it); sshfs / ext4: extra mount options; toggleOff: attached and
// mounted with direct I/O on as hbs does, then `losetup --direct-io=off` on the mounted device;
// raLate: read_ahead_kb written only after that (to show whether the order matters).

const CONFIGS = {
  hbs: { label: 'hbs now: loop direct I/O on, defaults', dio: true },
  'dio-bg64': { label: 'direct I/O on + FUSE max_background=64', dio: true, maxBg: 64 },
  'dio-lra4m': { label: 'direct I/O on + loop readahead 4 MiB', dio: true, loopRaKb: 4096 },
  buf: { label: 'loop buffered (direct I/O off), defaults', dio: false },
  'buf-ra1m': { label: 'buffered + sshfs read_ahead_kb=1024', dio: false, fuseRaKb: 1024 },
  'buf-ra2m': { label: 'buffered + sshfs read_ahead_kb=2048', dio: false, fuseRaKb: 2048 },
  'buf-ra4m': { label: 'buffered + sshfs read_ahead_kb=4096', dio: false, fuseRaKb: 4096 },
  'buf-ra8m': { label: 'buffered + sshfs read_ahead_kb=8192', dio: false, fuseRaKb: 8192 },
  'buf-ra16m': { label: 'buffered + sshfs read_ahead_kb=16384', dio: false, fuseRaKb: 16384 },
  'buf-ra4m-bg64': { label: 'buffered + ra 4 MiB + max_background=64', dio: false, fuseRaKb: 4096, maxBg: 64 },
  'buf-ra4m-lra4m': { label: 'buffered + ra 4 MiB + loop readahead 4 MiB', dio: false, fuseRaKb: 4096, loopRaKb: 4096 },
  'buf-ra4m-irb': { label: 'buffered + ra 4 MiB + ext4 inode_readahead_blks=256', dio: false, fuseRaKb: 4096, ext4: ['inode_readahead_blks=256'] },
  'buf-ra4m-conns4': { label: 'buffered + ra 4 MiB + sshfs max_conns=4', dio: false, fuseRaKb: 4096, sshfs: ['max_conns=4'] },
  'buf-ra4m-kc': { label: 'buffered + ra 4 MiB + sshfs kernel_cache', dio: false, fuseRaKb: 4096, sshfs: ['kernel_cache'] },
  toggled: { label: 'ra 4 MiB, attached + mounted with direct I/O on, then --direct-io=off while mounted', dio: true, fuseRaKb: 4096, toggleOff: true },
  'toggled-late': { label: 'as toggled, but read_ahead_kb written after the loop device opened the image', dio: true, fuseRaKb: 4096, toggleOff: true, raLate: true },
};

/** Readers. `order`: the list the readers take the files in (dir: as the walk finds them). */
const READERS = {
  cp: { label: '`cp -a` (one reader)' },
  tar: { label: '`tar -cf - . | wc -c` (one reader)' },
  'tar-ino': { label: '`tar --sort=inode -cf - . | wc -c`' },
  p4: { label: '4 readers, directory order', n: 4, order: 'dir' },
  p16: { label: '16 readers, directory order', n: 16, order: 'dir' },
  p64: { label: '64 readers, directory order', n: 64, order: 'dir' },
  ino16: { label: '16 readers, inode order (`find -printf %i`, in the timing)', n: 16, order: 'inode' },
  ext1: { label: '1 reader, extent order known beforehand (`tar --no-recursion -T list | wc -c`)', n: 1, order: 'extent' },
  ext4: { label: '4 readers, extent order (known beforehand)', n: 4, order: 'extent' },
  ext16: { label: '16 readers, extent order (known beforehand)', n: 16, order: 'extent' },
  extcold16: { label: '16 readers, extent order (`filefrag` pass in the timing)', n: 16, order: 'extent-cold' },
};

/** The sweep on the small set: which readers under which setting. */
const SWEEP = [
  ['hbs', ['cp', 'tar', 'p4', 'p16', 'p64', 'ext16']],
  ['dio-bg64', ['p16']],
  ['buf', ['cp', 'tar', 'p4', 'p16', 'ext1', 'ext16']],
  ['buf-ra1m', ['cp', 'tar', 'ext1']],
  ['buf-ra2m', ['cp', 'ext1']],
  ['buf-ra4m', ['cp', 'tar', 'tar-ino', 'p4', 'p16', 'ino16', 'ext1', 'ext4', 'ext16', 'extcold16']],
  ['buf-ra8m', ['cp', 'ext1']],
  ['buf-ra16m', ['cp', 'tar', 'ext1']],
  ['buf-ra4m-bg64', ['cp', 'ext4']],
  ['buf-ra4m-lra4m', ['cp']],
  ['buf-ra4m-irb', ['cp']],
  ['buf-ra4m-conns4', ['cp']],
  ['buf-ra4m-kc', ['cp']],
  ['toggled', ['cp', 'ext1']],
  ['toggled-late', ['cp']],
];
const configFilter = process.env.RESTORE_CONFIGS ? process.env.RESTORE_CONFIGS.split(',') : undefined;

// ---------------------------------------------------------------------------------------------
// Children in a process group of their own, killed as a group on timeout and on clean-up (a `cp`
// still reading from the mount would keep it busy).

const active = new Set();

async function group(cmd, args, { timeoutS = S.runTimeoutS, ...opts } = {}) {
  if (isAborting()) throw new Error(`interrupted: not running ${cmd}`);
  const child = execa(cmd, args, { detached: true, reject: false, stdin: 'ignore', maxBuffer: 512 * MiB, ...opts });
  active.add(child);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }, timeoutS * 1000);
  try {
    const r = await child;
    return { exitCode: r.exitCode, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), timedOut };
  } finally {
    clearTimeout(timer);
    active.delete(child);
  }
}

const sh = (script, args, opts) => group('bash', ['-c', `set -o pipefail; ${script}`, 'bash', ...args], opts);

function killActive() {
  for (const c of active) {
    try {
      process.kill(-c.pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }
}

function fail(what, r) {
  if (r.timedOut) return;
  if (r.exitCode !== 0) throw new Error(`${what}: exit ${r.exitCode}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`);
}

// ---------------------------------------------------------------------------------------------
// The box, the relay, hbs init.

async function startRelay(targetPort) {
  // bench/lib/util.mjs startRelayProcess, with a lifetime long enough for this benchmark.
  const { startRelayProcess } = await import('./lib/util.mjs');
  return startRelayProcess({ targetPort, delayMs: S.delayMs, rateMbit: S.rateMbit, lifetimeS: 4 * 3600 });
}

async function setUp(t) {
  const box = await startBox();
  onCleanup('stand-in box (sshd, account, its home)', () => box.stop());
  log(`box: ${box.user}@127.0.0.1 port ${box.port}`);
  const relay = await startRelay(box.port);
  log(`relay: 127.0.0.1:${relay.port} → ${box.port}, ${S.delayMs} ms each way, ${S.rateMbit} Mbit/s`);
  const p = {
    box: join(t, 'box'),
    fs: join(t, 'fs'),
    plain: join(t, 'plain'),
    dest: join(t, 'dest'),
    config: join(t, 'etc', 'config.json'),
    key: join(t, 'hbs_ed25519'),
    knownHosts: join(t, 'known_hosts'),
    lists: join(t, 'lists'),
  };
  onCleanup('mounts and loop devices', () => teardown([p.fs], [p.box, p.plain]));
  await mkdir(p.lists, { recursive: true });
  const blob = (await readFile(join(box.dir, 'host_key.pub'), 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
  await writeFile(p.knownHosts, `[127.0.0.1]:${relay.port} ${blob}\n[127.0.0.1]:${box.port} ${blob}\n`, { mode: 0o600 });

  const args = ['init', '--yes', '--user', box.user, '--host', '127.0.0.1', '--port', String(relay.port), '--size', `${S.imageGiB}G`,
    '--host-key-fingerprint', box.hostKeyFingerprint, '--password-stdin', '--box-mount', p.box, '--mount-point', p.fs,
    '--ssh-key', p.key, '--no-fstab', '--no-systemd', '--config', p.config];
  log(`hbs init ${S.imageGiB} GiB through the relay`);
  const r = await run(HBS, args, { input: `${box.password}\n`, reject: false, env: { NO_COLOR: '1' } });
  if (r.exitCode !== 0) throw new Error(`hbs init failed (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
  const cfg = JSON.parse(await readFile(p.config, 'utf8'));
  const facts = await stackFacts(p);
  log(`hbs init: mounted with ${JSON.stringify(facts)}`);
  await run(HBS, ['umount', '--config', p.config], { env: { NO_COLOR: '1' } });
  // The restore target: RAM, so the local disk takes no part in any tool's time.
  await mkdir(p.dest, { recursive: true });
  await run('mount', ['-t', 'tmpfs', '-o', 'size=4g,mode=0755', 'tmpfs', p.dest]);
  onCleanup('restore target (tmpfs)', () => execa('umount', [p.dest], { reject: false }));
  const conn = { user: box.user, host: '127.0.0.1', port: relay.port, remotePath: '', key: p.key, knownHosts: p.knownHosts };
  const ssh = ['ssh', '-p', String(relay.port), '-i', p.key, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${p.knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes'];
  return { box, relay, p, cfg, conn, ssh, image: join(p.box, cfg.image.name), mountOptions: cfg.filesystem.mountOptions, hbsFacts: facts, state: {} };
}

/** The FUSE control files need fusectl; mounted for the run if the machine has not. */
async function fusectl() {
  const mp = '/sys/fs/fuse/connections';
  if ((await run('findmnt', ['--mountpoint', mp], { reject: false })).exitCode === 0) return;
  await run('mount', ['-t', 'fusectl', 'fusectl', mp]);
  onCleanup('fusectl', () => execa('umount', [mp], { reject: false }));
}

// ---------------------------------------------------------------------------------------------
// Mounting a setting, cold.

// Clean-up runs these too, after Ctrl+C, when util.mjs's run() refuses to start anything: execa directly.
const mounted = async (dir) => (await execa('findmnt', ['--mountpoint', dir], { reject: false })).exitCode === 0;

async function sshfsMount(env, dir, extra = []) {
  await mkdir(dir, { recursive: true });
  const c = env.conn;
  await run('sshfs', ['-o', [...sshfsMountOptions(c), ...extra].join(','), `${c.user}@${c.host}:`, dir], { timeout: 60_000, detached: true });
}

/** The sysfs files of an sshfs mount: its bdi (readahead) and its FUSE connection (max_background). */
async function fuseFiles(dir) {
  const [maj, min] = (await run('mountpoint', ['-d', dir])).stdout.trim().split(':').map(Number);
  return { bdi: `/sys/class/bdi/${maj}:${min}`, conn: `/sys/fs/fuse/connections/${maj * 2 ** 20 + min}` };
}

const readNum = async (f) => Number((await readFile(f, 'utf8').catch(() => 'NaN')).trim());

async function stackFacts(p, dev) {
  const f = await fuseFiles(p.box);
  if (!dev) dev = (await run('findmnt', ['-n', '-o', 'SOURCE', '--mountpoint', p.fs])).stdout.trim();
  return {
    loop: dev,
    dio: (await run('losetup', ['--list', '--noheadings', '--output', 'DIO', dev])).stdout.trim() === '1',
    loopRaKb: Number((await run('blockdev', ['--getra', dev])).stdout.trim()) / 2,
    fuseRaKb: await readNum(`${f.bdi}/read_ahead_kb`),
    maxBg: await readNum(`${f.conn}/max_background`),
    congestion: await readNum(`${f.conn}/congestion_threshold`),
    ext4: (await run('findmnt', ['-n', '-o', 'OPTIONS', '--mountpoint', p.fs])).stdout.trim(),
  };
}

async function mountStack(env, c) {
  const { p } = env;
  await sshfsMount(env, p.box, c.sshfs ?? []);
  const f = await fuseFiles(p.box);
  if (c.fuseRaKb !== undefined && !c.raLate) await writeFile(`${f.bdi}/read_ahead_kb`, `${c.fuseRaKb}\n`);
  if (c.maxBg !== undefined) {
    await writeFile(`${f.conn}/max_background`, `${c.maxBg}\n`);
    await writeFile(`${f.conn}/congestion_threshold`, `${Math.floor((c.maxBg * 3) / 4)}\n`);
  }
  const dev = (await run('losetup', ['--find', '--show', ...(c.dio ? ['--direct-io=on'] : []), env.image])).stdout.trim();
  env.state.dev = dev;
  if (c.loopRaKb !== undefined) await run('blockdev', ['--setra', String(c.loopRaKb * 2), dev]);
  await mkdir(p.fs, { recursive: true });
  await run('mount', ['-t', 'ext4', '-o', [...env.mountOptions, ...(c.ext4 ?? [])].join(','), dev, p.fs]);
  if (c.toggleOff) await run('losetup', ['--direct-io=off', dev]);
  if (c.fuseRaKb !== undefined && c.raLate) await writeFile(`${f.bdi}/read_ahead_kb`, `${c.fuseRaKb}\n`);
  env.state.config = c;
  return stackFacts(p, dev);
}

async function unmountStack(env) {
  const { p } = env;
  if (await mounted(p.fs)) await execa('umount', [p.fs], { timeout: 300_000 });
  if (env.state.dev) {
    await execa('losetup', ['--detach', env.state.dev], { reject: false });
    // The kernel may let go of the image a moment later (udev still probing the device): wait for it.
    for (let i = 0; i < 100; i++) {
      const l = await execa('losetup', ['--list', '--noheadings', '--output', 'NAME', env.state.dev], { reject: false });
      if (l.exitCode !== 0 || !l.stdout.trim()) break;
      await sleep(100);
    }
    env.state.dev = undefined;
  }
  for (const dir of [p.box, p.plain]) {
    for (let i = 0; await mounted(dir); i++) {
      const r = await execa('fusermount3', ['-u', dir], { timeout: 120_000, reject: i >= 20 });
      if (r.exitCode !== 0) await sleep(250);
    }
  }
}

async function dropCaches() {
  await run('sync', []);
  await writeFile('/proc/sys/vm/drop_caches', '3\n');
}

/** Everything down, caches dropped, `c` mounted again. `warm`: local source trees read back in. */
async function cold(env, c, warm = []) {
  await unmountStack(env);
  await dropCaches();
  for (const dir of warm) fail('warming the source', await sh('tar -C "$1" -cf - . | cat >/dev/null', [dir]));
  return c ? mountStack(env, c) : undefined;
}

async function clearDest(env) {
  await sh('find "$1" -mindepth 1 -delete', [env.p.dest]);
}

// ---------------------------------------------------------------------------------------------
// Measuring.

const results = { runs: [] };
const OUT = resolve(process.env.RESTORE_OUT || join(import.meta.dirname, 'results', 'restore.json'));
/** The results so far, after every run: an interrupted benchmark still leaves its figures (`--render`). */
const saveSoFar = () => writeFile(OUT, JSON.stringify(results, null, 2) + '\n').catch(() => undefined);

/** Times `fn`, with the link's byte counters and the load average around it. */
/** CPU time counters of the whole machine (/proc/stat): [busy, all], iowait counted as idle. */
async function cpuTimes() {
  const f = (await readFile('/proc/stat', 'utf8')).split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const all = f.reduce((a, b) => a + b, 0);
  return [all - f[3] - f[4], all];
}

async function measure(env, meta, fn) {
  const load = loadavg()[0];
  const before = await env.relay.stats();
  const cpu0 = await cpuTimes();
  const [out, seconds] = await timed(fn);
  const cpu1 = await cpuTimes();
  const after = await env.relay.stats();
  const rec = {
    ...meta,
    seconds,
    linkDown: after.bytesDown - before.bytesDown,
    linkUp: after.bytesUp - before.bytesUp,
    load: [load, loadavg()[0]],
    cpuBusy: (cpu1[0] - cpu0[0]) / Math.max(1, cpu1[1] - cpu0[1]),
    ...out,
  };
  results.runs.push(rec);
  await saveSoFar();
  const mib = rec.bytes ? ` ${(rec.bytes / MiB / seconds).toFixed(1)} MiB/s` : '';
  log(`  ${meta.section} ${meta.set ?? ''} ${meta.config ?? ''} ${meta.test}: ${fmtS(seconds)}${rec.timedOut ? ' (TIMED OUT)' : ''}${mib}, link ↓${fmtBytes(rec.linkDown)} ↑${fmtBytes(rec.linkUp)}, load ${load.toFixed(1)}→${rec.load[1].toFixed(1)}, CPU ${(rec.cpuBusy * 100).toFixed(0)} %${rec.files !== undefined ? `, ${rec.files} entries` : ''}`);
  return rec;
}

const countEntries = async (dir) => Number((await sh('find "$1" -mindepth 1 ! -type d | wc -l', [dir])).stdout.trim());

/** The extent order of the files under `root`: first physical block from FIEMAP (`filefrag -v`). */
async function extentList(root, file) {
  const r = await sh('cd "$1" && find . ! -type d -print0 | xargs -0 -r filefrag -v', [root]);
  fail('filefrag', r);
  const phys = new Map();
  let cur;
  for (const line of r.stdout.split('\n')) {
    const m = /^File size of (.*) is \d+/.exec(line);
    if (m) {
      cur = m[1];
      continue;
    }
    const e = /^\s*0:\s+\d+\.\.\s*\d+:\s+(\d+)\.\./.exec(line);
    if (e && cur !== undefined && !phys.has(cur)) phys.set(cur, Number(e[1]));
  }
  const all = (await sh('cd "$1" && find . ! -type d -print0', [root])).stdout.split('\0').filter(Boolean);
  // Symlinks and empty files have no extent: they go last.
  const key = (x) => phys.get(x) ?? Number.MAX_SAFE_INTEGER;
  all.sort((a, b) => key(a) - key(b));
  await writeFile(file, all.map((x) => x.replace(/^\.\//, '')).join('\0') + '\0');
  return { entries: all.length, withExtent: phys.size };
}

async function inodeList(root, file) {
  const r = await sh('cd "$1" && find . ! -type d -printf "%i %P\\0"', [root]);
  fail('find -printf %i', r);
  const rows = r.stdout.split('\0').filter(Boolean).map((l) => {
    const i = l.indexOf(' ');
    return [Number(l.slice(0, i)), l.slice(i + 1)];
  });
  rows.sort((a, b) => a[0] - b[0]);
  await writeFile(file, rows.map((x) => x[1]).join('\0') + '\0');
}

async function pcopy(src, dest, n, list) {
  const r = await group(process.execPath, [PCOPY, src, dest, String(n), ...(list ? [list] : [])], { env: { UV_THREADPOOL_SIZE: String(Math.max(4, n)) } });
  fail('pcopy', r);
  if (r.timedOut) return { timedOut: true };
  return { timedOut: false };
}

/** One read-back of `src` (a tree in the hbs mount) into the tmpfs by reader `id`. */
async function readBack(env, id, src, set) {
  const d = env.p.dest;
  const rd = READERS[id];
  if (id === 'cp') {
    const r = await sh('cp -a "$1" "$2/r"', [src, d]);
    fail('cp -a', r);
    return { timedOut: r.timedOut };
  }
  if (id === 'tar' || id === 'tar-ino') {
    const r = await sh(`tar -C "$1" ${id === 'tar-ino' ? '--sort=inode ' : ''}-cf - . | wc -c`, [src]);
    fail('tar', r);
    return { timedOut: r.timedOut, tarBytes: Number(r.stdout.trim()) };
  }
  if (rd.order === 'dir') return pcopy(src, join(d, 'r'), rd.n);
  if (id === 'ext1') {
    const r = await sh('tar -C "$1" --null --no-recursion -T "$2" -cf - | wc -c', [src, set.extentList]);
    fail('tar -T', r);
    return { timedOut: r.timedOut, tarBytes: Number(r.stdout.trim()) };
  }
  if (rd.order === 'extent') return pcopy(src, join(d, 'r'), rd.n, set.extentList);
  const list = join(env.p.lists, 'now');
  if (rd.order === 'inode') await inodeList(src, list);
  if (rd.order === 'extent-cold') await extentList(src, list);
  return pcopy(src, join(d, 'r'), rd.n, list);
}

/** A cold read-back under setting `cid`; the facts of the stack are recorded with it. */
async function coldRead(env, section, set, cid, id) {
  const c = CONFIGS[cid];
  const facts = await cold(env, c);
  await clearDest(env);
  const rec = await measure(env, { section, set: set.name, config: cid, test: id, bytes: set.bytes }, () => readBack(env, id, join(env.p.fs, set.dir), set));
  rec.facts = facts;
  if (!id.startsWith('tar') && id !== 'ext1') rec.files = await countEntries(env.p.dest);
  await clearDest(env);
  return rec;
}

// ---------------------------------------------------------------------------------------------
// Sets: a tree on the local disk, its copy with 1 % changed, and its copy in hbs.

async function makeSet(env, t, name, files, seed) {
  const src = join(t, `src-${name}`);
  const changed = join(t, `src-${name}-changed`);
  log(`generating ${files} small files (${name})`);
  const tree = await makeTree(src, files, seed);
  await run('cp', ['-a', `${src}/.`, changed]);
  const nChanged = await changeSome(changed, tree.files, S.changedShare);
  const entries = tree.files.length + tree.symlinks + tree.hardlinks;
  return { name, src, changed, files: tree.files.length, entries, bytes: tree.bytes, symlinks: tree.symlinks, hardlinks: tree.hardlinks, nChanged, dir: `${name}-a`, extentList: join(env.p.lists, `${name}.extent`) };
}

/** rsync -aHAX SRC/ into the hbs mount + sync, as a backup would. */
async function rsyncInto(env, src, destDir) {
  const r = await group('rsync', ['-aHAX', `${src}/`, `${join(env.p.fs, destDir)}/`]);
  fail('rsync', r);
  await syncfs(env.p.fs, env.p.box);
  return { timedOut: r.timedOut };
}

/** The set's tree in hbs as hbs mounts it now, written by rsync (the timing is the first backup). */
async function populate(env, set, section) {
  await cold(env, CONFIGS.hbs, [set.src]);
  await measure(env, { section, set: set.name, config: 'hbs', test: 'rsync-first', bytes: set.bytes }, () => rsyncInto(env, set.src, set.dir));
  // The extent order, read while warm: a restore tool would keep it in its index.
  const x = await extentList(join(env.p.fs, set.dir), set.extentList);
  log(`  extent order of ${set.name}: ${x.withExtent} of ${x.entries} entries with an extent`);
}

/** The set's tree on the box's own disk, for plain sshfs (copied there without the link). */
async function plainTree(env, set) {
  const onBox = join(env.box.home, `plain-${set.name}`);
  await run('cp', ['-a', `${set.src}/.`, onBox]);
  await run('chown', ['-R', `${env.box.user}:${env.box.user}`, onBox]);
  return `plain-${set.name}`;
}

async function plainRead(env, set, dir, id) {
  const { p } = env;
  await cold(env, undefined);
  await sshfsMount(env, p.plain);
  await clearDest(env);
  const src = join(p.plain, dir);
  const timeoutS = S.plainTimeoutS;
  const rec = await measure(env, { section: 'plain', set: set.name, config: 'plain sshfs', test: id, bytes: set.bytes }, async () => {
    if (id === 'cp') {
      const r = await sh('cp -a "$1" "$2/r"', [src, p.dest], { timeoutS });
      return { timedOut: r.timedOut, errors: (r.stderr.match(/^cp: /gm) ?? []).length };
    }
    const n = Number(id.slice(1));
    const r = await group(process.execPath, [PCOPY, src, join(p.dest, 'r'), String(n)], { env: { UV_THREADPOOL_SIZE: String(Math.max(4, n)) }, timeoutS });
    // sshfs refuses to read symlinks whose target has `..` in it (contain_symlinks): those are skipped.
    const last = r.stdout.trim().split('\n').pop();
    return { timedOut: r.timedOut, ...(last?.startsWith('{') ? { errors: JSON.parse(last).errors, firstError: JSON.parse(last).firstError } : {}) };
  });
  rec.files = await countEntries(p.dest);
  if (rec.timedOut) rec.extrapolatedS = (rec.seconds * set.entries) / Math.max(1, rec.files);
  await run('fusermount3', ['-u', p.plain]);
  await clearDest(env);
  return rec;
}

// ---------------------------------------------------------------------------------------------
// borg and restic on the same data, repositories on the box through the relay.

async function peers(env, t, set) {
  const { p, box, relay } = env;
  const rsh = env.ssh.join(' ').replace(`-p ${relay.port} `, '');
  const borgEnv = {
    BORG_RSH: rsh,
    BORG_REPO: `ssh://${box.user}@127.0.0.1:${relay.port}/./borg-${set.name}`,
    BORG_PASSPHRASE: 'bench',
    BORG_BASE_DIR: join(t, 'borg-home'),
    BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  };
  const resticEnv = {
    RESTIC_PASSWORD: 'bench',
    RESTIC_CACHE_DIR: join(t, 'restic-cache'),
    RESTIC_REPOSITORY: `sftp:${box.user}@127.0.0.1:restic-${set.name}`,
  };
  const sftpCmd = ['-o', `sftp.command=${env.ssh.join(' ')} ${box.user}@127.0.0.1 -s sftp`];
  const borg = (args, opts = {}) => group('borg', args, { env: borgEnv, ...opts });
  const restic = (args, opts = {}) => group('restic', [...sftpCmd, ...args], { env: resticEnv, ...opts });
  const meta = (test, tool) => ({ section: 'peers', set: set.name, config: tool, test, bytes: set.bytes });
  const out = {};
  // Their own copy of the source (same mtimes), so the incremental below leaves the set's source as it was.
  const src = join(t, `peer-${set.name}`);
  await run('rm', ['-rf', src]);
  await run('cp', ['-a', `${set.src}/.`, src]);

  fail('borg init', await borg(['init', '--encryption=repokey-blake2']));
  fail('restic init', await restic(['init']));
  await cold(env, undefined, [src]);
  out.borgFirst = await measure(env, meta('first backup', 'borg'), async () => {
    const r = await borg(['create', '--compression', 'lz4', '::first', '.'], { cwd: src });
    fail('borg create', r);
    return { timedOut: r.timedOut };
  });
  await cold(env, undefined, [src]);
  out.resticFirst = await measure(env, meta('first backup', 'restic'), async () => {
    const r = await restic(['backup', '--quiet', src]);
    fail('restic backup', r);
    return { timedOut: r.timedOut };
  });

  await cold(env, undefined);
  await clearDest(env);
  await mkdir(join(p.dest, 'r'));
  out.borgExtract = await measure(env, meta('restore', 'borg'), async () => {
    const r = await borg(['extract', '::first'], { cwd: join(p.dest, 'r') });
    fail('borg extract', r);
    return { timedOut: r.timedOut };
  });
  out.borgExtract.files = await countEntries(p.dest);
  await cold(env, undefined);
  await clearDest(env);
  out.resticRestore = await measure(env, meta('restore', 'restic'), async () => {
    const r = await restic(['restore', 'latest', '--target', join(p.dest, 'r')]);
    fail('restic restore', r);
    return { timedOut: r.timedOut };
  });
  out.resticRestore.files = await countEntries(p.dest);
  await clearDest(env);

  // The nightly incremental: the changed copy under the same path as the first backup.
  await run('rsync', ['-aH', '--delete', `${set.changed}/`, `${src}/`]);
  await cold(env, undefined, [src]);
  out.borgIncr = await measure(env, meta('incremental (1 % changed)', 'borg'), async () => {
    const r = await borg(['create', '--compression', 'lz4', '::second', '.'], { cwd: src });
    fail('borg create', r);
    return { timedOut: r.timedOut };
  });
  await cold(env, undefined, [src]);
  out.resticIncr = await measure(env, meta('incremental (1 % changed)', 'restic'), async () => {
    const r = await restic(['backup', '--quiet', src]);
    fail('restic backup', r);
    return { timedOut: r.timedOut };
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Sections.

/** Plain sshfs alone on the small set (a section of its own, to repeat it). */
async function plainOnly(env, t) {
  const set = results.small ?? (await makeSet(env, t, 'small', S.files, 42));
  results.small = set;
  const dir = await plainTree(env, set);
  for (const id of ['p16', 'p4', 'cp']) await plainRead(env, set, dir, id);
}

/**
 * Repeats on the small set, in interleaved passes (a shared machine's busy spells then hit every
 * pair alike): RESTORE_REPEAT "setting:reader,…", RESTORE_REPEAT_N passes (3).
 */
async function repeat(env, t) {
  const spec = (process.env.RESTORE_REPEAT || 'hbs:p16,buf:cp,buf-ra2m:cp,buf-ra4m:cp,buf-ra4m:ext1,toggled:cp,buf-ra4m-kc:cp,buf-ra4m-conns4:cp').split(',').map((x) => x.split(':'));
  const passes = setting('RESTORE_REPEAT_N', 3, 1);
  const set = results.small ?? (await makeSet(env, t, 'small', S.files, 42));
  if (!results.small) {
    results.small = set;
    await populate(env, set, 'repeat');
  }
  for (let pass = 0; pass < passes; pass++) {
    for (const [cid, id] of spec) (await coldRead(env, 'repeat', set, cid, id)).pass = pass;
  }
}

async function sweep(env, t) {
  const set = await makeSet(env, t, 'small', S.files, 42);
  results.small = set;
  await populate(env, set, 'sweep');
  const dir = await plainTree(env, set);
  for (const [cid, ids] of SWEEP) {
    if (configFilter && !configFilter.includes(cid)) continue;
    log(`setting ${cid}: ${CONFIGS[cid].label}`);
    for (const id of ids) await coldRead(env, 'sweep', set, cid, id);
  }
  log('plain sshfs');
  await plainRead(env, set, dir, 'p16');
  await plainRead(env, set, dir, 'cp');
  log('borg and restic');
  results.peersSmall = await peers(env, t, set);
}

/** Which setting the large set is measured with: asked for, or the sweep's fastest `cp -a`. */
function recommended() {
  if (S.recommend) return S.recommend;
  const cps = results.runs.filter((r) => r.section === 'sweep' && r.test === 'cp' && !r.timedOut && !CONFIGS[r.config]?.toggleOff);
  cps.sort((a, b) => a.seconds - b.seconds);
  return cps[0]?.config ?? 'buf-ra4m';
}

async function seqWrite(env, source, name) {
  const { p } = env;
  await run('cat', [source], { stdout: 'ignore' });
  const r = await group('dd', [`if=${source}`, `of=${join(p.fs, name)}`, 'bs=1M', `count=${S.seqMiB}`, 'iflag=fullblock', 'conv=fsync', 'status=none']);
  fail('dd', r);
  await syncfs(p.fs, p.box);
  return { timedOut: r.timedOut };
}

async function writes(env, t) {
  const { p } = env;
  const set = results.small ?? (await makeSet(env, t, 'small', S.files, 42));
  if (!results.small) {
    results.small = set;
    await populate(env, set, 'writes');
  }
  const source = join(t, 'seq.src');
  await run('dd', ['if=/dev/urandom', `of=${source}`, 'bs=1M', `count=${S.seqMiB}`, 'iflag=fullblock', 'status=none']);
  const rec = recommended();
  const list = [...new Set(['hbs', 'dio-lra4m', 'buf', rec, 'buf-ra4m', 'buf-ra4m-lra4m'])].filter((c) => CONFIGS[c]);
  const seqBytes = S.seqMiB * MiB;
  for (const cid of list) {
    log(`writes under ${cid}: ${CONFIGS[cid].label}`);
    const c = CONFIGS[cid];
    const meta = (test, bytes) => ({ section: 'writes', set: 'small', config: cid, test, bytes });
    let facts = await cold(env, c);
    (await measure(env, meta(`${S.seqMiB} MiB write + sync`, seqBytes), () => seqWrite(env, source, `seq-${cid}`))).facts = facts;
    facts = await cold(env, c);
    (await measure(env, meta(`${S.seqMiB} MiB read`, seqBytes), async () => {
      const r = await group('cat', [join(p.fs, `seq-${cid}`)], { stdout: 'ignore' });
      fail('cat', r);
      return { timedOut: r.timedOut };
    })).facts = facts;
    await rm(join(p.fs, `seq-${cid}`));
    facts = await cold(env, c, [set.src]);
    (await measure(env, meta('rsync -aHAX, first', set.bytes), () => rsyncInto(env, set.src, `w-${cid}`))).facts = facts;
    facts = await cold(env, c, [set.changed]);
    (await measure(env, meta(`rsync -aHAX, ${set.nChanged} changed (1 %)`, set.bytes), () => rsyncInto(env, set.changed, `w-${cid}`))).facts = facts;
  }
  // Plain sshfs, for reference.
  await cold(env, undefined);
  await sshfsMount(env, p.plain);
  await run('cat', [source], { stdout: 'ignore' });
  await measure(env, { section: 'writes', set: 'small', config: 'plain sshfs', test: `${S.seqMiB} MiB write + sync`, bytes: seqBytes }, async () => {
    const r = await group('dd', [`if=${source}`, `of=${join(p.plain, 'seq.bin')}`, 'bs=1M', `count=${S.seqMiB}`, 'iflag=fullblock', 'conv=fsync', 'status=none']);
    fail('dd', r);
    await syncfs(p.plain);
    return {};
  });
  await cold(env, undefined);
  await sshfsMount(env, p.plain);
  await measure(env, { section: 'writes', set: 'small', config: 'plain sshfs', test: `${S.seqMiB} MiB read`, bytes: seqBytes }, async () => {
    const r = await group('cat', [join(p.plain, 'seq.bin')], { stdout: 'ignore' });
    fail('cat', r);
    return {};
  });
  await rm(join(p.plain, 'seq.bin'));
  await run('fusermount3', ['-u', p.plain]);

  // Switching direct I/O on a mounted loop device: how long does it take, idle and under writes?
  results.toggle = await toggles(env, source);
}

async function toggles(env, source) {
  const { p } = env;
  const out = [];
  const flip = async (what, to) => {
    const [r, sec] = await timed(() => run('losetup', [`--direct-io=${to}`, env.state.dev], { reject: false }));
    const facts = await stackFacts(p, env.state.dev);
    out.push({ what, to, seconds: sec, exitCode: r.exitCode, dioAfter: facts.dio, stderr: r.stderr.trim() });
    log(`  switch ${what} → ${to}: ${(sec * 1000).toFixed(0)} ms (exit ${r.exitCode}, DIO now ${facts.dio})`);
  };
  // Mounted as hbs mounts it (direct I/O on), with the read-side readahead already set.
  await cold(env, { ...CONFIGS['buf-ra4m'], dio: true });
  await flip('idle, mounted', 'off');
  await flip('idle, mounted', 'on');
  // Under writes: ext4 holds a written file in its cache, `sync -f` pushes it through the loop
  // device, and the switch comes in the middle of that.
  for (const [from, to] of [['on', 'off'], ['off', 'on']]) {
    const file = join(p.fs, `toggle-${from}-${to}.bin`);
    await run('cat', [source], { stdout: 'ignore' });
    await run('dd', [`if=${source}`, `of=${file}`, 'bs=1M', `count=${S.seqMiB}`, 'iflag=fullblock', 'status=none']);
    const [, all] = await timed(async () => {
      const s = group('sync', ['-f', p.fs]);
      await new Promise((r) => setTimeout(r, 1500));
      await flip(`in the middle of syncing ${S.seqMiB} MiB (direct I/O ${from})`, to);
      fail('sync', await s);
      await syncfs(p.fs, p.box);
    });
    out.push({ what: `… that sync of ${S.seqMiB} MiB in all`, seconds: all });
  }
  // Did the data survive the switches? Compared after a cold mount.
  await cold(env, CONFIGS['buf-ra4m']);
  for (const [from, to] of [['on', 'off'], ['off', 'on']]) {
    const file = join(p.fs, `toggle-${from}-${to}.bin`);
    const r = await group('cmp', [source, file]);
    out.push({ what: `file synced across the ${from} → ${to} switch, compared with its source after a cold mount`, ok: r.exitCode === 0 });
    await rm(file);
  }
  await syncfs(p.fs, p.box);
  return out;
}

async function large(env, t) {
  const set = await makeSet(env, t, 'large', S.largeFiles, 4242);
  results.large = set;
  const rec = recommended();
  results.recommended = rec;
  log(`large set: ${set.files} files, ${fmtBytes(set.bytes)}; recommended setting: ${rec}`);
  await populate(env, set, 'large');
  // A second copy written with the recommended setting, for the first-backup and incremental figures.
  await cold(env, CONFIGS[rec], [set.src]);
  await measure(env, { section: 'large', set: set.name, config: rec, test: 'rsync-first', bytes: set.bytes }, () => rsyncInto(env, set.src, `${set.name}-b`));
  const dir = await plainTree(env, set);

  const reads = [
    ['hbs', S.dioCpLarge ? ['cp', 'p16', 'p64'] : ['p16', 'p64']],
    [rec, ['cp', 'tar', 'p16', 'ext1', 'ext16', 'extcold16']],
  ];
  if (rec !== 'buf-ra4m') reads.push(['buf-ra4m', ['cp', 'p16']]);
  reads.push(['buf', ['cp']]);
  for (const [cid, ids] of reads) for (const id of ids) await coldRead(env, 'large', set, cid, id);
  await plainRead(env, set, dir, 'p16');
  await plainRead(env, set, dir, 'cp');
  results.peersLarge = await peers(env, t, set);

  // The nightly incremental into hbs: the same change, cold, under hbs now and the recommended setting.
  for (const [cid, d] of [['hbs', set.dir], [rec, `${set.name}-b`]]) {
    const facts = await cold(env, CONFIGS[cid], [set.changed]);
    (await measure(env, { section: 'large', set: set.name, config: cid, test: 'rsync-incremental', bytes: set.bytes }, () => rsyncInto(env, set.changed, d))).facts = facts;
  }
}

// ---------------------------------------------------------------------------------------------
// Report.

const row = (cells) => `| ${cells.join(' | ')} |`;
const head = (cells) => [row(cells), row(cells.map(() => '---'))];

function render(r) {
  const out = [];
  const m = r.machine;
  const linkS = (bytes) => bytes / linkBytesPerS;
  const secs = (x) => (x ? `${x.timedOut ? '> ' : ''}${fmtS(x.seconds)}` : '');
  const mibs = (x) => (x && x.bytes && !x.timedOut ? `${(x.bytes / MiB / x.seconds).toFixed(1)}` : '');
  const load = (x) => (x ? `${x.load[0].toFixed(1)}→${x.load[1].toFixed(1)} (CPU ${(x.cpuBusy * 100).toFixed(0)} %)` : '');
  const find = (q) => r.runs.find((x) => Object.entries(q).every(([k, v]) => x[k] === v));
  out.push(`## Restore of many small files through hbs, ${r.started.slice(0, 10)}${r.settings.quick ? ' (RESTORE_QUICK: smoke sizes)' : ''}`, '');
  out.push(`Machine: ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, ${m.os}, kernel ${m.kernel}; node ${m.node}, sshfs ${m.sshfs}, OpenSSH ${m.openssh}, borg ${m.borg}, restic ${m.restic}. ` +
    `Shared with other work: the 1-minute load average is given with every figure (2 cores).`, '');
  out.push(`Link: bench/relay.mjs, ${S.delayMs} ms each way, ${S.rateMbit} Mbit/s (${(linkBytesPerS / 1e6).toFixed(0)} MB/s), to a stand-in box (sshd on 127.0.0.1). ` +
    `Every run starts cold: ext4, loop device and sshfs taken down, \`sync; echo 3 > /proc/sys/vm/drop_caches\`, mounted again with the setting under test (the box's side is dropped too: its disk is this machine's). ` +
    'Restores go into a tmpfs. "× link" is the time over the time the link needs for the file bytes; "link ↓" what actually came over it.', '');
  const sets = [r.small, r.large].filter(Boolean);
  for (const s of sets) out.push(`- ${s.name} set: ${s.files} files of 1–16 KiB (${fmtBytes(s.bytes)}), ${s.symlinks} symlinks, ${s.hardlinks} hard links, ~10 files per directory, 3 levels; link time for the bytes ${fmtS(linkS(s.bytes))}.`);
  out.push('');

  // ---- final comparison (large set) ------------------------------------------------------------
  const L = r.large;
  if (L) {
    const borgX = r.peersLarge?.borgExtract;
    const resticX = r.peersLarge?.resticRestore;
    out.push(`### Restore, large set (${L.files} files, ${fmtBytes(L.bytes)}); recommended setting = \`${r.recommended}\` (${CONFIGS[r.recommended].label})`, '');
    out.push(...head(['what', 'setting', 'seconds', 'MiB/s', '× link', '× borg', '× restic', 'link ↓', 'load']));
    const line = (what, cfg, x) => {
      if (!x) return;
      const s = x.extrapolatedS && x.timedOut ? `> ${fmtS(x.seconds)} (≈ ${fmtS(x.extrapolatedS)} extrapolated from ${x.files} entries)` : secs(x);
      const t = x.timedOut && x.extrapolatedS ? x.extrapolatedS : x.seconds;
      out.push(row([what, cfg, s, mibs(x), fmtX(t / linkS(L.bytes)), borgX ? fmtX(t / borgX.seconds) : '', resticX ? fmtX(t / resticX.seconds) : '', fmtBytes(x.linkDown), load(x)]));
    };
    for (const x of r.runs.filter((y) => y.section === 'large' && y.test in READERS)) line(READERS[x.test].label, `\`${x.config}\``, x);
    for (const x of r.runs.filter((y) => y.section === 'plain' && y.set === 'large')) line(x.test === 'cp' ? '`cp -a`' : `${x.test.slice(1)} readers (pcopy), ${x.files} entries${x.errors ? `, ${x.errors} refused` : ''}`, 'plain sshfs', x);
    line('`borg extract`', 'borg 1.2, repokey-blake2, lz4', borgX);
    line('`restic restore`', 'restic, sftp', resticX);
    out.push(row(['the link, for the file bytes', '', fmtS(linkS(L.bytes)), (linkBytesPerS / MiB).toFixed(1), '1×', borgX ? fmtX(linkS(L.bytes) / borgX.seconds) : '', resticX ? fmtX(linkS(L.bytes) / resticX.seconds) : '', '', '']));
    out.push('');
    out.push(`#### Backups, large set (cold caches on the box's side, source warm)`, '');
    out.push(...head(['what', 'first backup', 'incremental, 1 % changed', 'link ↑ first / incremental', 'load']));
    for (const cid of ['hbs', r.recommended]) {
      const f = find({ section: 'large', config: cid, test: 'rsync-first' });
      const i = find({ section: 'large', config: cid, test: 'rsync-incremental' });
      out.push(row([`hbs, \`${cid}\`: \`rsync -aHAX\` + sync`, secs(f), secs(i), `${fmtBytes(f?.linkUp)} / ${fmtBytes(i?.linkUp)}`, `${load(f)} / ${load(i)}`]));
    }
    const pl = r.peersLarge;
    if (pl) {
      out.push(row(['`borg create`', secs(pl.borgFirst), secs(pl.borgIncr), `${fmtBytes(pl.borgFirst.linkUp)} / ${fmtBytes(pl.borgIncr.linkUp)}`, `${load(pl.borgFirst)} / ${load(pl.borgIncr)}`]));
      out.push(row(['`restic backup`', secs(pl.resticFirst), secs(pl.resticIncr), `${fmtBytes(pl.resticFirst.linkUp)} / ${fmtBytes(pl.resticIncr.linkUp)}`, `${load(pl.resticFirst)} / ${load(pl.resticIncr)}`]));
    }
    out.push('');
  }

  // ---- sweep (small set) -----------------------------------------------------------------------
  const sw = r.runs.filter((x) => x.section === 'sweep' && x.test in READERS);
  if (sw.length) {
    const sm = r.small;
    const ids = Object.keys(READERS).filter((id) => sw.some((x) => x.test === id));
    const cfgs = [...new Set(sw.map((x) => x.config))];
    out.push(`### Sweep, small set (${sm.files} files, ${fmtBytes(sm.bytes)}, link time ${fmtS(linkS(sm.bytes))}): seconds per restore`, '');
    out.push(...head(['setting', ...ids.map((id) => `\`${id}\``)]));
    for (const cid of cfgs) out.push(row([`\`${cid}\``, ...ids.map((id) => secs(find({ section: 'sweep', config: cid, test: id })))]));
    const ps = r.runs.filter((x) => x.section === 'plain' && x.set === 'small');
    if (ps.length) out.push(row(['plain sshfs', ...ids.map((id) => secs(ps.find((x) => x.test === id)))]));
    out.push('');
    out.push('Readers: ' + ids.map((id) => `\`${id}\` ${READERS[id].label}`).join('; ') + '.', '');
    out.push('Settings (as read back from the stack after mounting):', '');
    out.push(...head(['setting', 'what', 'DIO', 'loop ra', 'sshfs ra', 'max_background']));
    for (const cid of cfgs) {
      const f = sw.find((x) => x.config === cid)?.facts;
      out.push(row([`\`${cid}\``, CONFIGS[cid].label, f ? (f.dio ? 'on' : 'off') : '', f ? `${f.loopRaKb} KiB` : '', f ? `${f.fuseRaKb} KiB` : '', f ? String(f.maxBg) : '']));
    }
    out.push('');
    out.push('<details><summary>Every sweep run</summary>', '');
    out.push(...head(['setting', 'reader', 'seconds', 'MiB/s', '× link', 'link ↓', 'entries', 'load']));
    for (const x of [...sw, ...ps]) out.push(row([`\`${x.config}\``, x.test, secs(x), mibs(x), fmtX((x.extrapolatedS && x.timedOut ? x.extrapolatedS : x.seconds) / linkS(sm.bytes)), fmtBytes(x.linkDown), String(x.files ?? x.tarBytes ?? ''), load(x)]));
    const ps2 = r.peersSmall;
    if (ps2) {
      for (const [k, v] of Object.entries(ps2)) out.push(row([v.config, v.test, secs(v), mibs(v), fmtX(v.seconds / linkS(sm.bytes)), fmtBytes(k.endsWith('Extract') || k.endsWith('Restore') ? v.linkDown : v.linkUp), String(v.files ?? ''), load(v)]));
    }
    out.push('', '</details>', '');
  }

  // ---- repeats ---------------------------------------------------------------------------------
  const rp = r.runs.filter((x) => x.section === 'repeat' && x.test in READERS);
  if (rp.length) {
    const keys = [...new Set(rp.map((x) => `${x.config}:${x.test}`))];
    out.push(`### Repeats, small set, interleaved passes: seconds (median; every pass; CPU busy)`, '');
    out.push(...head(['setting', 'reader', 'median', 'passes', 'load / CPU busy']));
    for (const k of keys) {
      const [cid, id] = k.split(':');
      const xs = rp.filter((x) => x.config === cid && x.test === id);
      const med = [...xs.map((x) => x.seconds)].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
      out.push(row([`\`${cid}\``, id, fmtS(med), xs.map((x) => fmtS(x.seconds)).join(', '), xs.map((x) => `${x.load[0].toFixed(1)}/${(x.cpuBusy * 100).toFixed(0)} %`).join(', ')]));
    }
    out.push('');
  }

  // ---- writes ----------------------------------------------------------------------------------
  const wr = r.runs.filter((x) => x.section === 'writes' && x.test !== 'rsync-first');
  if (wr.length) {
    out.push(`### Writes (and the sequential read) under the same settings, small set`, '');
    const tests = [...new Set(wr.map((x) => x.test))];
    const cfgs = [...new Set(wr.map((x) => x.config))];
    out.push(...head(['setting', ...tests]));
    for (const cid of cfgs) {
      out.push(row([`\`${cid}\``, ...tests.map((tt) => {
        const x = find({ section: 'writes', config: cid, test: tt });
        return x ? `${secs(x)}${tt.includes('MiB') ? ` (${mibs(x)} MiB/s)` : ''}, load ${x.load[0].toFixed(1)}` : '';
      })]));
    }
    out.push('');
  }
  if (r.toggle) {
    out.push('### Switching loop direct I/O on a mounted device (`losetup --direct-io=on|off`)', '');
    out.push(...head(['when', 'to', 'took', 'DIO after']));
    for (const x of r.toggle) {
      const took = x.ok !== undefined ? (x.ok ? 'identical' : '**differs**') : `${(x.seconds * 1000).toFixed(0)} ms`;
      out.push(row([x.what, x.to ?? '', took, x.dioAfter === undefined ? '' : x.dioAfter ? 'on' : 'off']));
    }
    out.push('');
  }
  const sm = r.peersSmall;
  if (sm) {
    out.push('### Peers, small set', '');
    out.push(...head(['tool', 'first backup', 'restore', 'incremental (1 %)']));
    out.push(row(['borg', secs(sm.borgFirst), secs(sm.borgExtract), secs(sm.borgIncr)]));
    out.push(row(['restic', secs(sm.resticFirst), secs(sm.resticRestore), secs(sm.resticIncr)]));
    out.push('');
  }
  for (const [name, msg] of Object.entries(r.errors ?? {})) out.push(`**Section ${name} failed:** ${msg.split('\n')[0]}`, '');
  out.push(`Total: ${fmtS(r.seconds ?? 0)}.`);
  return out.join('\n');
}

async function machine() {
  const v = (cmd, args, re) => {
    const x = spawnSync(cmd, args, { encoding: 'utf8' });
    return re.exec(`${x.stdout}${x.stderr}`)?.[1];
  };
  const os = await readFile('/etc/os-release', 'utf8').catch(() => '');
  return {
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    memGiB: Math.round(totalmem() / GiB),
    kernel: release(),
    os: /PRETTY_NAME="([^"]*)"/.exec(os)?.[1],
    node: process.version,
    sshfs: v('sshfs', ['--version'], /SSHFS version (\S+)/),
    openssh: v('ssh', ['-V'], /OpenSSH_([^\s,]+)/),
    borg: v('borg', ['--version'], /borg (\S+)/),
    restic: v('restic', ['version'], /restic (\S+)/),
  };
}

async function main() {
  if (process.argv[2] === '--render') {
    // `node bench/restore.mjs --render results.json`: the Markdown of a (possibly interrupted) run.
    Object.assign(results, JSON.parse(await readFile(process.argv[3] || OUT, 'utf8')));
    process.stdout.write(render(results) + '\n');
    return 0;
  }
  const missing = await e2eUnavailable();
  if (missing) {
    process.stderr.write(`restore bench: ${missing}\n`);
    return 3;
  }
  for (const tool of ['borg', 'restic', 'filefrag', 'rsync']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      process.stderr.write(`restore bench: needs ${tool} (apt-get install borgbackup restic e2fsprogs rsync)\n`);
      return 3;
    }
  }
  installSignalHandlers();
  // A little ahead of other work on a shared machine (the relay's timers are the link): every child inherits it.
  try {
    setPriority(Number(process.env.RESTORE_NICE || -5));
  } catch {
    /* not allowed: run as is */
  }
  const started = new Date();
  Object.assign(results, { started: started.toISOString(), settings: S, machine: await machine() });
  await mkdir(dirname(OUT), { recursive: true });
  const t = await mkdtemp('/tmp/hbs-restore-');
  onCleanup('temp dir', () => removeTempDir(t));
  let failed = false;
  try {
    await fusectl();
    const env = await setUp(t);
    onCleanup('the stack under test', () => unmountStack(env));
    onCleanup('running children', killActive);
    results.hbsFacts = env.hbsFacts;
    for (const [name, fn] of [['sweep', sweep], ['writes', writes], ['large', large], ['plain', plainOnly], ['repeat', repeat]]) {
      if (!want(name)) continue;
      try {
        await fn(env, t);
      } catch (err) {
        failed = true;
        log(`restore bench: section ${name} failed: ${err?.stack ?? err}`);
        results.errors = { ...results.errors, [name]: String(err?.message ?? err) };
        if (isAborting()) break;
      }
    }
    results.relayStats = await env.relay.stats();
  } finally {
    log('cleaning up');
    await cleanupAll();
  }
  results.seconds = (Date.now() - started.getTime()) / 1000;
  const md = render(results);
  const out = OUT;
  await writeFile(out, JSON.stringify({ ...results, markdown: md }, null, 2) + '\n');
  if (process.env.RESTORE_MD) await writeFile(process.env.RESTORE_MD, md + '\n');
  process.stdout.write(md + '\n');
  log(`wrote ${out} (${results.seconds.toFixed(0)} s in all)`);
  return failed ? 1 : 0;
}

process.exitCode = await main().catch(async (err) => {
  process.stderr.write(`restore bench: ${err?.stack ?? err}\n`);
  killActive();
  await cleanupAll();
  return 1;
});
