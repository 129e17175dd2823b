import { describe, expect, it } from 'vitest';
import { decideGrow } from '../../../src/commands/grow/decide.js';
import { parseGrowSize } from '../../../src/commands/grow/size-request.js';
import { EXIT, UsageError } from '../../../src/core/errors.js';
import type { GrowFacts } from '../../../src/steps/grow.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function facts(over: { file?: number; allocated?: number | null; fsBlocks?: number; device?: string; free?: number; total?: number; cap?: boolean }): GrowFacts {
  return {
    file: { sizeBytes: over.file ?? GiB, allocatedBytes: over.allocated === null ? undefined : (over.allocated ?? 5 * MiB) },
    fs: { blockCount: over.fsBlocks ?? GiB / 4096, blockSize: 4096, blocksPerGroup: 32768 },
    device: over.device,
    payloadOffset: 0,
    box: { totalBytes: over.total ?? 1000 * GiB, freeBytes: over.free ?? 100 * GiB },
    canResizeOnline: over.device ? (over.cap ?? true) : undefined,
  };
}
const cfg = (recorded = GiB) => ({ image: { name: 'filesystem.img', sizeBytes: recorded, uuid: 'x', label: 'l' } });
const decide = (f: GrowFacts, size: string, recorded = GiB, force = false) => decideGrow(f, cfg(recorded), parseGrowSize(size), { force });

function refusal(f: () => unknown): UsageError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(EXIT.usage);
    return err as UsageError;
  }
  throw new Error('expected a refusal');
}

describe('decideGrow', () => {
  it('grows an unmounted image offline, no consent needed', () => {
    const d = decide(facts({}), '3G');
    expect(d).toMatchObject({ fromBytes: GiB, fsBytes: GiB, targetBytes: 3 * GiB, mounted: false, configOnly: false, onlineRefusalExpected: false });
    expect(d.resume).toBeUndefined();
  });

  it('grows a mounted image online, and knows when the kernel will refuse', () => {
    expect(decide(facts({ device: '/dev/loop0' }), '3G')).toMatchObject({ mounted: true, onlineRefusalExpected: false });
    expect(decide(facts({ device: '/dev/loop0', cap: false }), '3G')).toMatchObject({ mounted: true, onlineRefusalExpected: true });
  });

  it('counts relative sizes from the recorded size', () => {
    const d = decide(facts({ file: 2 * GiB, fsBlocks: (2 * GiB) / 4096 }), '+1G', 2 * GiB);
    expect(d.targetBytes).toBe(3 * GiB);
    expect(d.asked).toBe('--size +1G (3 GiB: the recorded 2 GiB + 1 GiB)');
  });

  it('refuses a smaller size with the current size, and an equal one', () => {
    const smaller = refusal(() => decide(facts({ file: 3 * GiB, fsBlocks: (3 * GiB) / 4096 }), '2G', 3 * GiB));
    expect(smaller.message).toContain('3 GiB (3221225472 bytes)');
    expect(smaller.message).toContain('never shrinks');
    expect(smaller.message.split('\n')).toHaveLength(1);
    const equal = refusal(() => decide(facts({ file: 3 * GiB, fsBlocks: (3 * GiB) / 4096 }), '3G', 3 * GiB));
    expect(equal.message).toContain('not larger than');
    expect(equal.message).toContain('3 GiB (3221225472 bytes)');
  });

  it('refuses a smaller size even mid-way through an earlier grow, and says how to finish that one', () => {
    const e = refusal(() => decide(facts({ file: 3 * GiB }), '2G'));
    expect(e.hint).toContain('hbs grow --size 3221225472');
  });

  it('resumes from the filesystem\'s own block count when the file grew but ext4 did not', () => {
    const d = decide(facts({ file: 3 * GiB, device: '/dev/loop0' }), '3G');
    expect(d).toMatchObject({ configOnly: false, targetBytes: 3 * GiB, fromBytes: 3 * GiB, fsBytes: GiB });
    expect(d.resume).toMatch(/already 3 GiB, but ext4 inside spans only 1 GiB/);
    // The same relative request resumes too: it counts from the recorded size, which the interrupted run never changed.
    expect(decide(facts({ file: 3 * GiB }), '+2G').resume).toMatch(/finishing it/);
  });

  it('says a larger grow also finishes an interrupted one', () => {
    expect(decide(facts({ file: 3 * GiB }), '4G').resume).toMatch(/finishes it too/);
  });

  it('only updates the config when file and filesystem are grown but the config lags', () => {
    const d = decide(facts({ file: 3 * GiB, fsBlocks: (3 * GiB) / 4096, device: '/dev/loop0', cap: false }), '3G');
    expect(d).toMatchObject({ configOnly: true, onlineRefusalExpected: false });
    expect(d.resume).toMatch(/only the config still records 1 GiB/);
  });

  it('accepts the tail resize2fs leaves off once the config records that size', () => {
    const size = 3 * GiB + 200 * 4096; // a last group too small for its metadata
    const f = facts({ file: size, fsBlocks: (3 * GiB) / 4096 });
    expect(refusal(() => decide(f, String(size), size)).message).toContain('not larger than');
    // With the old size recorded, the same shortfall means the grow did not finish.
    expect(decide(f, String(size), GiB).resume).toMatch(/finishing it/);
  });

  it('refuses a size that does not fit the box, with the figures, counting what the image occupies', () => {
    // 60 GiB free; the image occupies 10 GiB of its 20: growing to 75 GiB may need 65 GiB more.
    const f = facts({ file: 20 * GiB, fsBlocks: (20 * GiB) / 4096, allocated: 10 * GiB, free: 60 * GiB, total: 100 * GiB });
    const e = refusal(() => decide(f, '75G', 20 * GiB));
    expect(e.message).toContain('65 GiB more');
    expect(e.message).toContain('occupies 10 GiB');
    expect(e.message).toContain('60 GiB free of 100 GiB');
    expect(e.hint).toContain('--force');
    expect(decide(f, '70G', 20 * GiB).targetBytes).toBe(70 * GiB);
    expect(decide(f, '75G', 20 * GiB, true).targetBytes).toBe(75 * GiB);
  });

  it('refuses an image larger than the whole box unless --force', () => {
    const f = facts({ allocated: 0, free: 100 * GiB, total: 100 * GiB });
    expect(refusal(() => decide(f, '101G')).message).toContain('free of 100 GiB');
    expect(decide(f, '101G', GiB, true).targetBytes).toBe(101 * GiB);
  });

  it('counts only the growth when the box cannot tell what the image occupies (no shell on port 22)', () => {
    const f = facts({ file: 20 * GiB, fsBlocks: (20 * GiB) / 4096, allocated: null, free: 60 * GiB });
    expect(decide(f, '80G', 20 * GiB).targetBytes).toBe(80 * GiB);
    expect(refusal(() => decide(f, '81G', 20 * GiB)).message).toContain('could not be measured');
  });
});

