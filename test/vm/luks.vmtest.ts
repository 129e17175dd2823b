// LUKS end to end on real dm-crypt, inside the test VM: the built bin/hbs against a stand-in box
// (sshd) started in the guest. `hbs init --encrypt` (100 GiB, passphrase on stdin, cheap PBKDF via
// --luks-pbkdf pbkdf2 --luks-iter-time 100) → files with owners → idle → status → umount → a wrong key refused
// (nothing opened, mounted or locked) → mount with the key → data and owners intact → umount →
// e2fsck -fn clean; bytes allocated on the box measured throughout. The same boot then plays a
// reinstalled server adopting that image: hbs's local state deleted except the passphrase →
// `hbs init --adopt` with the passphrase on stdin → same LUKS and ext4 UUIDs (no reformat), data
// intact → umount. (One boot for both: the adoption needs an encrypted image with files in it, which
// the first part leaves, and a boot, a box and a 100 GiB encrypted init are the expensive parts.)
// The scenario itself is test/vm/luks-guest.mjs. A second boot: reboot.vmtest.ts.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeVmResult, runInVm } from './run-in-vm.js';
import { fields, useVmShare } from './scenario.js';

const MiB = 1024 * 1024;
// Idle time with the filesystem mounted (the README's "a minute" figures: HBS_VM_IDLE_MS=60000).
const IDLE_MS = process.env.HBS_VM_IDLE_MS ?? '15000';

describe('hbs --encrypt on real dm-crypt (VM)', () => {
  const share = useVmShare('hbs-vm-luks-');
  let f: Record<string, string> | undefined;

  it('init → files → idle → umount → wrong key refused → mount → data intact → e2fsck clean; ≤ 40 MiB on the box', async () => {
    const r = await runInVm(['node', 'test/vm/luks-guest.mjs', join(share(), 'state')], { share: share(), timeoutMs: 900_000, env: { IDLE_MS } });
    console.log(`[vm] luks + adopt scenario: ${r.totalMs} ms`);
    expect(r.exitCode, describeVmResult(r)).toBe(0);
    f = fields(r.stdout);
    expect(f.done).toBe('true');
    expect(JSON.parse(f['config.encryption']!)).toMatchObject({ type: 'luks2', mapperName: 'hbs-filesystem', keys: ['passphrase'] });
    expect(JSON.parse(f['config.mountOptions']!)).toEqual(['noatime', 'noinit_itable']);
    expect(f['mapper.afterInit']).toBe('/dev/mapper/hbs-filesystem');
    expect(f['header.mode']).toBe('600');
    expect(f.argvLeak).toBe('false');
    expect(JSON.parse(f['status.encryption']!)).toMatchObject({ state: 'open', cipher: 'aes-xts-plain64', keySlots: ['0'], headerBackup: { present: true } });
    expect(f['mapperAfterUmount']).not.toBe('0');
    expect(f['wrong.exit']).toBe('2');
    expect(f['wrong.stderr']).toMatch(/does not open .* nothing was changed/);
    expect(f['wrong.fsMounted']).toBe('false');
    expect(f['wrong.mapperOpen']).toBe('false');
    expect(f.data).toBe('hello luks');
    expect(f.owner).toBe('1234:5678');
    // Exit 1 for the thin image alone (100 GiB on a box of a few hundred MiB); everything else healthy.
    expect(f['remount.status.upApartFromSpace'], f['remount.status.doc']).toBe('true');
    expect(f['remount.status.spaceShort']).toBe('true');
    expect(f['remount.status.exit']).toBe('1');
    expect(f['fsck.exit']).toBe('0');
    const [init, idle, final] = [Number(f['alloc.afterInit']), Number(f['alloc.afterIdle']), Number(f['alloc.final'])];
    console.log(`[vm] bytes allocated on the box for a 100 GiB encrypted image: after init ${init}, after ${Number(IDLE_MS) / 1000} s idle ${idle}, at the end ${final}`);
    expect(idle).toBeLessThanOrEqual(40 * MiB);
    expect(final).toBeLessThanOrEqual(40 * MiB);
    expect(f['leftover.loops']).toBe('');
    expect(f['leftover.mappers']).toBe('');
  }, 1_000_000);

  it('then a reinstall (config, keys, fstab gone) adopts it: init --adopt with the passphrase, same UUIDs, data intact', () => {
    expect(f?.done, 'needs the previous test').toBe('true');
    const a = f!;
    expect(a['adopt.done']).toBe('true');
    console.log(`[vm] adopt ${a['adopt.ms']} ms`);
    // No reformat: the same LUKS container and the same ext4 inside it.
    expect(a['adopt.after.luksUuid']).toBe(a['adopt.before.luksUuid']);
    expect(a['adopt.after.ext4Uuid']).toBe(a['adopt.before.ext4Uuid']);
    // Every cryptsetup/mkfs/truncate that ran: the key test, the header backup, the open (status probes aside).
    const ran = (JSON.parse(a['adopt.ran']!) as string[]).filter((c) => c !== '$ cryptsetup status');
    expect(ran).toEqual(['$ cryptsetup open', '$ cryptsetup luksHeaderBackup', '$ cryptsetup open']);
    expect(a['adopt.passphraseShown']).toBe('false');
    expect(a['adopt.data']).toBe('hello luks');
    expect(a['adopt.owner']).toBe('1234:5678');
    expect(Number(a['adopt.after.sizeBytes'])).toBe(100 * 1024 ** 3);
    expect(JSON.parse(a['adopt.after.encryption']!)).toMatchObject({ type: 'luks2', mapperName: 'hbs-filesystem', keys: ['passphrase'], unattendedKeyFile: null });
    expect(JSON.parse(a['adopt.after.mountOptions']!)).toEqual(['noatime', 'noinit_itable']);
    expect(a['adopt.header.mode']).toBe('600');
    expect(a['adopt.header.uuid']).toBe(a['adopt.before.luksUuid']);
    expect(a['adopt.mounted']).toBe('/dev/mapper/hbs-filesystem');
    expect(a['adopt.fstab']).toMatch(/^\/dev\/mapper\/hbs-filesystem .* ext4 noauto,/);
    expect(a['adopt.status.upApartFromSpace'], a['adopt.status.doc']).toBe('true');
    expect(a['adopt.status.spaceShort']).toBe('true');
    expect(a['adopt.status.exit']).toBe('1');
    expect(a['adopt.leftover.loops']).toBe('');
    expect(a['adopt.leftover.mappers']).toBe('');
  });
});
