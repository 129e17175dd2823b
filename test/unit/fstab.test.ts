import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockText, escapeField, formatBlock, formatEntry, hasBlock, mergeBlock, removeBlock, type FstabEntry } from '../../src/lib/fstab.js';

const ENTRIES: FstabEntry[] = [
  { source: 'u1@u1.your-storagebox.de:', target: '/srv/box', fstype: 'fuse.sshfs', options: ['_netdev', 'port=23', 'IdentityFile=/root/.ssh/k'] },
  { source: '/srv/box/filesystem.img', target: '/srv/backup', fstype: 'ext4', options: ['loop', 'nofail'], dump: 0, pass: 2 },
];
const OTHER: FstabEntry[] = [{ source: '/dev/sdb1', target: '/mnt/data', fstype: 'xfs', options: ['defaults'] }];

const BLOCK = [
  '# BEGIN hbs managed block (main): edit with hbs, not by hand',
  'u1@u1.your-storagebox.de: /srv/box fuse.sshfs _netdev,port=23,IdentityFile=/root/.ssh/k 0 0',
  '/srv/box/filesystem.img /srv/backup ext4 loop,nofail 0 2',
  '# END hbs managed block (main)',
  '',
].join('\n');

/** A hand-kept fstab: comments, tabs, odd spacing. */
const SYSTEM = '# /etc/fstab: static file system information.\n#\nUUID=1234-ABCD\t/boot/efi\tvfat\tumask=0077\t0\t1\n/dev/sda1   /     ext4    errors=remount-ro 0       1\n\n  # indented comment  \n';

describe('escapeField / formatEntry', () => {
  it('escapes space, tab, newline and backslash as octal', () => {
    expect(escapeField('a b')).toBe('a\\040b');
    expect(escapeField('a\tb')).toBe('a\\011b');
    expect(escapeField('a\\b')).toBe('a\\134b');
    expect(escapeField('a\nb')).toBe('a\\012b');
    expect(escapeField('/srv/My Backup\\x')).toBe('/srv/My\\040Backup\\134x');
    expect(escapeField('/plain/path,x=1')).toBe('/plain/path,x=1');
  });

  it('formats six fields, escaping source, target and each option', () => {
    expect(formatEntry({ source: '/a b/img', target: '/mnt/x y', fstype: 'ext4', options: ['loop', 'x-opt=a b'], pass: 2 })).toBe(
      '/a\\040b/img /mnt/x\\040y ext4 loop,x-opt=a\\040b 0 2',
    );
  });

  it('formats a block with markers naming the id', () => {
    expect(formatBlock('main', ENTRIES)).toBe(BLOCK);
  });
});

