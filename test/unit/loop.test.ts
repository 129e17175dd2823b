import { describe, expect, it } from 'vitest';
import { RecordingRunner } from '../../src/core/recording-runner.js';
import { directIoNote, enableDirectIo, loopUnder } from '../../src/lib/loop.js';
import { directIoOn, findmnt, loopDio } from './canned.js';

const MP = '/srv/backup';

describe('loop direct I/O', () => {
  it('switches a buffered loop device and reads the flag back', async () => {
    const runner = new RecordingRunner(directIoOn('/dev/loop2'));
    expect(await enableDirectIo(runner, '/dev/loop2')).toEqual({ state: 'on' });
    runner.assertDone();
  });

  it('leaves a loop device that already does direct I/O alone (no write)', async () => {
    const runner = new RecordingRunner(directIoOn('/dev/loop2', true));
    expect(await enableDirectIo(runner, '/dev/loop2')).toEqual({ state: 'already' });
    expect(runner.calls.filter((c) => c.write !== false)).toEqual([]);
  });

  it('reports a refusal by losetup, or a kernel that silently kept buffered I/O, without failing', async () => {
    const failing = new RecordingRunner([loopDio('/dev/loop2', false), { argv: ['losetup', '--direct-io=on', '/dev/loop2'], exitCode: 1, stderr: 'losetup: set direct io failed\n' }]);
    const out = await enableDirectIo(failing, '/dev/loop2');
    expect(out).toEqual({ state: 'refused', detail: '/dev/loop2: losetup: set direct io failed' });
    expect(directIoNote(out)).toMatch(/^loop direct I\/O could not be switched on \(\/dev\/loop2: .*\); the filesystem works/);
    const silent = new RecordingRunner([loopDio('/dev/loop2', false), { argv: ['losetup', '--direct-io=on', '/dev/loop2'] }, loopDio('/dev/loop2', false)]);
    expect(await enableDirectIo(silent, '/dev/loop2')).toEqual({ state: 'refused', detail: '/dev/loop2: the kernel kept buffered I/O' });
    expect(directIoNote({ state: 'on' })).toBeUndefined();
  });

  it('finds the loop device under a plain mount, under a LUKS mapping, and none under anything else', async () => {
    const plain = new RecordingRunner([findmnt(MP, { source: '/dev/loop4', fstype: 'ext4' })]);
    expect(await loopUnder(plain, MP)).toBe('/dev/loop4');
    const luks = new RecordingRunner([
      findmnt(MP, { source: '/dev/mapper/hbs-x', fstype: 'ext4' }),
      { argv: ['cryptsetup', 'status', 'hbs-x'], write: false, stdout: '/dev/mapper/hbs-x is active.\n  device:  /dev/loop6\n  loop:    /box/x.img\n' },
    ]);
    expect(await loopUnder(luks, MP, 'hbs-x')).toBe('/dev/loop6');
    const other = new RecordingRunner([findmnt(MP, { source: '/dev/sdb1', fstype: 'ext4' })]);
    expect(await loopUnder(other, MP, 'hbs-x')).toBeUndefined();
    expect(await enableDirectIo(other, undefined)).toEqual({ state: 'no-loop' });
    const nothing = new RecordingRunner([findmnt(MP)]);
    expect(await loopUnder(nothing, MP)).toBeUndefined();
  });
});
