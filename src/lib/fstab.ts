/** fstab lines (the managed block around them is core/block.ts). */
export interface FstabEntry {
  source: string;
  target: string;
  fstype: string;
  options: readonly string[];
  dump?: number;
  pass?: number;
}

/** fstab fields escape white space and backslashes as octal (fstab(5)). */
export function escapeField(value: string): string {
  return value.replace(/[\\ \t\n]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

export function formatEntry(e: FstabEntry): string {
  return [
    escapeField(e.source),
    escapeField(e.target),
    e.fstype,
    e.options.map(escapeField).join(','),
    String(e.dump ?? 0),
    String(e.pass ?? 0),
  ].join(' ');
}
