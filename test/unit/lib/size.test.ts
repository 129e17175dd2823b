import { describe, expect, it } from 'vitest';
import { formatSize, parseSize } from '../../../src/lib/size.js';

function bytesOf(input: string): number {
  const r = parseSize(input);
  if (!r.ok) throw new Error(`expected ${JSON.stringify(input)} to parse, got: ${r.error}`);
  return r.bytes;
}

function errorOf(input: string): string {
  const r = parseSize(input);
  if (r.ok) throw new Error(`expected ${JSON.stringify(input)} to be rejected, got ${r.bytes} bytes`);
  return r.error;
}

describe('parseSize', () => {
  it.each([
    ['1', 1],
    ['1048576', 1048576],
    ['512B', 512],
    ['1K', 1024],
    ['1M', 1024 ** 2],
    ['1G', 1024 ** 3],
    ['1T', 1024 ** 4],
    ['100G', 100 * 1024 ** 3],
    ['1KiB', 1024],
    ['1MiB', 1024 ** 2],
    ['1GiB', 1024 ** 3],
    ['1TiB', 1024 ** 4],
    ['1KB', 1000],
    ['1MB', 1000 ** 2],
    ['1GB', 1000 ** 3],
    ['1TB', 1000 ** 4],
    ['500GB', 500 * 1000 ** 3],
    ['1.5G', 1.5 * 1024 ** 3],
    ['1.5TiB', 1.5 * 1024 ** 4],
    ['2.5MB', 2_500_000],
    ['0.5K', 512],
  ])('%s is %d bytes', (input, bytes) => {
    expect(bytesOf(input)).toBe(bytes);
  });

  it('binary and decimal units differ', () => {
    expect(bytesOf('1G')).toBe(1_073_741_824);
    expect(bytesOf('1GB')).toBe(1_000_000_000);
    expect(bytesOf('1GiB')).toBe(bytesOf('1G'));
  });

  it('accepts lower case units, a space before the unit and surrounding white space', () => {
    expect(bytesOf('10g')).toBe(10 * 1024 ** 3);
    expect(bytesOf('10gib')).toBe(10 * 1024 ** 3);
    expect(bytesOf('10gb')).toBe(10 * 1000 ** 3);
    expect(bytesOf('10 G')).toBe(10 * 1024 ** 3);
    expect(bytesOf('  10G\n')).toBe(10 * 1024 ** 3);
  });

  it('rounds fractional bytes down', () => {
    expect(bytesOf('1.0001K')).toBe(1024);
    expect(bytesOf('1.9')).toBe(1);
  });

  it.each(['abc', '-5G', '0', '10X', '1.5.0G', '0G', '0.0001K', 'G', '1e3', '1,5G', '10 G B', '5GG'])(
    'rejects %j with a message naming the value',
    (input) => {
      const error = errorOf(input);
      expect(error).toContain(`"${input}"`);
    },
  );

  it('says why: not a number, unknown unit, not larger than 0', () => {
    expect(errorOf('abc')).toMatch(/not a number with a unit/);
    expect(errorOf('-5G')).toMatch(/not a number with a unit/);
    expect(errorOf('10X')).toMatch(/unknown unit "X"/);
    expect(errorOf('0')).toMatch(/larger than 0/);
    expect(errorOf('0.0001K')).toMatch(/larger than 0/);
  });

  it.each(['', '   ', '\t\n'])('rejects empty or white space input %j as empty', (input) => {
    expect(errorOf(input)).toMatch(/size is empty/);
  });

  it('rejects sizes beyond safe integers', () => {
    expect(errorOf('99999999T')).toMatch(/"99999999T" is too large/);
    expect(bytesOf('8000T')).toBe(8000 * 1024 ** 4);
  });
});

describe('formatSize', () => {
  it.each([
    [0, '0 B'],
    [1, '1 B'],
    [1023, '1023 B'],
    [1024, '1 KiB'],
    [1536, '1.5 KiB'],
    [1024 ** 2, '1 MiB'],
    [10 * 1024 ** 3, '10 GiB'],
    [1_610_612_736, '1.5 GiB'],
    [150 * 1024 ** 3, '150 GiB'],
    [1024 ** 4, '1 TiB'],
    [2 * 1024 ** 5, '2 PiB'],
    [4096 * 1024 ** 5, '4096 PiB'],
    [1_000_000_000, '954 MiB'],
  ])('%d is %s', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
  });

  it('round-trips what parseSize reads for whole binary sizes', () => {
    for (const s of ['1K', '64M', '100G', '3T']) {
      const bytes = bytesOf(s);
      expect(bytesOf(formatSize(bytes))).toBe(bytes);
    }
  });
});
