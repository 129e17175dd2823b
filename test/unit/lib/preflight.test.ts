import type * as fsPromises from 'node:fs/promises';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { requireReady } from '../../../src/commands/shared.js';
import { EXIT, PreflightError } from '../../../src/core/errors.js';
import { describeMissing, packagesFor, preflight, TOOLS, which, type PreflightCommand, type PreflightDeps } from '../../../src/lib/preflight.js';

/** The programs this "machine" has: the only paths `access(X_OK)` accepts (whatever the real machine has). */
const machine = vi.hoisted(() => ({ executables: new Set<string>() }));
// Hoisted above the imports: preflight's `access` is this one.
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof fsPromises>();
  return {
    ...real,
    access: (path: string) => (machine.executables.has(String(path)) ? Promise.resolve() : Promise.reject(Object.assign(new Error(`ENOENT: ${String(path)}`), { code: 'ENOENT' }))),
  };
});

const BIN = '/opt/test/bin';
const COMMANDS: PreflightCommand[] = ['init', 'mount', 'umount', 'grow'];

function deps(o: { uid?: number; devices?: string[] } = {}): PreflightDeps {
  const devices = new Set(o.devices ?? ['/dev/fuse', '/dev/loop-control', '/sys/module/loop']);
  return { uid: () => o.uid ?? 0, pathEnv: `${BIN}:/also/empty`, exists: (p) => Promise.resolve(devices.has(p)) };
}
const install = (...tools: string[]): void => {
  for (const t of tools) machine.executables.add(`${BIN}/${t}`);
};
const toolsOf = (c: PreflightCommand): string[] => TOOLS[c].map((t) => t.tool);

beforeEach(() => {
  machine.executables.clear();
});

describe('the table', () => {
  it('names what each command runs', () => {
    const SSH = ['sshfs', 'fusermount3', 'ssh', 'sftp'];
    const MOUNTS = ['losetup', 'mount', 'umount', 'findmnt', 'blkid', 'stat', 'dd'];
    const EXT4 = ['e2fsck', 'dumpe2fs', 'e2undo'];
    expect(toolsOf('init')).toEqual([...SSH, 'ssh-keygen', 'ssh-keyscan', ...MOUNTS, ...EXT4, 'mkfs.ext4', 'mke2fs', 'resize2fs', 'truncate']);
    expect(toolsOf('mount')).toEqual([...SSH, ...MOUNTS, ...EXT4]);
    expect(toolsOf('umount')).toEqual(['fusermount3', ...MOUNTS, 'sync']);
    expect(toolsOf('grow')).toEqual([...MOUNTS, ...EXT4, 'resize2fs', 'blockdev', 'truncate']);
    expect(TOOLS.grow.find((t) => t.tool === 'blockdev')?.pkg).toBe('util-linux');
    expect(TOOLS.mount.find((t) => t.tool === 'fusermount3')?.pkg).toBe('fuse3');
  });
});

