import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatBlock } from '../../../src/core/block.js';
import { escapeField, formatEntry, type FstabEntry } from '../../../src/lib/fstab.js';

const ENTRIES: FstabEntry[] = [
  { source: 'u1@u1.your-storagebox.de:', target: '/srv/box', fstype: 'fuse.sshfs', options: ['_netdev', 'port=23', 'IdentityFile=/root/.ssh/k'] },
  { source: '/srv/box/filesystem.img', target: '/srv/backup', fstype: 'ext4', options: ['loop', 'nofail'], dump: 0, pass: 2 },
];

const BLOCK = [
  '# BEGIN hbs managed block (main): edit with hbs, not by hand',
  'u1@u1.your-storagebox.de: /srv/box fuse.sshfs _netdev,port=23,IdentityFile=/root/.ssh/k 0 0',
  '/srv/box/filesystem.img /srv/backup ext4 loop,nofail 0 2',
  '# END hbs managed block (main)',
  '',
].join('\n');

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

  it('formats lines for a block with markers naming the id (core/block.ts)', () => {
    expect(formatBlock('main', ENTRIES.map(formatEntry))).toBe(BLOCK);
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
    const text = '# comments before\n\n' + formatBlock('main', [formatEntry({ source, target, fstype: 'none', options: ['bind', 'nofail'] })]);
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
    const text = formatBlock('main', [formatEntry({ source: image, target, fstype: 'ext4', options: ['loop', 'nofail', 'x-hbs.note=a b'] })]);
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