describe('mergeBlock', () => {
  it('appends the block to empty text', () => {
    expect(mergeBlock('', 'main', ENTRIES)).toBe(BLOCK);
  });

  it('keeps comments, tabs and odd spacing, appending after them', () => {
    expect(mergeBlock(SYSTEM, 'main', ENTRIES)).toBe(SYSTEM + BLOCK);
  });

  it('only adds a newline when the text lacks a final one', () => {
    const text = '/dev/sda1 / ext4 defaults 0 1';
    expect(mergeBlock(text, 'main', ENTRIES)).toBe(text + '\n' + BLOCK);
  });

  it('replaces an existing block in place, leaving everything before and after byte-identical', () => {
    const before = SYSTEM;
    const after = '# after the block\n/dev/sdc1\t/mnt/c  ext4 defaults 0 2';
    const text = before + formatBlock('main', OTHER) + after;
    const merged = mergeBlock(text, 'main', ENTRIES);
    expect(merged).toBe(before + BLOCK + after);
  });

  it('is idempotent', () => {
    for (const start of ['', SYSTEM, 'no newline', SYSTEM + formatBlock('main', OTHER) + '# tail\n']) {
      const once = mergeBlock(start, 'main', ENTRIES);
      expect(mergeBlock(once, 'main', ENTRIES)).toBe(once);
    }
  });

  it('keeps blocks for different ids apart', () => {
    const two = mergeBlock(mergeBlock(SYSTEM, 'main', ENTRIES), 'other', OTHER);
    expect(two).toBe(SYSTEM + BLOCK + formatBlock('other', OTHER));
    expect(blockText(two, 'main')).toBe(BLOCK);
    expect(blockText(two, 'other')).toBe(formatBlock('other', OTHER));
    // Replacing one leaves the other alone.
    const changed = mergeBlock(two, 'main', OTHER);
    expect(changed).toBe(SYSTEM + formatBlock('main', OTHER) + formatBlock('other', OTHER));
    expect(removeBlock(two, 'main')).toBe(SYSTEM + formatBlock('other', OTHER));
  });

  it('does not take a block for id "main2" as the block for "main"', () => {
    const text = SYSTEM + formatBlock('main2', OTHER);
    expect(hasBlock(text, 'main')).toBe(false);
    expect(mergeBlock(text, 'main', ENTRIES)).toBe(text + BLOCK);
  });

  it('throws on a BEGIN marker without its END marker, naming the marker', () => {
    const broken = SYSTEM + BLOCK.replace('# END hbs managed block (main)\n', '') + '/dev/sdd1 /mnt/d ext4 defaults 0 2\n';
    expect(() => mergeBlock(broken, 'main', ENTRIES)).toThrow(/# BEGIN hbs managed block \(main\)" without its END marker/);
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
  it('restores the original text after a merge', () => {
    for (const original of ['', SYSTEM, SYSTEM + formatBlock('other', OTHER)]) {
      expect(removeBlock(mergeBlock(original, 'main', ENTRIES), 'main')).toBe(original);
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

describe('findmnt --verify on a block made by formatEntry', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hbs fstab '));
    mkdirSync(join(dir, 'source dir'));
    mkdirSync(join(dir, 'target dir'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs findmnt --verify on a tab file; returns exit code and everything it printed. */
  function verify(text: string): { code: number; out: string } {
    const file = join(dir, 'tab');
    writeFileSync(file, text);
    const r = spawnSync('findmnt', ['--verify', '--verbose', '--tab-file', file], { encoding: 'utf8' });
    return { code: r.status ?? -1, out: r.stdout + r.stderr };
  }

  it('parses a path with spaces with 0 parse errors and reads back the unescaped target', () => {
    const source = join(dir, 'source dir');
    const target = join(dir, 'target dir');
    expect(target).toContain(' ');
    const text = '# comments before\n\n' + formatBlock('main', [{ source, target, fstype: 'none', options: ['bind', 'nofail'] }]);
    const r = verify(text);
    expect(r.out).not.toMatch(/parse error/);
    expect(r.out).toMatch(/Success, no errors/);
    // --verbose lists the target, unescaped, and that it exists.
    expect(r.out).toContain(`${target}\n   [ ] target exists`);
    expect(r.code).toBe(0);
  });

  it('parses an image entry whose source and options contain spaces with 0 parse errors and 0 errors', () => {
    const image = join(dir, 'source dir', 'file system.img');
    writeFileSync(image, '');
    const target = join(dir, 'target dir');
    const text = formatBlock('main', [{ source: image, target, fstype: 'ext4', options: ['loop', 'nofail', 'x-hbs.note=a b'] }]);
    expect(text).toContain('file\\040system.img');
    const r = verify(text);
    expect(r.out).toMatch(/^0 parse errors, 0 errors, \d+ warnings?$/m);
    expect(r.out).toContain('userspace options: loop,nofail,x-hbs.note=a b');
    expect(r.out).toContain(`source ${image} is a directory or regular file`);
    expect(r.out).toContain(`${target}\n   [ ] target exists`);
  });

  it('(control) reports a parse error for the same line without escaping', () => {
    const source = join(dir, 'source dir');
    const target = join(dir, 'target dir');
    const r = verify(`${source} ${target} none bind,nofail 0 0\n`);
    expect(r.out).toMatch(/1 parse error\b/);
    expect(r.code).not.toBe(0);
  });
});
