import { Chalk } from 'chalk';
import type { StatusReport } from '../lib/status-report.js';
import { formatSize } from '../lib/size.js';
import { BOX_READAHEAD_KB } from '../lib/stack.js';

const size = (n: number | null): string => (n === null ? '?' : formatSize(n));

/** One line per layer, readable at a glance. */
export function renderStatus(r: StatusReport, colour: boolean): string {
  const c = new Chalk({ level: colour ? 1 : 0 });
  const mark = (ok: boolean, word: string): string => (ok ? c.green(word.padEnd(8)) : c.red(word.padEnd(8)));
  const lines = [
    `${'box'.padEnd(11)} ${mark(r.box.state === 'up', r.box.state)} ${r.box.detail}` +
      (r.box.totalBytes !== null ? ` — ${size(r.box.freeBytes)} free of ${size(r.box.totalBytes)} (${size(r.box.usedBytes)} used)` : '') +
      (r.box.state !== 'up' ? `; box ${r.box.reachable ? 'reachable' : 'NOT reachable'} over SFTP` : '') +
      (r.box.readAheadKb !== null && r.box.readAheadKb < BOX_READAHEAD_KB
        ? c.yellow(`; readahead ${r.box.readAheadKb} KiB (slow restores; \`hbs umount\` and \`hbs mount\` raise it to ${BOX_READAHEAD_KB} KiB)`)
        : ''),
    `${'image'.padEnd(11)} ${mark(r.image.exists, r.image.exists ? 'ok' : r.box.state === 'up' ? 'missing' : 'unknown')} ${r.image.path}` +
      (r.image.exists
        ? ` — ${size(r.image.sizeBytes)} apparent, ` +
          (r.image.allocatedBytes === null ? 'allocated size unknown (needs ssh on port 23)' : `${size(r.image.allocatedBytes)} allocated on the box`)
        : '') +
      (r.image.loopDevices.length ? `; attached as ${r.image.loopDevices.join(', ')}` : ''),
    `${'filesystem'.padEnd(11)} ${mark(r.filesystem.state === 'up', r.filesystem.state)} ${r.filesystem.detail}` +
      (r.filesystem.sizeBytes !== null ? ` — ${size(r.filesystem.sizeBytes)}, ${size(r.filesystem.usedBytes)} used, ${size(r.filesystem.freeBytes)} free` : '') +
      (r.filesystem.loopDirectIo === true ? c.yellow('; loop device on direct I/O (every read is a round trip to the box: slow restores; `hbs mount` switches it off)') : ''),
    ...(r.filesystem.errors && (r.filesystem.errors.count > 0 || r.filesystem.errors.kernel.lines > 0 || r.filesystem.readOnly)
      ? [`${'errors'.padEnd(11)} ${mark(false, 'FAILED')} ${writeErrors(r)}`]
      : []),
    ...(r.space
      ? [
          `${'space'.padEnd(11)} ${mark(r.space.ok, r.space.ok ? 'ok' : 'SHORT')} ` +
            `ext4 may still write ${size(r.space.mayStillNeedBytes)} the box does not hold yet; the box has ${size(r.space.boxFreeBytes)} free` +
            (r.space.ok ? '' : c.red(` — ${size(r.space.shortBytes)} short: writes will fail before ext4 is full (free space on the box, or snapshots there)`)),
        ]
      : []),
    `${'fstab'.padEnd(11)} ${mark(r.fstab.state === 'ok' || r.fstab.state === 'disabled', r.fstab.state)} ${r.fstab.detail}`,
    `${'boot'.padEnd(11)} ${mark(r.boot.state !== 'missing', r.boot.state)} ` +
      (r.boot.state === 'fstab' ? 'fstab mounts it at boot (no lock until `hbs mount`)' : `${r.boot.unit ?? ''} ${r.boot.state === 'enabled' ? 'enabled' : `NOT enabled (${r.boot.path ?? ''} missing; re-run \`hbs init\`)`}`),
    `${'lock'.padEnd(11)} ${mark(r.lock.state === 'ours', r.lock.state)} ` +
      (r.lock.hostname ? `${r.lock.hostname} (pid ${r.lock.pid}) since ${r.lock.time}` : r.lock.state === 'free' ? 'no machine holds the image' : 'box not readable'),
    ...(r.encryption
      ? [
          `${'encryption'.padEnd(11)} ${mark(r.encryption.state === 'open', r.encryption.state)} ${r.encryption.detail}` +
            (r.encryption.cipher ? `; ${r.encryption.cipher}` : '') +
            (r.encryption.keySlots ? `; key slots in use: ${r.encryption.keySlots.join(', ')}` : '') +
            `; header backup ${r.encryption.headerBackup.path} ${r.encryption.headerBackup.present ? 'present' : 'MISSING'}` +
            (r.encryption.crypttab ? `; boot line in ${r.encryption.crypttab.path} ${r.encryption.crypttab.present ? 'present' : 'MISSING'}` : ''),
        ]
      : []),
    ...(r.lastBackup !== undefined
      ? [
          `${'backup'.padEnd(11)} ` +
            (r.lastBackup === null
              ? `${c.dim('none'.padEnd(8))} no \`hbs backup\` run recorded yet`
              : `${mark(r.lastBackup.result !== 'failed', r.lastBackup.result)} last run ${r.lastBackup.time}` +
                (r.lastBackup.snapshot ? `: snapshot ${r.lastBackup.snapshot}` : '') +
                (r.lastBackup.message ? ` — ${r.lastBackup.message}` : '')),
        ]
      : []),
    '',
    r.healthy ? c.green('healthy') : c.red('NOT healthy') + nextStep(r),
  ];
  return lines.join('\n');
}

/** Failed writes: how many, when, and the likely cause. */
function writeErrors(r: StatusReport): string {
  const e = r.filesystem.errors!;
  const cause = { 'box-full': 'the box is full (its free space ran out under the image)', 'link-dropped': 'the link to the box dropped', 'io-errors': 'I/O errors under the filesystem' }[e.cause ?? 'io-errors'];
  const when = e.last?.time ?? e.first?.time;
  const what = [
    ...(e.count ? [`${e.count} error${e.count === 1 ? '' : 's'} in the superblock${when ? ` (last ${when})` : ''}`] : []),
    ...(e.kernel.lines ? [`the kernel logged ${e.kernel.lines} failed write${e.kernel.lines === 1 ? '' : 's'} since the mount (last: ${e.kernel.last ?? ''})`] : []),
    ...(r.filesystem.readOnly ? ['mounted read-only'] : []),
  ];
  return `${what.join('; ')}: ${cause}. Data written since may be lost; \`hbs umount\` then \`hbs mount\` runs e2fsck`;
}

/** What to run about an unhealthy stack, when hbs can do it. */
function nextStep(r: StatusReport): string {
  if (r.filesystem.state === 'broken' || r.box.state === 'broken') return ' — `hbs mount` repairs a broken stack';
  if (r.filesystem.state === 'down') return ' — `hbs mount` brings it up';
  // Up, but brought up by fstab/crypttab at boot: no lock on the box yet (and buffered loop I/O).
  if (r.filesystem.state === 'up' && r.lock.state === 'free') return ' — `hbs mount` takes the lock (a stack that came up at boot has none)';
  return '';
}
