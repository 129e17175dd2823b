// Host side of the VM scenarios: a share directory for the guest's state, and the `name=value`
// lines the guest prints (test/vm/guest.mjs) read back.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { afterAll, beforeAll } from 'vitest';
import { vmAvailable } from './run-in-vm.js';

/** The guest's `name=value` lines as a record (later lines win). */
export function fields(out: string): Record<string, string> {
  const f: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const m = /^([\w.]+)=(.*)$/.exec(line);
    if (m) f[m[1]!] = m[2]!;
  }
  return f;
}

/** For a describe block: fails loudly (never skips) when no VM can start here. */
export function requireVm(): void {
  beforeAll(async () => {
    const check = await vmAvailable();
    if (!check.ok) throw new Error(`cannot start a VM here:\n${check.message}`);
  });
}

/**
 * requireVm, and a share directory under /var/tmp made before the tests (mode: e.g. 0755 when the
 * stand-in box's account must reach its home inside) and removed afterwards. Returns its path getter.
 */
export function useVmShare(prefix: string, mode?: number): () => string {
  let share = '';
  requireVm();
  beforeAll(async () => {
    share = await mkdtemp(`/var/tmp/${prefix}`);
    if (mode !== undefined) await chmod(share, mode);
  });
  afterAll(async () => {
    if (share) await rm(share, { recursive: true, force: true });
  });
  return () => share;
}
