import { describe, expect, it } from 'vitest';
import { decideUndo, e2undoArgv, parseUndoHeader, parseUndoMark, undoMarkOf } from '../../../src/lib/e2undo.js';
import { parseDumpe2fs, type Superblock } from '../../../src/lib/ext4.js';

// `e2undo -h` of a real undo file (e2fsprogs 1.47.0).
const HEADER = (state: string): string =>
  `nr keys:\t9\nsuper block:\t1\nkey block:\t2\nblock size:\t1024\nfs block size:\t1024\nsuper crc:\t0x0\nstate:\t\t${state}\ncompat:\t\t0x0\nincompat:\t0x0\nrocompat:\t0x0\nheader crc:\t0xcda023d6\n`;

const sb = (blockCount: number, history: Superblock['history'] = { mountCount: 1, lastMount: 'Wed Dec  2 09:00:00 2026', lastChecked: 'Wed Dec  2 09:01:00 2026' }): Superblock => ({
  blockCount, blockSize: 4096, blocksPerGroup: 32768, state: 'clean', errorCount: 0, needsRecovery: false, history,
});

describe('parseUndoHeader', () => {
  it('reads the FINISHED flag from the state line', () => {
    expect(parseUndoHeader(HEADER('0x1'))).toBe('finished');
    expect(parseUndoHeader(HEADER('0x0'))).toBe('interrupted');
    expect(parseUndoHeader(HEADER('0x3'))).toBe('finished');
  });
  it('no header (an empty or zeroed file): undefined', () => {
    expect(parseUndoHeader('')).toBeUndefined();
  });
});

describe('dumpe2fs history', () => {
  it('reads the mount count and the last mount and check times', () => {
    const text = 'Block count:              262144\nBlock size:               4096\nBlocks per group:         32768\nLast mount time:          Wed Dec  2 09:33:18 2026\nMount count:              3\nLast checked:             n/a\n';
    expect(parseDumpe2fs(text)?.history).toEqual({ mountCount: 3, lastMount: 'Wed Dec  2 09:33:18 2026', lastChecked: 'n/a' });
  });
});

describe('decideUndo', () => {
  const before = sb(262144);
  const mark = undoMarkOf(before);

  it('a blank file: nothing was overwritten, so it is removed', () => {
    expect(decideUndo({ state: 'blank' }, mark, before).kind).toBe('discard');
  });
  it('interrupted, the filesystem untouched since (same history): replayed with -f', () => {
    const d = decideUndo({ state: 'interrupted' }, mark, sb(786432));
    expect(d).toMatchObject({ kind: 'replay', force: true });
    expect(e2undoArgv(d as Extract<typeof d, { kind: 'replay' }>, '/u', '/dev/x')).toEqual(['e2undo', '-f', '/u', '/dev/x']);
  });
  it('interrupted, the superblock unreadable (the resize broke it): replayed with -f', () => {
    expect(decideUndo({ state: 'interrupted' }, mark, undefined)).toMatchObject({ kind: 'replay', force: true });
  });
  it.each([
    ['mounted since', { ...before.history, mountCount: 2 }],
    ['mounted since (time)', { ...before.history, lastMount: 'Thu Dec  3 10:00:00 2026' }],
    ['checked since', { ...before.history, lastChecked: 'Thu Dec  3 10:00:00 2026' }],
  ])('interrupted, but %s: set aside, never forced over it', (_what, history) => {
    expect(decideUndo({ state: 'interrupted' }, mark, sb(262144, history)).kind).toBe('set-aside');
  });
  it('interrupted without hbs’s mark: set aside', () => {
    expect(decideUndo({ state: 'interrupted' }, undefined, before).kind).toBe('set-aside');
  });
  it('finished with the new size: the resize is kept, the file removed', () => {
    expect(decideUndo({ state: 'finished', matches: true }, mark, sb(786432)).kind).toBe('discard');
  });
  it('finished at the old size and e2undo -n accepts it: replayed, not forced', () => {
    expect(decideUndo({ state: 'finished', matches: true }, mark, before)).toMatchObject({ kind: 'replay', force: false });
  });
  it('finished, but the filesystem changed since: set aside', () => {
    expect(decideUndo({ state: 'finished', matches: false }, mark, before).kind).toBe('set-aside');
  });
});

describe('parseUndoMark', () => {
  it('reads what undoMarkOf wrote; anything else is no mark', () => {
    expect(parseUndoMark(JSON.stringify(undoMarkOf(sb(5))))).toEqual({ blockCount: 5, mountCount: 1, lastMount: 'Wed Dec  2 09:00:00 2026', lastChecked: 'Wed Dec  2 09:01:00 2026' });
    expect(parseUndoMark('{"x":1}')).toBeUndefined();
    expect(parseUndoMark('not json')).toBeUndefined();
    expect(parseUndoMark(undefined)).toBeUndefined();
  });
});
