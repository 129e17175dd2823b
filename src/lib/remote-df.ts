export interface BoxSpace {
  totalBytes: number;
  freeBytes: number;
}

/**
 * The figures of sftp's `df` (OpenSSH prints them in KiB under a "Size Used Avail (root)
 * %Capacity" header); undefined when there are none (a server without the statvfs extension).
 */
export function parseSftpDf(stdout: string): BoxSpace | undefined {
  const lines = stdout.split('\n');
  const header = lines.findIndex((l) => /^\s*Size\s+Used\s+Avail\b/.test(l));
  if (header < 0) return undefined;
  const [size, , avail] = (lines[header + 1] ?? '').trim().split(/\s+/).map(Number);
  if (size === undefined || avail === undefined || !Number.isFinite(size) || !Number.isFinite(avail)) return undefined;
  return { totalBytes: size * 1024, freeBytes: avail * 1024 };
}

