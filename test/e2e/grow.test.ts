/**
 * End to end: the built `bin/hbs grow` against a real sshd on 127.0.0.1 as the box, real sshfs, a
 * real loop device and real e2fsprogs. On machines without CAP_SYS_RESOURCE (these build machines)
 * the kernel refuses online resize, so the EPERM fallback to the offline path runs here. Needs root;
 * says why it skips elsewhere.
 */
import { createHash } from 'node:crypto';
import { chmod, chown, link, mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capSysResourceFromStatus } from '../../src/lib/capability.js';
import { e2eUnavailable, startBox, type StandInBox } from '../support/stand-in-box.js';
import { hbs, loopDioAt, teardown } from './helpers.js';

const skip = await e2eUnavailable();
if (skip) console.warn(`skipping end-to-end grow tests: ${skip}`);

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
/** Whether this machine lets the kernel grow a mounted ext4 (it does not on the build machines). */
const online = capSysResourceFromStatus(await readFile('/proc/self/status', 'utf8')) !== false;

const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/**
 * Checksums of the first and the last MiB, and the size: what a refused grow must leave alone.
 * `sync` first: a mounted ext4 writes its pending metadata back whenever it likes (through the
 * buffered loop device, when the page cache writes it back), and that must not count as a change made by hbs.
 */
async function fingerprint(path: string): Promise<{ size: number; first: string; last: string }> {
  await execa('sync');
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const buf = Buffer.alloc(MiB);
    await fh.read(buf, 0, MiB, 0);
    const first = sha(buf);
    await fh.read(buf, 0, MiB, size - MiB);
    return { size, first, last: sha(buf) };
  } finally {
    await fh.close();
  }
}

async function blockCount(device: string): Promise<number> {
  const { stdout } = await execa('dumpe2fs', ['-h', device], { stderr: 'ignore' });
  return Number(/^Block count:\s+(\d+)/m.exec(stdout)?.[1]);
}

const allocated = async (path: string): Promise<number> => (await stat(path)).blocks * 512;

