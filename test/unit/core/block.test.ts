import { describe, expect, it } from 'vitest';
import { blockLines, blockText, formatBlock, hasBlock, mergeBlock, removeBlock } from '../../../src/core/block.js';
import { formatEntry, type FstabEntry } from '../../../src/lib/fstab.js';

const ENTRIES: FstabEntry[] = [
  { source: 'u1@u1.your-storagebox.de:', target: '/srv/box', fstype: 'fuse.sshfs', options: ['_netdev', 'port=23', 'IdentityFile=/root/.ssh/k'] },
  { source: '/srv/box/filesystem.img', target: '/srv/backup', fstype: 'ext4', options: ['loop', 'nofail'], dump: 0, pass: 2 },
];
const LINES = ENTRIES.map(formatEntry);
const OTHER = [formatEntry({ source: '/dev/sdb1', target: '/mnt/data', fstype: 'xfs', options: ['defaults'] })];

const BLOCK = [
  '# BEGIN hbs managed block (main): edit with hbs, not by hand',
  'u1@u1.your-storagebox.de: /srv/box fuse.sshfs _netdev,port=23,IdentityFile=/root/.ssh/k 0 0',
  '/srv/box/filesystem.img /srv/backup ext4 loop,nofail 0 2',
  '# END hbs managed block (main)',
  '',
].join('\n');

/** A hand-kept fstab: comments, tabs, odd spacing, trailing white space. */
const SYSTEM = '# /etc/fstab: static file system information.\n#\nUUID=1234-ABCD\t/boot/efi\tvfat\tumask=0077\t0\t1\n/dev/sda1   /     ext4    errors=remount-ro 0       1\n\n  # indented comment  \n';

describe('formatBlock', () => {
  it('puts the lines between markers naming the id', () => {
    expect(formatBlock('main', LINES)).toBe(BLOCK);
  });
});

describe('mergeBlock', () => {
  it('appends the block to empty text', () => {
    expect(mergeBlock('', 'main', LINES)).toBe(BLOCK);
  });

  it('keeps comments, tabs and odd spacing, appending after them', () => {
    expect(mergeBlock(SYSTEM, 'main', LINES)).toBe(SYSTEM + BLOCK);
  });

  it('adds a newline to text that lacks a final one, and says so in the BEGIN marker', () => {
    const text = '/dev/sda1 / ext4 defaults 0 1';
    const merged = mergeBlock(text, 'main', LINES);
    expect(merged).toBe(`${text}\n${formatBlock('main', LINES, true)}`);
    expect(merged.split('\n')[1]).toBe('# BEGIN hbs managed block (main): edit with hbs, not by hand; hbs added the newline above');
  });

  it('replaces an existing block in place, leaving everything before and after byte-identical', () => {
    const after = '# after the block\n/dev/sdc1\t/mnt/c  ext4 defaults 0 2';
    const text = SYSTEM + formatBlock('main', OTHER) + after;
    expect(mergeBlock(text, 'main', LINES)).toBe(SYSTEM + BLOCK + after);
  });

  it('keeps the note about the added newline when it replaces the block', () => {
    const once = mergeBlock('no newline', 'main', OTHER);
    expect(mergeBlock(once, 'main', LINES)).toBe(`no newline\n${formatBlock('main', LINES, true)}`);
  });

  it('is idempotent', () => {
    for (const start of ['', SYSTEM, 'no newline', SYSTEM + formatBlock('main', OTHER) + '# tail\n']) {
      const once = mergeBlock(start, 'main', LINES);
      expect(mergeBlock(once, 'main', LINES)).toBe(once);
    }
  });

  it('keeps blocks for different ids apart', () => {
    const two = mergeBlock(mergeBlock(SYSTEM, 'main', LINES), 'other', OTHER);
    expect(two).toBe(SYSTEM + BLOCK + formatBlock('other', OTHER));
    expect(blockText(two, 'main')).toBe(BLOCK);
    expect(blockText(two, 'other')).toBe(formatBlock('other', OTHER));
    // Replacing one leaves the other alone.
    expect(mergeBlock(two, 'main', OTHER)).toBe(SYSTEM + formatBlock('main', OTHER) + formatBlock('other', OTHER));
    expect(removeBlock(two, 'main')).toBe(SYSTEM + formatBlock('other', OTHER));
  });

  it('does not take a block for id "main2" as the block for "main"', () => {
    const text = SYSTEM + formatBlock('main2', OTHER);
    expect(hasBlock(text, 'main')).toBe(false);
    expect(mergeBlock(text, 'main', LINES)).toBe(text + BLOCK);
  });

  it('throws on a BEGIN marker without its END marker, naming the marker', () => {
    const broken = SYSTEM + BLOCK.replace('# END hbs managed block (main)\n', '') + '/dev/sdd1 /mnt/d ext4 defaults 0 2\n';
    expect(() => mergeBlock(broken, 'main', LINES)).toThrow(/# BEGIN hbs managed block \(main\)" without its END marker/);
    expect(() => removeBlock(broken, 'main')).toThrow(/without its END marker/);
    expect(() => hasBlock(broken, 'main')).toThrow(/without its END marker/);
  });

  it('finds a block in a file with CRLF line ends', () => {
    const text = (SYSTEM + BLOCK).replace(/\n/g, '\r\n');
    expect(hasBlock(text, 'main')).toBe(true);
    expect(removeBlock(text, 'main')).toBe(SYSTEM.replace(/\n/g, '\r\n'));
  });
});

describe('removeBlock', () => {
  it('gives back the original text after a merge, byte for byte', () => {
    for (const original of ['', SYSTEM, SYSTEM + formatBlock('other', OTHER), 'no final newline', `${SYSTEM}# last line, no newline`, '\n', '\n\n']) {
      expect(removeBlock(mergeBlock(original, 'main', LINES), 'main')).toBe(original);
      // Also after the block was replaced in between.
      expect(removeBlock(mergeBlock(mergeBlock(original, 'main', OTHER), 'main', LINES), 'main')).toBe(original);
    }
  });

  it('removes a block from the middle, keeping what follows', () => {
    const after = '# after\n/dev/sdc1 /mnt/c ext4 defaults 0 2\n';
    expect(removeBlock(SYSTEM + BLOCK + after, 'main')).toBe(SYSTEM + after);
  });

  it('leaves text without the block unchanged', () => {
    expect(removeBlock(SYSTEM, 'main')).toBe(SYSTEM);
    expect(hasBlock(SYSTEM, 'main')).toBe(false);
    expect(blockText(SYSTEM, 'main')).toBeUndefined();
  });
});

describe('blockLines', () => {
  it('the lines inside the block, without the markers; undefined without a block', () => {
    expect(blockLines(SYSTEM + BLOCK + '# tail\n', 'main')).toEqual(LINES);
    expect(blockLines(mergeBlock('x', 'main', LINES), 'main')).toEqual(LINES);
    expect(blockLines(formatBlock('main', []), 'main')).toEqual([]);
    expect(blockLines(SYSTEM, 'main')).toBeUndefined();
  });
});
