// hbs grow end to end on real dm-crypt, inside the test VM (npm run build first): the built bin/hbs
// against a stand-in box (sshd) started in the guest, whose root holds CAP_SYS_RESOURCE, so the
// online path runs for real. Plain: init 1 GiB → online grow to 2 GiB. Encrypted (cheap PBKDF via
// --luks-pbkdf pbkdf2 --luks-iter-time 100): init 99 GiB → no key refused at once → wrong key refused → online grow
// to 100 GiB with the key on stdin → offline grow 100 → 200 GiB (mapping closed) → mount → e2fsck
// -fn clean; bytes allocated on the box measured around each grow. The scenario is grow-guest.mjs.
import { describe, expect, it } from 'vitest';
import { describeVmResult, runInVm } from './run-in-vm.js';
import { fields, requireVm } from './scenario.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

describe('hbs grow on real dm-crypt with CAP_SYS_RESOURCE (VM)', () => {
  requireVm();

  it('plain online grow; encrypted: no key / wrong key refused, online 99 → 100 GiB, offline 100 → 200 GiB, data intact, e2fsck clean', async () => {
    // The box's files are in a tmpfs in the guest.
    const r = await runInVm(['node', 'test/vm/grow-guest.mjs', '/tmp/hbs-grow'], { timeoutMs: 1_200_000, memMiB: 2048, env: { IDLE_MS: '15000' } });
    console.log(`[vm] grow scenario: ${r.totalMs} ms`);
    expect(r.exitCode, describeVmResult(r)).toBe(0);
    const f = fields(r.stdout);
    console.log(Object.entries(f).map(([k, v]) => `[vm]   ${k}=${v}`).join('\n'));
    expect(f.done).toBe('true');

    // Plain: online (the VM's root may resize a mounted ext4), size, data and owner.
    expect(f['plain.grow.online']).toBe('true');
    expect(Number(f['plain.file'])).toBe(2 * GiB);
    expect(Number(f['plain.fsSize'])).toBeGreaterThan(1.8 * GiB);
    expect(f['plain.data']).toBe('hello plain');
    expect(f['plain.owner']).toBe('1234:5678');
    expect(Number(f['plain.recorded'])).toBe(2 * GiB);

    // Encrypted: refusals change nothing.
    expect(JSON.parse(f['enc.mountOptions']!)).toContain('noinit_itable');
    expect(f['nokey.exit']).toBe('2');
    expect(f['nokey.stderr']).toMatch(/needs its key/);
    expect(f['wrong.exit']).toBe('2');
    expect(f['wrong.stderr']).toMatch(/does not open .* nothing was changed/);
    expect(Number(f['wrong.file'])).toBe(99 * GiB);
    expect(Number(f['wrong.recorded'])).toBe(99 * GiB);

    // Online 99 → 100 GiB.
    expect(f['online.leak']).toBe('false');
    expect(f['online.resizeLine']).toMatch(/cryptsetup resize --key-file - hbs-secret <<\(stdin\)$/);
    expect(f['online.stayedMounted']).toBe('true');
    expect(Number(f['enc.file.afterOnline'])).toBe(100 * GiB);
    // df's size leaves out ext4's own metadata: compare with the size before.
    expect(Number(f['enc.fsSize.afterOnline']) - Number(f['enc.fsSize.before'])).toBeGreaterThan(0.95 * GiB);
    expect(f['enc.mountOpts.afterOnline']).toContain('noinit_itable');
    expect(f['enc.data.afterOnline']).toBe('hello luks grow');
    expect(f['enc.owner.afterOnline']).toBe('1234:5678,42:43');
    expect(Number(f['enc.recorded.afterOnline'])).toBe(100 * GiB);

    // Offline 100 → 200 GiB: the mapping is opened, grown into and closed again.
    expect(f['offline.notMounted']).toBe('true');
    expect(f['offline.leak']).toBe('false');
    expect(f['offline.mapperOpen']).toBe('false');
    expect(Number(f['enc.fsSize.afterOffline']) - Number(f['enc.fsSize.afterOnline'])).toBeGreaterThan(95 * GiB);
    expect(f['enc.data.afterOffline']).toBe('hello luks grow');
    expect(f['enc.owner.afterOffline']).toBe('1234:5678,42:43');
    expect(Number(f['enc.recorded.afterOffline'])).toBe(200 * GiB);
    expect(f['fsck.exit']).toBe('0');

    const a = (k: string): number => Number(f[`alloc.${k}`]);
    const online = a('afterOnline') - a('beforeOnline');
    const offline = a('afterOffline') - a('beforeOffline');
    const idle = a('afterOfflineIdle') - a('afterOffline');
    console.log(
      `[vm] bytes allocated on the box, encrypted image: before the online grow ${a('beforeOnline')}, after 99 → 100 GiB online ${a('afterOnline')} (+${online}); ` +
        `before the offline grow ${a('beforeOffline')}, after 100 → 200 GiB offline ${a('afterOffline')} (+${offline}), after mounting and 15 s idle ${a('afterOfflineIdle')} (+${idle})`,
    );
    console.log(`[vm] durations (ms): plain grow ${f['plain.grow.ms']}, encrypted online grow ${f['enc.growOnline.ms']}, offline grow ${f['enc.growOffline.ms']}, e2fsck -fn ${f['fsck.ms']}, no-key refusal ${f['nokey.ms']}`);
    // Online, the kernel zeroes the new groups' inode tables (8 groups × 2 MiB): through LUKS that is real data.
    expect(online).toBeGreaterThan(15 * MiB);
    expect(online).toBeLessThan(40 * MiB);
    // Offline, resize2fs leaves them to lazy init, which noinit_itable keeps from running.
    expect(offline).toBeLessThan(16 * MiB);
    expect(idle).toBeLessThan(4 * MiB);
    // Mounted, --offline 200 → 300 GiB: unmounted for the resize, mounted again, almost nothing written.
    console.log(`[vm] mounted, --offline 200 → 300 GiB: +${a('afterOfflineFirst') - a('beforeOfflineFirst')} bytes on the box, ${f['enc.growOfflineFirst.ms']} ms`);
    expect(f['offlineFirst.unmountedFor']).toBe('true');
    expect(f['offlineFirst.leak']).toBe('false');
    expect(Number(f['enc.fsSize.afterOfflineFirst']) - Number(f['enc.fsSize.afterOffline'])).toBeGreaterThan(95 * GiB);
    expect(f['enc.mountOpts.afterOfflineFirst']).toContain('noinit_itable');
    expect(f['enc.data.afterOfflineFirst']).toBe('hello luks grow');
    expect(Number(f['enc.recorded.afterOfflineFirst'])).toBe(300 * GiB);
    expect(a('afterOfflineFirst') - a('beforeOfflineFirst')).toBeLessThan(16 * MiB);

    expect(f['leftover.loops']).toBe('');
    expect(f['leftover.mappers']).toBe('');
    expect(f['leftover.mounts']).toBe('');
  }, 1_300_000);
});
