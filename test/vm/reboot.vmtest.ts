// The "reboot" on real dm-crypt: two boots of the test VM with the same share, run by
// test/vm/reboot-guest.mjs (the built bin/hbs: `npm run build` first). Everything that must survive
// lives in the share — the stand-in box's home, host key and account (startBox({ stateDir })),
// config, keys, fstab, crypttab; the guest's own root is a tmpfs overlay that is gone at power-off.
// Boot 1: `hbs init --encrypt --luks-unattended` (crypttab in the share) and a plain init, files
// with owners, the plain stack unmounted by hbs, the encrypted one left mounted (power-off without
// umount). Boot 2: the box back from its state; (a) `hbs mount` brings both back with no key given
// (the unattended key), data and owners intact, status healthy, umount; (b) what boot does:
// `mount -a -T fstab`, the crypttab line through /lib/systemd/systemd-cryptsetup attach (the argv
// systemd-cryptsetup-generator writes into ExecStart=), the filesystem's fstab line; data intact,
// findmnt --verify clean; `hbs umount` takes it down; no mounts, loops or mappers left.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { describeVmResult, runInVm } from './run-in-vm.js';
import { fields, useVmShare } from './scenario.js';

const SYSTEMD_CRYPTSETUP = '/lib/systemd/systemd-cryptsetup';

const json = (f: Record<string, string>, k: string): unknown => {
  if (f[k] === undefined) throw new Error(`the guest did not report ${k}`);
  return JSON.parse(f[k]);
};

