import { describe, expect, it } from 'vitest';
import { describeRequest, parseGrowSize, targetBytes } from '../../../src/commands/grow/size-request.js';
import { EXIT, UsageError } from '../../../src/core/errors.js';
import { capSysResourceFromStatus } from '../../../src/lib/capability.js';
import { covers, parseDumpe2fs } from '../../../src/lib/ext4.js';

const GiB = 1024 ** 3;

function usage(f: () => unknown): UsageError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(EXIT.usage);
    return err as UsageError;
  }
  throw new Error('expected a UsageError');
}

describe('hbs grow --size', () => {
  it('takes absolute sizes in the init grammar', () => {
    expect(parseGrowSize('200G')).toEqual({ text: '200G', relative: false, bytes: 200 * GiB });
    expect(parseGrowSize('1.5T').bytes).toBe(1.5 * 1024 * GiB);
    expect(parseGrowSize('500GB').bytes).toBe(500e9);
    expect(parseGrowSize('3221225472').bytes).toBe(3 * GiB);
  });

  it('takes relative sizes with a leading +, counted from the recorded size', () => {
    const req = parseGrowSize('+50G');
    expect(req).toEqual({ text: '+50G', relative: true, bytes: 50 * GiB });
    expect(targetBytes(req, 100 * GiB)).toBe(150 * GiB);
    expect(targetBytes(parseGrowSize('+512M'), GiB)).toBe(1.5 * GiB);
    expect(describeRequest(req, 150 * GiB, 100 * GiB)).toBe('--size +50G (150 GiB: the recorded 100 GiB + 50 GiB)');
    expect(describeRequest(parseGrowSize('3G'), 3 * GiB, GiB)).toBe('--size 3G (3 GiB)');
  });

  it('refuses bad input with one line naming the value', () => {
    expect(usage(() => parseGrowSize(undefined)).message).toMatch(/^missing: --size/);
    expect(usage(() => parseGrowSize('')).message).toMatch(/^missing: --size/);
    expect(usage(() => parseGrowSize('1.5.0G')).message).toContain('"1.5.0G"');
    expect(usage(() => parseGrowSize('+10X')).message).toContain('"+10X"');
    expect(usage(() => parseGrowSize('+')).message).toContain('"+"');
    expect(usage(() => parseGrowSize('+0')).message).toContain('"+0"');
    const shrink = usage(() => parseGrowSize('-10G'));
    expect(shrink.message).toContain('"-10G"');
    expect(shrink.message).toContain('never shrinks');
    for (const e of [shrink, usage(() => parseGrowSize('abc'))]) expect(e.message.split('\n')).toHaveLength(1);
  });

  it('refuses sizes beyond what it can count exactly', () => {
    expect(usage(() => targetBytes(parseGrowSize('+8000T'), Number.MAX_SAFE_INTEGER - 10)).message).toContain('too large');
  });
});

describe('filesystem geometry', () => {
  const out = 'dumpe2fs 1.47.0\nFilesystem volume name:   x\nBlock count:              786432\nReserved block count:     0\nBlock size:               4096\nBlocks per group:         32768\n';

  it('reads block count, block size and blocks per group from dumpe2fs -h', () => {
    expect(parseDumpe2fs(out)).toEqual({ blockCount: 786432, blockSize: 4096, blocksPerGroup: 32768, uuid: undefined, state: 'unknown', errorCount: 0, needsRecovery: false });
    expect(parseDumpe2fs('Block count: 12\n')).toBeUndefined();
  });

  it('counts a filesystem as spanning a size when it has every whole block of it', () => {
    const g = { blockCount: 786432, blockSize: 4096, blocksPerGroup: 32768 };
    expect(covers(g, 3 * GiB, false)).toBe(true);
    expect(covers(g, 3 * GiB + 4095, false)).toBe(true); // a partial block cannot be used
    expect(covers(g, 3 * GiB + 4096, false)).toBe(false);
  });

  it('accepts a tail shorter than one block group only when told to', () => {
    const g = { blockCount: 786432 - 300, blockSize: 4096, blocksPerGroup: 32768 };
    expect(covers(g, 3 * GiB, false)).toBe(false);
    expect(covers(g, 3 * GiB, true)).toBe(true);
    expect(covers({ ...g, blockCount: 262144 }, 3 * GiB, true)).toBe(false);
  });
});

describe('CAP_SYS_RESOURCE', () => {
  const status = (bnd: string, inh = '0000000000000000'): string => `Name:\tnode\nCapInh:\t${inh}\nCapPrm:\t0\nCapEff:\t0\nCapBnd:\t${bnd}\n`;

  it('reads it from the bounding set programs inherit as root', () => {
    expect(capSysResourceFromStatus(status('000001ffffffffff'))).toBe(true);
    // This build machine: everything but bit 24.
    expect(capSysResourceFromStatus(status('000001fffeffffff'))).toBe(false);
    expect(capSysResourceFromStatus(status('000001fffeffffff', '0000000001000000'))).toBe(true);
  });

  it('says it cannot tell when the status has no bounding set', () => {
    expect(capSysResourceFromStatus('Name:\tnode\n')).toBeUndefined();
  });
});
