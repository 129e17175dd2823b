// A reinstalled server adopts its encrypted image, on real dm-crypt inside the test VM: the built
// bin/hbs (npm run build first) against a stand-in box (sshd) in the guest. Encrypted init → files
// → stack down by hand and hbs's local state deleted except the passphrase → `hbs init --adopt`
// with the passphrase on stdin → same LUKS and ext4 UUIDs (no reformat), data intact → umount.
// The scenario itself is test/vm/adopt-guest.mjs.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeVmResult, runInVm } from './run-in-vm.js';
import { fields, useVmShare } from './scenario.js';


describe('hbs init --adopt of an encrypted image on real dm-crypt (VM)', () => {
  const share = useVmShare('hbs-vm-adopt-');

  it('encrypted init → reinstall (config, keys, fstab gone) → init --adopt with the passphrase: same UUIDs, data intact', async () => {
    const r = await runInVm(['node', 'test/vm/adopt-guest.mjs', join(share(), 'state')], { share: share(), timeoutMs: 600_000 });
    console.log(`[vm] adopt scenario: ${r.totalMs} ms`);
    expect(r.exitCode, describeVmResult(r)).toBe(0);
    const f = fields(r.stdout);
    expect(f.done).toBe('true');
    console.log(`[vm] init ${f['init.ms']} ms, adopt ${f['adopt.ms']} ms`);
    // No reformat: the same LUKS container and the same ext4 inside it.
    expect(f['after.luksUuid']).toBe(f['before.luksUuid']);
    expect(f['after.ext4Uuid']).toBe(f['before.ext4Uuid']);
    // Every cryptsetup/mkfs/truncate that ran: the key test, the header backup, the open (status probes aside).
    const ran = (JSON.parse(f['adopt.ran']!) as string[]).filter((c) => c !== '$ cryptsetup status');
    expect(ran).toEqual(['$ cryptsetup open', '$ cryptsetup luksHeaderBackup', '$ cryptsetup open']);
    expect(f['adopt.passphraseShown']).toBe('false');
    expect(f.data).toBe('kept across the reinstall');
    expect(f.owner).toBe('1234:5678');
    expect(Number(f['after.sizeBytes'])).toBe(4 * 1024 ** 3);
    expect(JSON.parse(f['after.encryption']!)).toMatchObject({ type: 'luks2', mapperName: 'hbs-filesystem', keys: ['passphrase'], unattendedKeyFile: null });
    expect(JSON.parse(f['after.mountOptions']!)).toEqual(['noatime', 'noinit_itable']);
    expect(f['header.mode']).toBe('600');
    expect(f['header.uuid']).toBe(f['before.luksUuid']);
    expect(f.mounted).toBe('/dev/mapper/hbs-filesystem');
    expect(f.fstab).toMatch(/^\/dev\/mapper\/hbs-filesystem .* ext4 noauto,/);
    expect(f['status.healthy']).toBe('true');
    expect(f['leftover.loops']).toBe('');
    expect(f['leftover.mappers']).toBe('');
  }, 700_000);
});
