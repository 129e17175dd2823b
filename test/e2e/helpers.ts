import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { execa, type Result } from 'execa';

export const ROOT = resolve(import.meta.dirname, '../..');
export const HBS = join(ROOT, 'bin', 'hbs');

/** Runs the built CLI as a person would (no TTY). */
export async function hbs(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<Result> {
  return execa(HBS, args, {
    input: opts.input ?? '',
    reject: false,
    env: { NO_COLOR: '1', ...opts.env },
    extendEnv: true,
    timeout: 180_000,
  });
}

async function mounted(path: string): Promise<boolean> {
  return (await execa('findmnt', ['--mountpoint', path], { reject: false })).exitCode === 0;
}

/**
 * Takes down whatever a test left mounted or attached under these paths, top to bottom. Safe to
 * call when nothing is there.
 */
export async function teardown(mountPoints: string[], boxMounts: string[]): Promise<void> {
  for (const mp of mountPoints) {
    for (let i = 0; i < 3 && (await mounted(mp)); i++) {
      if ((await execa('umount', [mp], { reject: false })).exitCode !== 0) await execa('umount', ['-l', mp], { reject: false });
    }
  }
  const loops = await execa('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'], { reject: false });
  if (loops.exitCode === 0 && loops.stdout.trim()) {
    const devs = (JSON.parse(loops.stdout) as { loopdevices: { name: string; 'back-file': string | null }[] }).loopdevices;
    for (const d of devs) {
      if (boxMounts.some((b) => (d['back-file'] ?? '').startsWith(b + '/'))) await execa('losetup', ['-d', d.name], { reject: false });
    }
  }
  for (const bm of boxMounts) {
    for (let i = 0; i < 3 && (await mounted(bm)); i++) {
      if ((await execa('fusermount3', ['-u', bm], { reject: false })).exitCode !== 0) await execa('umount', ['-l', bm], { reject: false });
    }
  }
}

/** Watches every process's argv while `work` runs; returns the argvs that contained `needle`. */
export async function watchArgv<T>(needle: string, work: () => Promise<T>): Promise<{ result: T; leaks: string[] }> {
  const leaks = new Set<string>();
  let running = true;
  const sampler = (async () => {
    while (running) {
      for (const pid of await readdir('/proc').catch(() => [] as string[])) {
        if (!/^\d+$/.test(pid)) continue;
        const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (cmd.includes(needle)) leaks.add(cmd.split('\0').join(' '));
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  try {
    const result = await work();
    return { result, leaks: [...leaks] };
  } finally {
    running = false;
    await sampler;
  }
}
