// The small-file tree for the rsync benchmark: deterministic (seeded), random content (so nothing
// compresses), nested directories, several owners and modes, symlinks and hard links.
import { chown, link, lstat, mkdir, readdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';

/** mulberry32: a small seeded PRNG, so every run writes the same tree. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytes(rand, n) {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE((rand() * 4294967296) >>> 0, Math.min(i, n - 4));
  return b;
}

const OWNERS = [
  [0, 0],
  [1001, 1001],
  [1002, 100],
  [33, 33],
  [65534, 65534],
];
const MODES = [0o644, 0o600, 0o755, 0o640];

/**
 * Writes `files` regular files of 1–16 KiB under `root`, ~10 per directory, three levels deep,
 * plus files/20 symlinks and files/20 hard links. Returns the list of regular files (relative).
 */
export async function makeTree(root, files, seed = 42) {
  const rand = rng(seed);
  const list = [];
  let total = 0;
  for (let i = 0; i < files; i++) {
    const d = Math.floor(i / 10);
    const dir = join(`d${d % 7}`, `e${Math.floor(d / 7) % 9}`, `f${d}`);
    const rel = join(dir, `file-${i}.dat`);
    const size = 1024 + Math.floor(rand() * 15 * 1024);
    await mkdir(join(root, dir), { recursive: true });
    await writeFile(join(root, rel), bytes(rand, size), { mode: MODES[i % MODES.length] });
    const [uid, gid] = OWNERS[i % OWNERS.length];
    await chown(join(root, rel), uid, gid);
    list.push(rel);
    total += size;
  }
  const extra = Math.max(1, Math.floor(files / 20));
  for (let i = 0; i < extra; i++) {
    const target = list[Math.floor(rand() * list.length)];
    const from = list[Math.floor(rand() * list.length)];
    const linkPath = join(root, dirname(from), `symlink-${i}`);
    await symlink(relative(dirname(linkPath), join(root, target)), linkPath);
    await link(join(root, target), join(root, dirname(from), `hardlink-${i}`));
  }
  // Directory owners too: rsync -a keeps them as well.
  for (const [i, d] of (await listDirs(root)).entries()) {
    const [uid, gid] = OWNERS[i % OWNERS.length];
    await chown(d, uid, gid);
  }
  return { files: list, bytes: total, symlinks: extra, hardlinks: extra };
}

async function listDirs(root) {
  const out = [];
  const walk = async (d) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) {
        out.push(join(d, e.name));
        await walk(join(d, e.name));
      }
    }
  };
  await walk(root);
  return out;
}

/** Rewrites `share` of the files with new content (sizes change too); returns how many. */
export async function changeSome(root, list, share, seed = 7) {
  const rand = rng(seed);
  const n = Math.max(1, Math.round(list.length * share));
  const step = list.length / n;
  const when = new Date(Date.now() + 60_000);
  for (let k = 0; k < n; k++) {
    const p = join(root, list[Math.floor(k * step)]);
    const st = await lstat(p);
    await writeFile(p, bytes(rand, 1024 + Math.floor(rand() * 15 * 1024)));
    await chown(p, st.uid, st.gid);
    await utimes(p, when, when);
  }
  return n;
}

/**
 * How many regular files under `dest` carry the same uid and gid as their twin under `src`; at most
 * `limit` of them, spread over the list (each lstat on plain sshfs through the relay is a round trip).
 */
export async function ownersKept(src, dest, list, limit = list.length) {
  let kept = 0;
  let checked = 0;
  const step = Math.max(1, list.length / limit);
  for (let i = 0; i < list.length; i += step) {
    const rel = list[Math.floor(i)];
    const [a, b] = await Promise.all([lstat(join(src, rel)), lstat(join(dest, rel)).catch(() => undefined)]);
    if (!b) continue;
    checked++;
    if (a.uid === b.uid && a.gid === b.gid) kept++;
  }
  return { kept, checked };
}

/**
 * Adds `count` larger files (random content, sizes spread around totalMiB/count, owners and modes
 * varied) under `root`/big; returns their list (relative) and their bytes.
 */
export async function addLargeFiles(root, count, totalMiB, seed = 99) {
  const rand = rng(seed);
  const list = [];
  let total = 0;
  if (count <= 0 || totalMiB <= 0) return { files: list, bytes: 0 };
  const mean = (totalMiB * 1024 * 1024) / count;
  await mkdir(join(root, 'big'), { recursive: true });
  for (let i = 0; i < count; i++) {
    // Between half and one and a half times the mean, the last one making up the total.
    const size = i === count - 1 ? Math.max(4096, totalMiB * 1024 * 1024 - total) : Math.floor(mean * (0.5 + rand()));
    const rel = join('big', `large-${i}.bin`);
    await writeFile(join(root, rel), bytes(rand, size), { mode: MODES[(i + 1) % MODES.length] });
    const [uid, gid] = OWNERS[(i + 2) % OWNERS.length];
    await chown(join(root, rel), uid, gid);
    list.push(rel);
    total += size;
  }
  return { files: list, bytes: total };
}
