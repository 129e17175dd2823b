import { readdir, readFile, readlink } from 'node:fs/promises';

export interface Holder {
  pid: number;
  command: string;
  /** What ties it to the mount: cwd, root, exe or an open file. */
  via: string;
}

const inside = (path: string, mount: string): boolean => path === mount || path.startsWith(mount + '/');

/** Processes that keep a mount busy (like `fuser -vm`), read from /proc. */
export async function holdersOf(mount: string, self = process.pid): Promise<Holder[]> {
  const found: Holder[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === self) continue;
    const base = `/proc/${entry}`;
    const check = async (link: string): Promise<boolean> => inside(await readlink(`${base}/${link}`).catch(() => ''), mount);
    let via: string | undefined;
    for (const link of ['cwd', 'root', 'exe']) {
      if (await check(link)) {
        via = link;
        break;
      }
    }
    if (!via) {
      const fds = await readdir(`${base}/fd`).catch(() => [] as string[]);
      for (const fd of fds) {
        if (await check(`fd/${fd}`)) {
          via = 'open file';
          break;
        }
      }
    }
    if (via) {
      const cmd = (await readFile(`${base}/cmdline`, 'utf8').catch(() => '')).split('\0').filter(Boolean).join(' ');
      found.push({ pid: Number(entry), command: cmd || '?', via });
    }
  }
  return found;
}

/**
 * What keeps a block device (a loop device) in use after it was unmounted here: processes with it
 * open, and mount namespaces (a service's private /tmp, a container) where it is still mounted —
 * the umount in ours leaves those.
 */
export async function deviceUsers(device: string, self = process.pid): Promise<Holder[]> {
  const found = await holdersOf(device, self);
  const ours = await readlink('/proc/self/ns/mnt').catch(() => '');
  const seen = new Set([ours]);
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const ns = await readlink(`/proc/${entry}/ns/mnt`).catch(() => '');
    if (!ns || seen.has(ns)) continue;
    seen.add(ns);
    const lines = (await readFile(`/proc/${entry}/mountinfo`, 'utf8').catch(() => '')).split('\n');
    // mountinfo: ID PARENT MAJ:MIN ROOT TARGET OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
    const at = lines.map((l) => l.split(' - ')).filter(([, tail]) => tail?.split(' ')[1] === device).map(([head]) => head!.split(' ')[4]);
    if (at.length) {
      const cmd = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0').filter(Boolean).join(' ');
      found.push({ pid: Number(entry), command: cmd || '?', via: `mounted at ${at.join(', ')} in its own mount namespace` });
    }
  }
  return found;
}

/** PIDs of sshfs processes serving the mount at `target`. */
export async function sshfsPidsFor(target: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if ((argv[0] ?? '').split('/').pop() === 'sshfs' && argv.includes(target)) pids.push(Number(entry));
  }
  return pids;
}

/** Processes holding a mount, one line each, for error messages. */
export function listHolders(holders: readonly Holder[]): string {
  return holders.length ? holders.map((h) => `  pid ${h.pid} (${h.via}): ${h.command}`).join('\n') : '  (none found in /proc: a kernel user such as a bind mount or NFS export)';
}
