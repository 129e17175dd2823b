#!/usr/bin/env node
// A restore with N readers, for bench/restore.mjs: copies a tree (regular files, symlinks,
// directories; owners, modes, mtimes) from SRC to DEST with N copies in flight at once.
//
//   node pcopy.mjs SRC DEST N [LIST]
//
// Without LIST the readers walk the tree themselves (directories in readdir order, listed ahead of
// the files) and copy what they find. With LIST (a file of NUL-separated paths relative
// to SRC, in the order to read them) the readers take the paths in that order; directories are
// made on the way. Hard links are copied as separate files. An entry that cannot be copied is
// counted and skipped, as `cp -a` does (exit 1 at the end). Run it with UV_THREADPOOL_SIZE ≥ N:
// each copy is one libuv thread blocked on the filesystem. Prints one JSON line: files, bytes.
import { chmod, chown, copyFile, lchown, lstat, lutimes, mkdir, opendir, readFile, readlink, symlink, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';

const [src, dest, nArg, listFile] = process.argv.slice(2);
const n = Math.max(1, Number(nArg) || 1);
if (!src || !dest) {
  process.stderr.write('usage: pcopy.mjs SRC DEST N [LIST]\n');
  process.exit(2);
}

let files = 0;
let bytes = 0;
// As `cp -a`: an entry that cannot be copied is reported and skipped, the rest goes on; exit 1 at the end.
let errors = 0;
let firstError;
const dirsMade = new Map();
const dirsSeen = [];

/** The directory `rel` (relative) in DEST, made once; its attributes are copied at the end. */
function ensureDir(rel) {
  if (rel === '.' || rel === '') return Promise.resolve();
  let p = dirsMade.get(rel);
  if (!p) {
    p = ensureDir(dirname(rel)).then(() => mkdir(join(dest, rel)).catch((e) => (e.code === 'EEXIST' ? undefined : Promise.reject(e))));
    dirsMade.set(rel, p);
    dirsSeen.push(rel);
  }
  return p;
}

async function copyOne(rel) {
  const from = join(src, rel);
  const to = join(dest, rel);
  const st = await lstat(from);
  if (st.isDirectory()) return ensureDir(rel);
  await ensureDir(dirname(rel));
  if (st.isSymbolicLink()) {
    await symlink(await readlink(from), to);
    await lchown(to, st.uid, st.gid);
    await lutimes(to, st.atime, st.mtime);
  } else if (st.isFile()) {
    await copyFile(from, to);
    await chown(to, st.uid, st.gid);
    await chmod(to, st.mode & 0o7777);
    await utimes(to, st.atime, st.mtime);
    bytes += st.size;
  } else {
    return;
  }
  files++;
}

/**
 * Work for the readers: directories to list (taken first, so the walk stays ahead) and entries to
 * copy. Without LIST the readers walk the tree themselves, N directories at a time.
 */
const dirs = [];
const queue = [];
let head = 0;
let busy = 0; // readers listing a directory: more work may still come
let listed = false;
const waiters = [];
const wake = () => {
  for (const w of waiters.splice(0)) w();
};
const push = (rel) => {
  queue.push(rel);
  wake();
};
async function take() {
  for (;;) {
    if (dirs.length) {
      // Counted as busy right here: another reader must not see empty queues and stop meanwhile.
      busy++;
      return { dir: dirs.shift() };
    }
    if (head < queue.length) return { rel: queue[head++] };
    if (listed && busy === 0) return undefined;
    await new Promise((r) => waiters.push(r));
  }
}

// opendir, not readdir: Node's readdir sorts the names (libuv's scandir); opendir keeps the
// directory's own order, as readdir(3) gives it to cp and tar.
async function list(rel) {
  for await (const e of await opendir(join(src, rel), { bufferSize: 256 })) {
    const r = rel ? join(rel, e.name) : e.name;
    if (e.isDirectory()) {
      dirs.push(r);
    } else {
      queue.push(r);
    }
  }
  wake();
}

async function reader() {
  for (let w = await take(); w !== undefined; w = await take()) {
    if (w.dir !== undefined) {
      try {
        await list(w.dir);
      } finally {
        busy--;
        wake();
      }
    } else {
      await copyOne(w.rel).catch((e) => {
        errors++;
        firstError ??= `${w.rel}: ${e.code ?? e.message}`;
      });
    }
  }
}

await mkdir(dest, { recursive: true });
if (listFile) {
  for (const rel of (await readFile(listFile, 'utf8')).split('\0')) if (rel) queue.push(rel);
} else {
  dirs.push('');
}
listed = true;
await Promise.all(Array.from({ length: n }, reader));
// Directory attributes last (copying into them changed their mtimes), deepest first.
for (const rel of dirsSeen.sort((a, b) => b.length - a.length)) {
  const st = await lstat(join(src, rel));
  await chown(join(dest, rel), st.uid, st.gid);
  await chmod(join(dest, rel), st.mode & 0o7777);
  await utimes(join(dest, rel), st.atime, st.mtime);
}
process.stdout.write(JSON.stringify({ files, bytes, errors, firstError }) + '\n');
if (errors) {
  process.stderr.write(`pcopy: ${errors} entries not copied, the first: ${firstError}\n`);
  process.exitCode = 1;
}