describe('preflight', () => {
  it.each(COMMANDS)('%s: ready when root has every program it runs and the devices are there', async (c) => {
    install(...toolsOf(c));
    expect(await preflight(c, { encrypted: false }, deps())).toEqual([]);
  });

  it.each(COMMANDS)('%s: each missing program is named with its Debian package', async (c) => {
    for (const { tool, pkg } of TOOLS[c]) {
      machine.executables.clear();
      install(...toolsOf(c).filter((t) => t !== tool));
      expect(await preflight(c, { encrypted: false }, deps())).toEqual([{ what: `the program ${tool}`, pkg }]);
    }
  });

  it.each(COMMANDS)('%s: an encrypted image needs cryptsetup too', async (c) => {
    install(...toolsOf(c));
    expect(await preflight(c, { encrypted: true }, deps())).toEqual([{ what: 'the program cryptsetup', pkg: 'cryptsetup-bin' }]);
    install('cryptsetup');
    expect(await preflight(c, { encrypted: true }, deps())).toEqual([]);
  });

  it.each(COMMANDS)('%s: needs root, and says how (a dry-run needs the same)', async (c) => {
    install(...toolsOf(c), 'cryptsetup');
    expect(await preflight(c, { encrypted: true }, deps({ uid: 1000 }))).toEqual([
      { what: "root privileges (the box mount, loop devices and mounts are root's)", fix: 'run hbs as root, e.g. with sudo' },
    ]);
  });

  it('init and mount need /dev/fuse and loop support; umount and grow do not', async () => {
    for (const c of COMMANDS) install(...toolsOf(c));
    const none = deps({ devices: [] });
    const want = [
      { what: 'the FUSE device /dev/fuse', fix: 'modprobe fuse' },
      { what: 'loop device support', fix: 'modprobe loop' },
    ];
    expect(await preflight('init', { encrypted: false }, none)).toEqual(want);
    expect(await preflight('mount', { encrypted: false }, none)).toEqual(want);
    expect(await preflight('umount', { encrypted: false }, none)).toEqual([]);
    expect(await preflight('grow', { encrypted: false }, none)).toEqual([]);
    // Either sign of the loop driver will do.
    expect(await preflight('mount', { encrypted: false }, deps({ devices: ['/dev/fuse', '/sys/module/loop'] }))).toEqual([]);
    expect(await preflight('mount', { encrypted: false }, deps({ devices: ['/dev/fuse', '/dev/loop-control'] }))).toEqual([]);
  });

  it('lists everything missing at once, each program once', async () => {
    const missing = await preflight('init', { encrypted: true }, deps({ uid: 1000, devices: [] }));
    expect(missing[0]?.what).toMatch(/^root privileges/);
    const programs = missing.filter((m) => m.what.startsWith('the program ')).map((m) => m.what.slice('the program '.length));
    expect(programs).toEqual([...toolsOf('init'), 'cryptsetup']);
    expect(missing.slice(-2).map((m) => m.what)).toEqual(['the FUSE device /dev/fuse', 'loop device support']);
  });
});

describe('which', () => {
  it('looks on PATH first, then in the sbin directories root has even when PATH lacks them', async () => {
    install('losetup');
    expect(await which('losetup', `${BIN}`)).toBe(`${BIN}/losetup`);
    machine.executables.add('/usr/sbin/cryptsetup');
    expect(await which('cryptsetup', '/usr/bin:/bin')).toBe('/usr/sbin/cryptsetup');
    machine.executables.add('/sbin/e2fsck');
    expect(await which('e2fsck', '')).toBe('/sbin/e2fsck');
    expect(await which('nothing-like-it', `${BIN}::/x`)).toBeUndefined();
  });
});

describe('describing what is missing', () => {
  it('packagesFor: each package once, in order; describeMissing: one line each, package and fix', () => {
    const missing = [
      { what: 'root privileges', fix: 'run hbs as root' },
      { what: 'the program ssh', pkg: 'openssh-client' },
      { what: 'the program sftp', pkg: 'openssh-client' },
      { what: 'the program sshfs', pkg: 'sshfs' },
    ];
    expect(packagesFor(missing)).toEqual(['openssh-client', 'sshfs']);
    expect(describeMissing(missing)).toBe(
      '  - root privileges — run hbs as root\n  - the program ssh (Debian package: openssh-client)\n  - the program sftp (Debian package: openssh-client)\n  - the program sshfs (Debian package: sshfs)',
    );
  });

  it('a command stops with exit 3, naming what is missing and the apt-get line that brings it', async () => {
    install(...toolsOf('grow').filter((t) => t !== 'blockdev'));
    const err = (await requireReady('grow', true, { reporter: { stepStart() {}, stepDone() {}, stepSkipped() {}, stepFailed() {}, line() {}, info() {}, warn() {} }, preflight: deps() }).catch((e: unknown) => e)) as PreflightError;
    expect(err).toBeInstanceOf(PreflightError);
    expect(err.exitCode).toBe(EXIT.preflight);
    expect(err.message).toBe(
      'this machine is not ready for hbs grow:\n  - the program blockdev (Debian package: util-linux)\n  - the program cryptsetup (Debian package: cryptsetup-bin)',
    );
    expect(err.hint).toBe('apt-get install util-linux cryptsetup-bin');
    expect(err.missing).toHaveLength(2);
  });
});
