import { readFile } from 'node:fs/promises';

/** The capability the kernel demands for growing a mounted ext4 (EXT4_IOC_RESIZE_FS). */
const CAP_SYS_RESOURCE = 24n;

/**
 * Whether programs hbs starts can hold CAP_SYS_RESOURCE, read from `/proc/self/status`. A program
 * started by root gets the bounding set (and the inheritable set), whatever hbs's own effective set
 * is. False means the kernel will refuse an online resize for certain; undefined: cannot tell.
 */
export function capSysResourceFromStatus(status: string): boolean | undefined {
  const set = (name: string): bigint | undefined => {
    const hex = new RegExp(`^${name}:\\s*([0-9a-fA-F]+)\\s*$`, 'm').exec(status)?.[1];
    return hex === undefined ? undefined : BigInt(`0x${hex}`);
  };
  const bnd = set('CapBnd');
  const inh = set('CapInh') ?? 0n;
  if (bnd === undefined) return undefined;
  return (((bnd | inh) >> CAP_SYS_RESOURCE) & 1n) === 1n;
}

export async function canResizeOnline(): Promise<boolean | undefined> {
  try {
    return capSysResourceFromStatus(await readFile('/proc/self/status', 'utf8'));
  } catch {
    return undefined;
  }
}