describe.skipIf(skip !== undefined)('hbs grow against a real local SSH server', () => {
  let box: StandInBox;
  let t: string;
  let p: { config: string; key: string; boxMount: string; mountPoint: string };
  /** The image as the box sees it (its real allocation is visible here, not through sshfs). */
  let onBox: string;
  const files: Record<string, { uid: number; gid: number; mode: number; sum: string }> = {};
  const grow = (...args: string[]) => hbs(['grow', '--config', p.config, ...args]);

  async function mountedDevice(): Promise<string> {
    const { stdout } = await execa('findmnt', ['--noheadings', '--output', 'SOURCE,FSTYPE', '--mountpoint', p.mountPoint]);
    const [source, fstype] = stdout.trim().split(/\s+/);
    expect(fstype).toBe('ext4');
    return source!;
  }

  async function expectDataIntact(): Promise<void> {
    for (const [name, want] of Object.entries(files)) {
      const path = join(p.mountPoint, name);
      const st = await stat(path);
      expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, sum: sha(await readFile(path)) }, name).toEqual(want);
    }
    expect((await stat(join(p.mountPoint, 'data', 'big.bin'))).ino).toBe((await stat(join(p.mountPoint, 'data', 'big-link.bin'))).ino);
  }

  /**
   * Runs `work` with the mounted filesystem frozen, so that the kernel's own writes (journal
   * commits, lazy inode-table init) cannot change the image meanwhile: any change is hbs's.
   */
  async function frozen<T>(work: () => Promise<T>): Promise<T> {
    await execa('fsfreeze', ['--freeze', p.mountPoint]);
    try {
      return await work();
    } finally {
      await execa('fsfreeze', ['--unfreeze', p.mountPoint]);
    }
  }

  beforeAll(async () => {
    box = await startBox();
    t = await mkdtemp(join(tmpdir(), 'hbs grow e2e-'));
    p = { config: join(t, 'etc', 'config.json'), key: join(t, 'key'), boxMount: join(t, 'box'), mountPoint: join(t, 'mnt point') };
    onBox = join(box.home, 'filesystem.img');
    const init = await hbs(
      ['init', '--yes', '--user', box.user, '--host', box.host, '--port', String(box.port), '--size', '1G', '--host-key-fingerprint', box.hostKeyFingerprint,
        '--password-stdin', '--box-mount', p.boxMount, '--mount-point', p.mountPoint, '--ssh-key', p.key, '--no-fstab', '--config', p.config],
      { input: box.password + '\n' },
    );
    expect(init.stderr).toBe('');
    expect(init.exitCode).toBe(0);
    // Files with several owners and modes, a hard link, and 24 MiB of random data.
    await mkdir(join(p.mountPoint, 'data'));
    const put = async (name: string, data: Buffer, uid: number, gid: number, mode: number): Promise<void> => {
      const path = join(p.mountPoint, name);
      await writeFile(path, data);
      await chown(path, uid, gid);
      await chmod(path, mode);
      files[name] = { uid, gid, mode, sum: sha(data) };
    };
    await put('data/big.bin', randomBytes(24 * MiB), 1001, 1001, 0o640);
    await link(join(p.mountPoint, 'data', 'big.bin'), join(p.mountPoint, 'data', 'big-link.bin'));
    await put('alice.txt', Buffer.from('alice\n'), 4242, 4343, 0o600);
    await put('setgid-dir-file', Buffer.from('www\n'), 33, 33, 0o2755);
    await execa('sync');
  });

  afterAll(async () => {
    if (p) await teardown([p.mountPoint], [p.boxMount]);
    await box?.stop();
    if (t) await rm(t, { recursive: true, force: true });
  });

  it.skipIf(online)('without a terminal and without --offline, stops before any change and says to pass --offline', async () => {
    const before = await fingerprint(onBox);
    const r = await grow('--size', '3G');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('CAP_SYS_RESOURCE');
    expect(r.stderr).toMatch(/^hint: re-run with --offline/m);
    expect(await fingerprint(onBox)).toEqual(before);
  });

  it('grows 1G → 3G while mounted (the EPERM fallback: unmount, e2fsck, resize2fs, mount) with data and owners intact', async () => {
    const allocBefore = await allocated(onBox);
    const started = Date.now();
    const r = await grow('--size', '3G', '--yes', '--offline');
    const took = Date.now() - started;
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('image file  1 GiB → 3 GiB');
    expect(r.stdout).toContain('ext4        1 GiB → 3 GiB (786432 blocks of 4096 bytes)');
    if (!online) {
      expect(r.stdout).toContain('refused to grow the mounted filesystem online: resize2fs: Permission denied to resize filesystem');
      expect(r.stdout).toContain('e2fsck pass 5 of 5');
      expect(r.stdout).toMatch(/unmounted for \d+\.\d s/);
    }
    const allocAfter = await allocated(onBox);
    console.info(`grow 1G→3G: ${took} ms; ${r.stdout.match(/unmounted for [\d.]+ s/)?.[0] ?? 'online'}; allocated on the box ${allocBefore} → ${allocAfter} bytes`);

    expect((await stat(onBox)).size).toBe(3 * GiB);
    expect(allocAfter - allocBefore).toBeLessThan(4 * MiB); // the grow itself writes metadata only
    const dev = await mountedDevice();
    expect(await blockCount(dev)).toBe((3 * GiB) / 4096);
    const df = await execa('df', ['--block-size=1', '--output=size', p.mountPoint]);
    const dfSize = Number(df.stdout.trim().split('\n')[1]);
    expect(dfSize).toBeGreaterThan(2.9 * GiB);
    expect(dfSize).toBeLessThanOrEqual(3 * GiB);
    await expectDataIntact();
    const cfg = JSON.parse(await readFile(p.config, 'utf8')) as { image: { sizeBytes: number } };
    expect(cfg.image.sizeBytes).toBe(3 * GiB);
    // One loop device on the image, none left over from before the unmount.
    const loops = await execa('losetup', ['--associated', join(p.boxMount, 'filesystem.img')]);
    expect(loops.stdout.trim().split('\n')).toHaveLength(1);
    expect(await loopDioAt(p.mountPoint)).toBe('0'); // mounted again, buffered
    // The new block groups' inode tables lie in the file's hole (zeros): with noinit_itable the
    // kernel does not write them again across the network (without it: ~9 MiB a second here).
    const opts = (await execa('findmnt', ['-n', '-o', 'OPTIONS', '--mountpoint', p.mountPoint])).stdout.split(',');
    expect(opts).toContain('noinit_itable');
    await new Promise((r) => setTimeout(r, 5000));
    expect((await allocated(onBox)) - allocAfter).toBeLessThan(MiB);
  });

  it('leaves a filesystem that e2fsck -fn finds clean', async () => {
    await execa('umount', [p.mountPoint]);
    const fsck = await execa('e2fsck', ['-fn', join(p.boxMount, 'filesystem.img')], { reject: false });
    expect(fsck.stdout + fsck.stderr).not.toMatch(/ERROR|Fix\?|inconsisten/i);
    expect(fsck.exitCode).toBe(0);
    await execa('mount', ['-t', 'ext4', '-o', 'loop,noatime', join(p.boxMount, 'filesystem.img'), p.mountPoint]);
    await expectDataIntact();
  });

  it('refuses a smaller or equal size with exit 2 and the current size; the image is not touched', async () => {
    await frozen(async () => {
      const before = await fingerprint(onBox);
      for (const size of ['2G', '3G', '1073741824']) {
        const r = await grow('--size', size, '--yes', '--offline');
        expect(r.exitCode, size).toBe(2);
        expect(r.stderr, size).toContain('3 GiB (3221225472 bytes)');
        expect(r.stderr.split('\n')[0], size).toMatch(/^hbs: --size /);
      }
      const shrink = await grow('--size', '-1G', '--yes');
      expect(shrink.exitCode).toBe(2);
      expect(shrink.stderr).toContain('never shrinks');
      expect(await fingerprint(onBox)).toEqual(before);
    });
    expect(await blockCount(await mountedDevice())).toBe((3 * GiB) / 4096);
  });

  it('refuses a size the box cannot hold, with the figures', async () => {
    await frozen(async () => {
      const before = await fingerprint(onBox);
      const r = await grow('--size', '100T', '--yes', '--offline');
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(/does not fit the box: .* free of /);
      expect(r.stderr).toContain('--force');
      expect(await fingerprint(onBox)).toEqual(before);
    });
  });

  it('--dry-run prints the plan for the path that applies and changes nothing', async () => {
    const config = await readFile(p.config, 'utf8');
    const { r, before, after } = await frozen(async () => {
      const before = await fingerprint(onBox);
      const r = await grow('--size', '+1G', '--dry-run', '--yes');
      return { r, before, after: await fingerprint(onBox) };
    });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain(`! truncate '--size=>${4 * GiB}'`);
    expect(r.stdout).toMatch(/! losetup --set-capacity \/dev\/loop\d+/);
    expect(r.stdout).toMatch(/! resize2fs \/dev\/loop\d+/);
    if (!online) {
      expect(r.stdout).toContain(`! umount '${p.mountPoint}'`);
      expect(r.stdout).toContain('! e2fsck -f -p -C 1');
      expect(r.stdout).toContain('a real run needs it: --offline');
    }
    expect(r.stdout).toContain('Dry-run finished: nothing was changed');
    expect(after).toEqual(before);
    expect(await readFile(p.config, 'utf8')).toBe(config);
  });

  it('finishes an interrupted grow: the file extended by hand, the filesystem not', async () => {
    // What a run stopped right after `truncate` leaves behind; done through the box mount, as on a server.
    await execa('truncate', ['--size=4G', join(p.boxMount, 'filesystem.img')]);
    expect(await blockCount(await mountedDevice())).toBe((3 * GiB) / 4096);
    const r = await grow('--size', '+1G', '--yes', '--offline');
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^Resuming: the image file is already 4 GiB, but ext4 inside spans only 3 GiB/m);
    expect(r.stdout).toMatch(/^• Extend the image file — .* is already 4 GiB/m);
    expect(r.stdout).toContain('ext4        3 GiB → 4 GiB');
    expect(await blockCount(await mountedDevice())).toBe((4 * GiB) / 4096);
    await expectDataIntact();
    const cfg = JSON.parse(await readFile(p.config, 'utf8')) as { image: { sizeBytes: number } };
    expect(cfg.image.sizeBytes).toBe(4 * GiB);
    // Done now: the same request is a refusal, not another grow.
    const again = await grow('--size', '4G', '--yes', '--offline');
    expect(again.exitCode).toBe(2);
  });
});
