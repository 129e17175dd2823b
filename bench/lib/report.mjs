// The Markdown printed at the end of `npm run bench` (also stored in latest.json as `markdown`).
import { fmtBytes, fmtS, fmtX } from './util.mjs';
import { renderBackup, renderHuge, summaryRows } from '../backup.mjs';

const row = (cells) => `| ${cells.join(' | ')} |`;
const head = (cells) => [row(cells), row(cells.map(() => '---'))];
const mibs = (r) => (r ? `${r.mibPerS.toFixed(1)} MiB/s` : 'n/a');
const ok = (b) => (b ? 'met' : '**missed**');

/** "1.9 s" or "> 120 s" when the run hit its time limit. */
function took(side) {
  return side.timedOut ? `> ${fmtS(side.seconds)}` : fmtS(side.seconds);
}

/** How many times faster hbs was; "> N×" when the other side hit its limit. */
function faster(hbs, other) {
  const x = other.seconds / hbs.seconds;
  return `${other.timedOut ? '> ' : ''}${fmtX(x)}`;
}

export function render(r) {
  const out = [];
  const m = r.machine;
  out.push(`## hbs benchmarks, ${r.started.slice(0, 10)}${r.settings.quick ? ' (BENCH_QUICK: smoke sizes, not the reference figures)' : ''}`);
  out.push('');
  out.push(`Machine: ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, ${m.os}, kernel ${m.kernel}${m.virt && m.virt !== 'none' ? ` (${m.virt})` : ''}; ` +
    `node ${m.node}, sshfs ${m.sshfs}, OpenSSH ${m.openssh}, e2fsprogs ${m.e2fsprogs}, rsync ${m.rsync}.`);
  if (r.relay) out.push(`Box: the local stand-in (sshd on 127.0.0.1), reached through the relay: ${r.relay.delayMs} ms each way, ${r.relay.rateMbit} Mbit/s, for both sides of every comparison.`);
  out.push('');

  // ---- summary -------------------------------------------------------------------------------
  out.push(...head(['what', 'hbs', 'compared with', 'ratio', 'target']));
  const b = r.bytes;
  if (b) {
    out.push(row([
      `bytes on the box, ${b.imageGiB} GiB image, after init + ${b.idleS} s idle`,
      `${fmtBytes(b.hbs.afterIdle)} (idle growth ${fmtBytes(b.hbs.growthWhileIdle)})`,
      `${fmtBytes(b.manual.afterIdle)}: sparse file + \`mkfs.ext4\` defaults + mount`,
      `${fmtX(b.ratio)} less`,
      `≤ 8 MiB, no idle growth, ≥ 60×: ${ok(b.hbs.afterIdle <= b.targets.hbsMaxBytes && b.hbs.growthWhileIdle <= 0 && b.ratio >= b.targets.ratioMin)}`,
    ]));
  }
  const g = r.grow;
  if (g) {
    out.push(row([`bytes newly allocated by grow ${g.fromGiB} → ${g.toGiB} GiB`, fmtBytes(g.newlyAllocated), `\`${g.method}\``, '', '']));
    out.push(row([`… including the first ${g.idleS} s mounted after it`, fmtBytes(g.newlyAllocatedInclIdle), '', '', '']));
  }
  const f = r.files;
  if (f) {
    out.push(row([`${f.files} small files (${fmtBytes(f.bytes)}), first copy + sync`, `${took(f.full.hbs)} (\`rsync -a\`)`, `${took(f.full.plain)}: plain sshfs, \`rsync -rlt\``, `${faster(f.full.hbs, f.full.plain)} faster`, '']));
    out.push(row([`incremental, ${f.changed} changed, cold caches`, took(f.incremental.hbs), took(f.incremental.plain), `${faster(f.incremental.hbs, f.incremental.plain)} faster`, '']));
    out.push(row(['owners and groups kept', `${f.owners.hbs.kept} of ${f.owners.hbs.checked} files`, `${f.owners.plain.kept} of ${f.owners.plain.checked} files checked`, '', '']));
  }
  const l = r.large;
  if (l) {
    const h = l.headline;
    out.push(row([`${h.mib} MiB sequential write + sync`, `${fmtS(h.hbs.seconds)} (${mibs(h.hbs)})`, `${fmtS(h.plain.seconds)} (${mibs(h.plain)}): plain sshfs`, `${fmtX(h.ratio)} the throughput`, '']));
  }
  for (const x of summaryRows(r)) out.push(row(x));
  const s = r.startup;
  if (s) {
    const base = s.commands.find((c) => c.id === 'node');
    for (const c of s.commands.filter((x) => x.id !== 'node')) {
      out.push(row([`start-up: \`${c.label}\``, `${c.medianMs.toFixed(0)} ms`, `\`node -e 0\`: ${base.medianMs.toFixed(0)} ms`, fmtX(c.ratio), '']));
    }
  }

  // ---- details -------------------------------------------------------------------------------
  if (b) {
    out.push('', `### Bytes on the box (allocated blocks of the image file, as the box's quota counts them)`, '');
    out.push(...head(['moment', 'hbs init', 'manual procedure']));
    out.push(row(['after init / after `mkfs.ext4`', fmtBytes(b.hbs.afterInit), `${fmtBytes(b.manual.afterMkfs)} (mkfs took ${fmtS(b.manual.mkfsS)})`]));
    out.push(row(['after the first mount', '(init mounts it)', fmtBytes(b.manual.afterMount)]));
    for (const x of b.samples) out.push(row([`${x.s} s idle${x.synced ? ', synced' : ''}`, fmtBytes(x.hbs), fmtBytes(x.manual)]));
    out.push(row(['after unmounting', '', fmtBytes(b.manual.afterUmount)]));
    out.push(row(['sent over the link (init / mkfs + mount)', fmtBytes(b.hbs.linkBytesInit), fmtBytes(b.manual.linkBytesMkfsMount)]));
    out.push(row(['time (init through the relay / mkfs)', fmtS(b.hbs.initS), fmtS(b.manual.mkfsS)]));
  }
  if (g) {
    out.push('', `### Grow ${g.fromGiB} → ${g.toGiB} GiB`, '');
    out.push(`\`${g.method}\`: ${fmtS(g.seconds)}; ${fmtBytes(g.linkBytes)} sent over the link.`, '');
    out.push(...head(['moment', 'allocated on the box', 'block groups with inode table marked zeroed']));
    out.push(row(['before', fmtBytes(g.before), '']));
    out.push(row(['after the grow (mounted again)', fmtBytes(g.afterGrow), g.groups ? `${g.groups.afterGrow.zeroed} of ${g.groups.afterGrow.groups}` : '']));
    for (const x of g.samples ?? []) out.push(row([`${x.s} s mounted`, fmtBytes(x.bytes), '']));
    out.push(row([`${g.idleS} s mounted, synced`, fmtBytes(g.afterIdle), g.groups ? `${g.groups.afterIdle.zeroed} of ${g.groups.afterIdle.groups}` : '']));
  }
  if (f) {
    out.push('', '### Small files', '');
    out.push(`${f.files} files of 1–16 KiB in nested directories, ${f.symlinks} symlinks, ${f.hardlinks} hard links; plain-sshfs runs stop after ${f.timeoutS} s.` +
      (f.plainSeededOnBox ? ' The plain-sshfs first copy did not finish, so its remainder was copied on the box side before the incremental run.' : ''));
    for (const [k, side] of [['hbs full', f.full.hbs], ['plain full', f.full.plain], ['hbs incremental', f.incremental.hbs], ['plain incremental', f.incremental.plain]]) {
      if (!side.timedOut && side.exitCode !== 0) out.push(`- ${k}: rsync exit ${side.exitCode}: ${side.stderrTail}`);
    }
  }
  if (l) {
    const sizes = [l.variantMiB && `${l.variantMiB} MiB through the relay, link limit ${l.linkLimitMiBPerS.toFixed(1)} MiB/s`, l.loopbackMiB && `${l.loopbackMiB} MiB straight to sshd on loopback`].filter(Boolean).join('; ');
    out.push('', `### Large files: variants (${sizes}), ${l.repeat > 1 ? `median of ${l.repeat} runs` : 'one run each'}`, '');
    const cols = ['variant'];
    if (l.variantMiB) cols.push('relay', 'vs plain', 'vs hbs now');
    if (l.loopbackMiB) cols.push('loopback', 'vs plain', 'vs hbs now');
    out.push(...head(cols));
    const x = (v) => (v === undefined ? '' : fmtX(v));
    for (const v of l.variants) {
      const cells = [v.label];
      if (l.variantMiB) cells.push(mibs(v.relay), x(v.relay?.vsPlain), x(v.relay?.vsHbs));
      if (l.loopbackMiB) cells.push(mibs(v.loopback), x(v.loopback?.vsPlain), x(v.loopback?.vsHbs));
      out.push(row(cells));
    }
  }
  if (r.backup) out.push(...renderBackup(r.backup, m));
  if (r.huge) out.push(...renderHuge(r.huge));
  if (s) {
    out.push('', `### Start-up (median of ${s.runs} interleaved runs)`, '');
    if (!s.statusExists) out.push('`hbs status` answered "unknown command": `hbs init --help` was measured in its place.', '');
    out.push(...head(['command', 'median', 'ratio to `node -e 0`']));
    for (const c of s.commands) out.push(row([`\`${c.label}\``, `${c.medianMs.toFixed(1)} ms`, fmtX(c.ratio)]));
  }
  for (const [name, msg] of Object.entries(r.errors ?? {})) out.push('', `**Section ${name} failed:** ${msg.split('\n')[0]}`);
  const loads = ['startup', 'bytes', 'files', 'large', 'backup', 'grow', 'huge'].filter((k) => r[k]?.loadAvg1).map((k) => `${k} ${r[k].loadAvg1.before.toFixed(1)}→${r[k].loadAvg1.after.toFixed(1)}`);
  if (loads.length) out.push('', `1-minute load average around each section (${m.cores} cores; other work on the machine skews timings): ${loads.join(', ')}.`);
  out.push('', `Total: ${fmtS(r.seconds ?? 0)}.`);
  return out.join('\n');
}
