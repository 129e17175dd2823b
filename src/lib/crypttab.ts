/**
 * The crypttab line hbs keeps (in the same managed block as fstab) so that boot opens an encrypted
 * image with the unattended key.
 *
 * What was checked, on Debian 12 (systemd 252, cryptsetup 2.6.1):
 * - systemd-cryptsetup-generator, run on such a line (SYSTEMD_CRYPTTAB=FILE), writes
 *   `RequiresMountsFor=<image path>` and `RequiresMountsFor=<key file>` into
 *   systemd-cryptsetup@NAME.service whenever the source is not a device path: the mapping waits for
 *   the sshfs mount of the box (its fstab line) by itself. `x-systemd.requires-mounts-for=` is not a
 *   crypttab option there: systemd-cryptsetup logs "Encountered unknown /etc/crypttab option" for it.
 * - `_netdev` (crypttab(5) of systemd): the service is ordered after remote-fs-pre.target and wanted
 *   by remote-cryptsetup.target (enabled by Debian's preset) instead of cryptsetup.target, so it is not
 *   tried before the network; the fstab line of the filesystem carries `_netdev` too, as the man page
 *   asks, else local-fs.target would wait for it. `nofail`: the boot goes on when the box is away.
 *   `headless=true`: never ask for a passphrase at the console when the key file fails (nobody is
 *   there); `hbs mount` is the way in then.
 * - A regular file as the source: libcryptsetup attaches a loop device itself (auto-clear, so it goes
 *   away when the mapping is closed), for systemd-cryptsetup as for `cryptsetup open`.
 * - systemd 252 splits crypttab fields on white space and decodes neither quotes nor octal escapes
 *   (the generator turned `my\040box` into a literal `\040`), so paths with white space, backslashes
 *   or quotes cannot be written there: hbs refuses them.
 * - Debian's own cryptdisks_start (package cryptsetup, not needed with systemd) reads the same file:
 *   it treats a regular-file source as it is, opens it with `cryptsetup open` (loop attached by
 *   libcryptsetup), warns "ignoring unknown option" for _netdev, nofail and headless, and warns when
 *   the key file is not root-owned with no group/other bits (0400 root passes). cryptsetup-initramfs
 *   only takes the root/resume devices and lines marked `initramfs`: it leaves this line alone, which
 *   is right, as the box is not reachable from the initramfs.
 */

export interface CrypttabEntry {
  name: string;
  source: string;
  keyFile: string;
  options: readonly string[];
}

/** The options hbs writes; see the notes above for why each is there. */
export const CRYPTTAB_OPTIONS = ['luks', '_netdev', 'nofail', 'headless=true'] as const;

const UNSAFE = /[\s\\'"]/;

/** Fields crypttab cannot carry (systemd reads them unescaped): a message naming each, or [] when fine. */
export function crypttabProblems(e: CrypttabEntry): string[] {
  const fields: [string, string][] = [
    ['mapping name', e.name],
    ['image path', e.source],
    ['key file', e.keyFile],
  ];
  return fields
    .filter(([, v]) => v === '' || UNSAFE.test(v) || v.startsWith('#'))
    .map(([what, v]) => `${what} "${v}" has white space, a backslash, a quote or a leading # (crypttab cannot hold it)`);
}

export function formatCrypttabEntry(e: CrypttabEntry): string {
  return [e.name, e.source, e.keyFile, e.options.join(',')].join(' ');
}

/** One crypttab line split into its four fields (comments and blank lines give undefined). */
export function parseCrypttabLine(line: string): CrypttabEntry | undefined {
  const t = line.trim();
  if (t === '' || t.startsWith('#')) return undefined;
  const [name = '', source = '', keyFile = 'none', options = ''] = t.split(/\s+/);
  return { name, source, keyFile, options: options === '' ? [] : options.split(',') };
}
