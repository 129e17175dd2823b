// Two encrypted configs on one server, on real dm-crypt inside the test VM: the scenario is
// test/vm/multi-guest.mjs (two stand-in boxes, the same image name, the mapping, header backup and
// kept key derived from each config's name; uninstall of one, adopt it back, uninstall both).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeVmResult, runInVm } from './run-in-vm.js';
import { fields, useVmShare } from './scenario.js';

describe('two encrypted configs on one server (VM)', () => {
  const share = useVmShare('hbs-vm-multi-');

  it('both open at once with derived names; uninstall of one leaves the other; adopt brings it back; crypttab and fstab as they were', async () => {
    const r = await runInVm(['node', 'test/vm/multi-guest.mjs', join(share(), 'state')], { share: share(), timeoutMs: 900_000 });
    console.log(`[vm] two encrypted configs: ${r.totalMs} ms`);
    expect(r.exitCode, describeVmResult(r)).toBe(0);
    const f = fields(r.stdout);
    const why = describeVmResult(r);
    expect(f.done, why).toBe('true');
    const dir = join(share(), 'state', 'etc');
    expect(JSON.parse(f['a.encryption']!), why).toMatchObject({ mapperName: 'hbs-a-filesystem', headerBackup: join(dir, 'hbs-a-filesystem.luks-header'), unattendedKeyFile: join(dir, 'hbs-a-filesystem.key') });
    expect(JSON.parse(f['b.encryption']!), why).toMatchObject({ mapperName: 'hbs-b-filesystem', headerBackup: join(dir, 'hbs-b-filesystem.luks-header'), unattendedKeyFile: null });
    expect(f['a.mounted'], why).toBe('/dev/mapper/hbs-a-filesystem');
    expect(f['b.mounted'], why).toBe('/dev/mapper/hbs-b-filesystem');
    expect(f['both.mappers'], why).toBe('hbs-a-filesystem,hbs-b-filesystem');
    expect([f['a.status.exit'], f['b.status.exit'], f['all.exit'], f['all.lines']], why).toEqual(['0', '0', '0', '2']);
    console.log(`[vm] uninstall of an encrypted config: ${f['uninstall.a.ms']} ms`);
    expect(f['uninstall.a.saysHeader'], why).toBe('true');
    expect([f['a.after.mapperOpen'], f['a.after.mounted'], f['a.after.config'], f['a.after.keptKey']], why).toEqual(['false', 'false', 'false', 'false']);
    expect([f['a.after.header'], f['a.after.crypttab'], f['a.after.image']], why).toEqual(['true', 'true', 'true']);
    expect([f['b.after.config'], f['b.after.status.exit'], f['b.after.data'], f['b.after.mounted']], why).toEqual(['true', '0', "b's data", '/dev/mapper/hbs-b-filesystem']);
    expect([f['adopt.a.data'], f['adopt.a.status.exit'], f['adopt.all.exit']], why).toEqual(["a's data", '0', '0']);
    expect([f['end.fstab'], f['end.crypttab'], f['leftover.loops'], f['leftover.mappers']], why).toEqual(['true', 'true', '', '']);
  }, 1_000_000);
});