describe('a reboot: encrypted (--luks-unattended) and plain stacks come back (VM)', () => {
  beforeAll(() => {
    if (!existsSync(SYSTEMD_CRYPTSETUP)) throw new Error(`${SYSTEMD_CRYPTSETUP} is missing: apt-get install systemd-cryptsetup (Debian 13+; part of systemd on 12)`);
  });
  // 0755: the box account must reach its home inside.
  const share = useVmShare('hbs-vm-reboot-', 0o755);

  const state = (): string => join(share(), 'state');
  let boot1: Record<string, string> = {};

  it('boot 1: init --encrypt --luks-unattended writes the crypttab line; power-off with the encrypted stack still mounted', async () => {
    const r = await runInVm(['node', 'test/vm/reboot-guest.mjs', 'boot1', state()], { share: share(), timeoutMs: 600_000 });
    console.log(`[vm] reboot test, boot 1: ${r.totalMs} ms`);
    expect(r.exitCode, describeVmResult(r)).toBe(0);
    const f = fields(r.stdout);
    boot1 = f;
    expect(f.done).toBe('true');
    const image = join(state(), 'enc/box/enc.img');
    const key = join(state(), 'enc/etc/hbs-enc.key');
    const crypttab = join(state(), 'crypttab');
    expect(json(f, 'config.enc.encryption')).toMatchObject({ mapperName: 'hbs-enc', unattendedKeyFile: key, crypttab });
    expect(json(f, 'crypttab')).toEqual([
      '# a line hbs must leave alone',
      'other /dev/disk/by-uuid/0000 none luks,noauto',
      `# BEGIN hbs managed block (${join(state(), 'enc/etc/config.json')}): edit with hbs, not by hand`,
      `hbs-enc ${image} ${key} luks,_netdev,nofail,headless=true`,
      `# END hbs managed block (${join(state(), 'enc/etc/config.json')})`,
      '',
    ]);
    expect(f['crypttab.mode']).toBe('600'); // the existing file's mode is kept
    expect(f['key.mode']).toBe('400');
    const summary = (json(f, 'init.enc.summary') as string[]).join('\n');
    expect(summary).toMatch(/What it protects: the data on the box/);
    expect(summary).toMatch(/does NOT protect against: anyone with root on this machine/);
    // Without noauto: boot mounts it once the mapping is there.
    expect((json(f, 'fstab.lines') as string[]).find((l) => l.startsWith('/dev/mapper/hbs-enc '))).toMatch(/ ext4 _netdev,nofail,noatime,noinit_itable,x-systemd\.requires-mounts-for=/);
    expect(f['boot1.encMounted']).toBe('true');
    expect(f['boot1.plainMounted']).toBe('false');
  }, 700_000);

  it('boot 2: hbs mount brings both back with the unattended key; then boot\'s own way (fstab, crypttab via systemd-cryptsetup) does too', async () => {
    expect(boot1.done, 'boot 1 must have passed').toBe('true');
    const r = await runInVm(['node', 'test/vm/reboot-guest.mjs', 'boot2', state()], { share: share(), timeoutMs: 600_000 });
    console.log(`[vm] reboot test, boot 2: ${r.totalMs} ms`);
    expect(r.exitCode, describeVmResult(r)).toBe(0);
    const f = fields(r.stdout);
    expect(f.done).toBe('true');
    // The same box (account, port, host key) from the saved state, and nothing left from boot 1.
    expect(f['boot2.box']).toBe(boot1['boot1.box']);
    expect(json(f, 'boot2.start')).toEqual({ mounts: [], mappers: [], loops: '' });
    const enc = { text: 'encrypted, survives a crash\n', owner: '1234:5678' };
    const plain = { text: 'plain, unmounted cleanly\n', owner: '1234:5678' };

    // (a) hbs mount, no key flag and no terminal: only the unattended key can have opened it.
    expect(f['a.mount.enc.exit']).toBe('0');
    expect(json(f, 'a.data.enc')).toEqual(enc);
    expect(f['a.status.enc.exit']).toBe('0');
    expect(json(f, 'a.status.enc.encryption')).toMatchObject({ state: 'open', crypttab: { path: join(state(), 'crypttab'), present: true } });
    expect(json(f, 'a.data.plain')).toEqual(plain);
    expect(f['a.status.plain.exit']).toBe('0');
    expect(f['a.umount.enc.exit']).toBe('0');
    expect(f['a.umount.plain.exit']).toBe('0');
    expect(json(f, 'a.after')).toEqual({ mappers: [], loops: '', mounts: [] });

    // (b) boot: fstab's first pass mounts the boxes and the plain image; the mapper line waits (nofail).
    const s = state();
    expect(json(f, 'b.mountAll1')).toEqual({ exit: 0, stderr: '', mounted: [`${s}/enc/box`, `${s}/plain/box`, `${s}/plain/data`] });
    const attach = json(f, 'b.attach') as { exit: number; stderr: string };
    expect(attach.exit, attach.stderr).toBe(0);
    // Every option is one systemd-cryptsetup knows (it logs "Encountered unknown ... option" otherwise).
    expect(attach.stderr).not.toMatch(/unknown/i);
    const after = json(f, 'b.afterAttach') as { mappers: string[]; loops: string };
    expect(after.mappers).toEqual(['hbs-enc']);
    expect(after.loops).toContain(`(${s}/enc/box/enc.img)`); // libcryptsetup attached the file itself
    expect(json(f, 'b.mountPass2')).toEqual({ mounts: [{ target: `${s}/enc/data`, exit: 0, stderr: '' }], mounted: [`${s}/enc/box`, `${s}/enc/data`, `${s}/plain/box`, `${s}/plain/data`] });
    expect(f['b.source.enc']).toBe('/dev/mapper/hbs-enc');
    expect(json(f, 'b.data.enc')).toEqual(enc);
    expect(json(f, 'b.data.plain')).toEqual(plain);
    expect(json(f, 'b.verify')).toMatchObject({ exit: 0, parseErrors: 0, errors: 0 });
    // hbs sees the layers boot brought up as its own (no lock: boot does not take one).
    expect(json(f, 'b.status.enc')).toMatchObject({ box: 'up', fs: 'up', encryption: 'open' });
    expect(json(f, 'b.status.plain')).toMatchObject({ box: 'up', fs: 'up' });
    expect(json(f, 'b.umount.enc')).toMatchObject({ exit: 0 });
    expect(json(f, 'b.umount.plain')).toMatchObject({ exit: 0 });
    expect(json(f, 'leftover')).toEqual({ mappers: [], loops: '', mounts: [] });
  }, 700_000);
});
