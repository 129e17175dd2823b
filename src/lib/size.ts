/**
 * Sizes as people type them: `100G`, `1.5TiB`, `500GB`, `1048576`.
 * K/M/G/T and KiB…TiB are powers of 1024; KB/MB/GB/TB are powers of 1000; a bare number is bytes.
 */
const UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
  T: 1024 ** 4,
  KIB: 1024,
  MIB: 1024 ** 2,
  GIB: 1024 ** 3,
  TIB: 1024 ** 4,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  TB: 1000 ** 4,
};

const SIZE_RE = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/;

export type SizeResult = { ok: true; bytes: number } | { ok: false; error: string };

export function parseSize(input: string): SizeResult {
  const text = input.trim();
  if (text === '') return { ok: false, error: 'size is empty (e.g. 100G, 500GB, 1TiB)' };
  const m = SIZE_RE.exec(text);
  if (!m) return { ok: false, error: `size "${input}" is not a number with a unit (e.g. 100G, 500GB, 1TiB)` };
  const [, num = '', rawUnit = ''] = m;
  const unit = rawUnit.toUpperCase();
  // `kb`/`Kb` are taken as KB; only the exact spellings below are accepted.
  const factor = UNITS[unit];
  if (factor === undefined) {
    return { ok: false, error: `size "${input}" has an unknown unit "${rawUnit}" (use K, M, G, T, KiB…TiB or KB…TB)` };
  }
  const bytes = Math.floor(Number(num) * factor);
  if (!Number.isFinite(bytes) || bytes <= 0) return { ok: false, error: `size "${input}" must be larger than 0` };
  if (bytes > Number.MAX_SAFE_INTEGER) return { ok: false, error: `size "${input}" is too large` };
  return { ok: true, bytes };
}

/** Human-readable binary size: 10737418240 → "10 GiB", 1610612736 → "1.5 GiB". */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  const shown = i === 0 ? String(value) : value.toFixed(value >= 100 || Number.isInteger(value) ? 0 : 1);
  return `${shown} ${units[i]}`;
}