describe('decideGrow, encrypted (LUKS2)', () => {
  const OFFSET = 16 * MiB;
  const luks = (over: { file?: number; fsBlocks?: number | null; open?: boolean; mapper?: number; keyring?: boolean; device?: string }): GrowFacts => {
    const file = over.file ?? GiB;
    const open = over.open ?? over.device !== undefined;
    const f = facts({ file, device: over.device });
    return {
      ...f,
      payloadOffset: OFFSET,
      fs: over.fsBlocks === null || !open ? undefined : { blockCount: over.fsBlocks ?? (file - OFFSET) / 4096, blockSize: 4096, blocksPerGroup: 32768 },
      crypt: { open, loop: open ? '/dev/loop5' : undefined, mapperBytes: open ? (over.mapper ?? file - OFFSET) : undefined, resizeNeedsKey: over.keyring ?? true },
    };
  };

  it('ext4 spanning the file minus the header is whole: not a grow that stopped halfway', () => {
    const d = decide(luks({ device: '/dev/mapper/hbs-x' }), '3G');
    expect(d.resume).toBeUndefined();
    expect(d.fsBytes).toBe(GiB - OFFSET);
    expect(refusal(() => decide(luks({ device: '/dev/mapper/hbs-x' }), '1G')).message).toContain('not larger than');
  });

  it('a closed mapping: the key is needed to open it; ext4 is unknown until then, and the config tells whether a grow stopped halfway', () => {
    expect(decide(luks({}), '3G')).toMatchObject({ keyNeeded: true, fsBytes: undefined, resume: undefined, configOnly: false });
    const halfway = decide(luks({ file: 3 * GiB }), '+2G');
    expect(halfway.resume).toMatch(/config records 1 GiB: an earlier grow stopped halfway; finishing it \(ext4's own size is read once the mapping is open\)/);
    expect(refusal(() => decide(luks({ file: 3 * GiB }), '3G', 3 * GiB)).message).toContain('not larger than');
  });

  it('an open mapping needs the key only while it is smaller than the target and its volume key is in the keyring', () => {
    expect(decide(luks({ device: '/dev/mapper/hbs-x' }), '3G').keyNeeded).toBe(true);
    expect(decide(luks({ device: '/dev/mapper/hbs-x', keyring: false }), '3G').keyNeeded).toBe(false);
    // The mapping was resized already (an earlier run stopped before resize2fs).
    expect(decide(luks({ device: '/dev/mapper/hbs-x', file: 3 * GiB, mapper: 3 * GiB - OFFSET, fsBlocks: (GiB - OFFSET) / 4096 }), '3G').keyNeeded).toBe(false);
  });
});
