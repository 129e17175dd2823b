import type { Superblock } from './ext4.js';

/**
 * What an undo file (`resize2fs -z`) says about the resize that wrote it. e2fsprogs' undo writer
 * saves each block's old content, then the header and a copy of the superblock (written through,
 * uncached), and only then lets the block itself be written: whatever reached the filesystem is in
 * the file. The header's FINISHED flag is set when the program closed the filesystem.
 *  - blank: no header yet — nothing of the filesystem was overwritten.
 *  - interrupted: killed halfway; its superblock copy is older than the filesystem's by design, so
 *    e2undo refuses it unless forced.
 *  - finished: the program ran to its end (it may have failed); `matches`: the filesystem is still
 *    exactly as it left it (`e2undo -n` accepts the file).
 */
export type UndoLog = { state: 'blank' } | { state: 'interrupted' } | { state: 'finished'; matches: boolean };

/** `e2undo -h FILE DEVICE` (it prints the header and exits 1): finished or interrupted; undefined without a header. */
export function parseUndoHeader(stdout: string): 'finished' | 'interrupted' | undefined {
  const m = /^state:\s+0x([0-9a-f]+)\s*$/im.exec(stdout);
  if (!m) return undefined;
  return (parseInt(m[1]!, 16) & 1) === 1 ? 'finished' : 'interrupted';
}

/**
 * The filesystem as it was right before the resize, recorded by hbs next to the undo file: what
 * only a mount or an e2fsck changes (resize2fs leaves them), and the size it had.
 */
export interface UndoMark {
  blockCount: number;
  mountCount?: number;
  lastMount?: string;
  lastChecked?: string;
}

export function undoMarkOf(sb: Superblock): UndoMark {
  return { blockCount: sb.blockCount, ...sb.history };
}

export function parseUndoMark(text: string | undefined): UndoMark | undefined {
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as Partial<UndoMark>;
    return typeof v.blockCount === 'number' ? (v as UndoMark) : undefined;
  } catch {
    return undefined;
  }
}

/** What to do with an undo file found before anything touches the filesystem. */
export type UndoDecision =
  | { kind: 'discard'; why: string }
  | { kind: 'replay'; force: boolean; why: string }
  | { kind: 'set-aside'; why: string };

/**
 * Decides from the undo file, hbs's mark of the filesystem before the resize, and the superblock
 * now (undefined when it cannot be read: a resize killed halfway may leave it so).
 */
export function decideUndo(log: UndoLog, mark: UndoMark | undefined, sb: Superblock | undefined): UndoDecision {
  switch (log.state) {
    case 'blank':
      return { kind: 'discard', why: 'resize2fs had not overwritten anything yet' };
    case 'finished':
      if (mark && sb && sb.blockCount !== mark.blockCount) return { kind: 'discard', why: 'the resize had finished; only its undo file was left' };
      if (log.matches) return { kind: 'replay', force: false, why: 'resize2fs stopped before it finished the resize: putting back what it had overwritten' };
      return { kind: 'set-aside', why: 'the filesystem has changed since that resize ended: its undo file no longer applies' };
    case 'interrupted': {
      if (!mark) return { kind: 'set-aside', why: 'nothing records the filesystem as it was before that resize, so replaying its undo file cannot be known to be safe' };
      if (!sb) return { kind: 'replay', force: true, why: 'the resize was killed halfway: putting back what it had overwritten' };
      const same = sb.history?.mountCount === mark.mountCount && sb.history?.lastMount === mark.lastMount && sb.history?.lastChecked === mark.lastChecked;
      if (same) return { kind: 'replay', force: true, why: 'the resize was killed halfway: putting back what it had overwritten' };
      return { kind: 'set-aside', why: 'the filesystem was mounted or checked after that resize was killed: replaying its undo file now would destroy what changed since' };
    }
  }
}

/** The e2undo that puts the filesystem back, for a decision to replay. */
export function e2undoArgv(d: Extract<UndoDecision, { kind: 'replay' }>, undoFile: string, device: string): string[] {
  return ['e2undo', ...(d.force ? ['-f'] : []), undoFile, device];
}
