import { run } from './run.js';

async function mounted(path: string): Promise<boolean> {
  return (await run('findmnt', ['--mountpoint', path], { reject: false })).exitCode === 0;
}

/**
 * Takes down whatever a test left mounted or attached under these paths, top to bottom. Safe to
 * call when nothing is there.
 */
export async function teardown(mountPoints: string[], boxMounts: string[]): Promise<void> {
  for (const mp of mountPoints) {
    for (let i = 0; i < 3 && (await mounted(mp)); i++) {
      if ((await run('umount', [mp], { reject: false })).exitCode !== 0) await run('umount', ['-l', mp], { reject: false });
    }
  }
  const loops = await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'], { reject: false });
  if (loops.exitCode === 0 && loops.stdout.trim()) {
    const devs = (JSON.parse(loops.stdout) as { loopdevices: { name: string; 'back-file': string | null }[] }).loopdevices;
    for (const d of devs) {
      if (boxMounts.some((b) => (d['back-file'] ?? '').startsWith(b + '/'))) await run('losetup', ['-d', d.name], { reject: false });
    }
  }
  for (const bm of boxMounts) {
    for (let i = 0; i < 3 && (await mounted(bm)); i++) {
      if ((await run('fusermount3', ['-u', bm], { reject: false })).exitCode !== 0) await run('umount', ['-l', bm], { reject: false });
    }
  }
}
