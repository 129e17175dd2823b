// LUKS end to end on real dm-crypt, inside the test VM: the built bin/hbs (npm run build first)
// against a stand-in box (sshd) started in the guest. `hbs init --encrypt` (100 GiB, passphrase on
// stdin, cheap PBKDF via HBS_TEST_CHEAP_PBKDF=1) → files with owners → a minute idle → status →
// umount → a wrong key refused (nothing opened, mounted or locked) → mount with the key → data and
// owners intact → umount → e2fsck -fn clean; bytes allocated on the box measured throughout.
// The scenario itself is test/vm/luks-guest.mjs. A second boot: reboot.vmtest.ts.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeVmResult, runInVm } from './run-in-vm.js';
import { fields, useVmShare } from './scenario.js';

const MiB = 1024 * 1024;

describe('hbs --encrypt on real dm-crypt (VM)', () => {
  const share = useVmShare('hbs-vm-luks-');

  it('init → files → idle → umount → wrong key refused → mount → data intact → e2fsck clean; ≤ 40 MiB on the box', async () => {
    const r = await runInVm(['node', 'test/vm/luks-guest.mjs', join(share(), 'state')], { share: share(), timeoutMs: 600_000, env: { IDLE_MS: '60000' } });
    console.log(`[vm] luks scenario: ${r.totalMs} ms`);
    expect(r.exitCode, describeVmResult(r)).toBe(0);
    const f = fields(r.stdout);
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
    expect(f['status.healthy']).toBe('true');
    expect(f['fsck.exit']).toBe('0');
    const [init, idle, final] = [Number(f['alloc.afterInit']), Number(f['alloc.afterIdle']), Number(f['alloc.final'])];
    console.log(`[vm] bytes allocated on the box for a 100 GiB encrypted image: after init ${init}, after a minute idle ${idle}, at the end ${final}`);
    expect(idle).toBeLessThanOrEqual(40 * MiB);
    expect(final).toBeLessThanOrEqual(40 * MiB);
    expect(f['leftover.loops']).toBe('');
    expect(f['leftover.mappers']).toBe('');
  }, 700_000);
});
