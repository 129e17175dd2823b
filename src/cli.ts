import { Command, CommanderError, Option } from 'commander';
import { EXIT, HbsError } from './core/errors.js';
import type { CommandIo } from './commands/shared.js';

const VERSION = '0.1.0';

/** The only place that ends the process: every error becomes a message, a hint and an exit code. */
async function main(argv: string[]): Promise<number> {
  const program = new Command('hbs')
    .description('Turn a Hetzner Storage Box into a real Linux filesystem for backups (sshfs + sparse image + ext4).')
    .version(VERSION)
    .option('--config <path>', 'config file', '/etc/hbs/config.json')
    .showHelpAfterError('(run hbs --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  /** Set by commands whose result is an exit code (status). */
  let resultCode: number = EXIT.ok;

  program
    .command('init')
    .description('set up the box, the image and the filesystem (asks for what is missing)')
    .option('--user <account>', 'Storage Box account, e.g. u123456 or u123456-sub1')
    .option('--host <host>', 'Storage Box host (default: <user>.your-storagebox.de)')
    .option('--port <port>', 'SSH/SFTP port (default: 23)')
    .option('--remote-path <dir>', 'directory on the box (default: the account home)')
    .option('--image <name>', 'image file name on the box (default: filesystem.img)')
    .option('--size <size>', 'image size: 100G, 1.5T, 500GB (K/M/G/T = 1024-based, KB/MB/GB/TB = 1000-based)')
    .option('--box-mount <dir>', 'where the box is mounted (default: /srv/backup/hetzner-backup-space; for --config /etc/hbs/NAME.json: /srv/backup/NAME/hetzner-backup-space)')
    .option('--mount-point <dir>', 'where the filesystem is mounted (default: /srv/backup/backup; for NAME.json: /srv/backup/NAME/backup)')
    .option('--ssh-key <path>', 'SSH key for the box, made if missing (default: /root/.ssh/hbs_ed25519)')
    .option('--host-key-fingerprint <SHA256:...>', 'expected host key fingerprint of the box')
    .option('--password-stdin', 'read the box password from stdin (else $HBS_BOX_PASSWORD, else a prompt)')
    .option('--fstab <path>', 'fstab to add the mount lines to (default: /etc/fstab)')
    .option('--no-fstab', 'do not touch any fstab')
    .addOption(new Option('--force', 'allow an image larger than the free space on the box'))
    .option('--adopt', 'use an image already on the box as it is (a reinstalled server): no mkfs; an encrypted (LUKS) one needs its passphrase or key file')
    .option('--steal-lock', 'take over the lock another machine left next to the image (a reinstalled server; asks first, with --yes it does not)')
    .option('--force-format', 'erase an existing image and format it anew (asks to type its name; never with --yes)')
    .option('--encrypt', 'LUKS2-encrypt the image (keys: a passphrase and/or a key file)')
    .option('--luks-passphrase-stdin', 'with --encrypt or --adopt: read the LUKS passphrase from stdin (else $HBS_LUKS_PASSPHRASE, else a prompt)')
    .option('--luks-key-file <path>', 'with --encrypt: an existing key file for a key slot; with --adopt: the key file that opens the image')
    .option('--luks-generate-key', 'with --encrypt: generate a 64-byte key file in /dev/shm for a key slot (copy it offline)')
    .option('--luks-keep-key', 'keep the generated key file on this server after init (default: overwrite and delete it)')
    .option('--luks-unattended', 'keep a key at /etc/hbs/<name>.key (0400) so mounts need no one (root here can read it)')
    .option('--luks-header-backup <path>', 'where to back up the LUKS header (default: /etc/hbs/<name>.luks-header)')
    .option('--luks-name <name>', 'device-mapper name (default: hbs-<image name>; for --config .../NAME.json: hbs-NAME-<image name>)')
    .option('--luks-pbkdf <kdf>', "with --encrypt: key derivation of the key slots: argon2id (cryptsetup's default), argon2i or pbkdf2")
    .option('--luks-iter-time <ms>', "with --encrypt: time to spend deriving each key, at least 100 ms (cryptsetup's default: 2000); less is cheaper for an attacker too")
    .option('--crypttab <path>', 'with --luks-unattended: crypttab to add the line that opens the image at boot to (default: /etc/crypttab)')
    .option('--systemd-dir <dir>', 'where to put the systemd unit that brings the stack up at boot with the lock (default: /etc/systemd/system where systemd runs)')
    .option('--no-systemd', 'no boot unit: the fstab (and crypttab) lines mount the stack at boot, without the lock')
    .option('--no-crypttab', 'with --luks-unattended: do not touch any crypttab (`hbs mount` still uses the kept key)')
    .option('-y, --yes', 'never ask; fail listing what is missing')
    .option('-n, --dry-run', 'print every change that would be made; make none')
    .option('-v, --verbose', 'show each command as it runs (secrets redacted)')
    .action(async (opts: Record<string, unknown>) => {
      const { initCommand } = await import('./commands/init/index.js');
      await initCommand({ ...opts, config: program.opts<{ config: string }>().config }, await io(opts));
    });

  // --- hbs mount / umount / status -------------------------------------------------------------
  const globalConfig = (): string => program.opts<{ config: string }>().config;
  const existingConfig = async (): Promise<string> => (await import('./lib/config-path.js')).requireConfigFile(globalConfig());

  program
    .command('mount')
    .description('bring the stack up after a reboot or a dropped link: box (sshfs) → image (loop) → ext4')
    .option('--steal-lock', 'take over the lock of another machine (asks first; with --yes it does not)')
    .option('--luks-key-file <path>', 'encrypted image: open it with this key file (else the unattended key, else a passphrase prompt)')
    .option('--luks-key-stdin', 'encrypted image: the key is stdin, byte for byte (for a passphrase: printf %s "$PW" | hbs mount --luks-key-stdin)')
    .option('-y, --yes', 'never ask')
    .option('-n, --dry-run', 'print every change that would be made; make none')
    .option('-v, --verbose', 'show each command as it runs')
    .action(async (opts: { stealLock?: boolean; yes?: boolean; dryRun?: boolean; verbose?: boolean; luksKeyFile?: string; luksKeyStdin?: boolean }) => {
      const config = await existingConfig();
      const { mountCommand } = await import('./commands/mount.js');
      await mountCommand({ ...opts, config }, await io(opts));
    });

  program
    .command('umount')
    .alias('unmount')
    .description('take the stack down top to bottom: sync, unmount ext4, detach the loop device, unmount the box')
    .option(
      '--force',
      'if the filesystem is busy, detach it lazily: it vanishes from the tree but stays in use (and the box stays mounted) until its users let go',
    )
    .option('-n, --dry-run', 'print every change that would be made; make none')
    .option('-v, --verbose', 'show each command as it runs')
    .action(async (opts: { force?: boolean; dryRun?: boolean; verbose?: boolean }) => {
      const config = await existingConfig();
      const { umountCommand } = await import('./commands/umount.js');
      await umountCommand({ ...opts, config }, await io(opts));
    });

  program
    .command('status')
    .description('show each layer; exit 0 when all is healthy, 1 when any layer is down or degraded')
    .option('--json', 'print one JSON document (keys documented in docs/status-json.md)')
    .option('--all', "every config in the config's directory (/etc/hbs/*.json), one line each; exit 0 only when all are healthy")
    .option('-v, --verbose', 'show each command as it runs')
    .action(async (opts: { json?: boolean; verbose?: boolean; all?: boolean }) => {
      if (opts.all) {
        const { statusAllCommand } = await import('./commands/status.js');
        const all = await statusAllCommand({ ...opts, config: globalConfig() }, await io(opts));
        if (opts.json) console.log(JSON.stringify(all, null, 2));
        else for (const c of all.configs) console.log(`${c.healthy ? 'ok ' : 'BAD'} ${c.config}  ${c.summary}`);
        resultCode = all.healthy ? EXIT.ok : EXIT.failed;
        return;
      }
      const config = await existingConfig();
      const [{ statusCommand }, { renderStatus }] = await Promise.all([import('./commands/status.js'), import('./ui/status-view.js')]);
      const report = await statusCommand({ ...opts, config }, await io(opts));
      console.log(opts.json ? JSON.stringify(report, null, 2) : renderStatus(report, Boolean(process.stdout.isTTY) && !('NO_COLOR' in process.env)));
      resultCode = report.healthy ? EXIT.ok : EXIT.failed;
    });
  // --- end mount / umount / status ---------------------------------------------------------------

  // --- hbs uninstall -----------------------------------------------------------------------------
  program
    .command('uninstall')
    .description('take the stack down and remove what hbs set up on this machine for the config (the image on the box stays)')
    .option('--keep-key', 'keep the SSH key pair (by default it goes when hbs made it and no other config uses it)')
    .option('--remove-box-key', "also remove hbs's key from the box's authorized_keys (only its lines; every other line stays)")
    .option('--delete-image', 'also DELETE the image and all its data on the box (asks to type its name; never with --yes alone)')
    .option('--systemd-dir <dir>', 'where the units are, if not in the directory the config records')
    .option('--force', 'if the filesystem is busy, detach it lazily (as `hbs umount --force`)')
    .option('-y, --yes', 'do not ask before removing (--delete-image still asks for the name)')
    .option('-n, --dry-run', 'print the list of removals; change nothing')
    .option('-v, --verbose', 'show each command as it runs')
    .action(async (opts: { keepKey?: boolean; removeBoxKey?: boolean; deleteImage?: boolean; systemdDir?: string; force?: boolean; yes?: boolean; dryRun?: boolean; verbose?: boolean }) => {
      const { uninstallCommand } = await import('./commands/uninstall.js');
      await uninstallCommand({ ...opts, config: globalConfig() }, await io(opts));
    });
  // --- end uninstall -----------------------------------------------------------------------------

  // --- hbs grow ----------------------------------------------------------------------------------
  program
    .command('grow')
    .description('grow the image and its ext4 filesystem (and its LUKS2 mapping when encrypted), online or offline; never shrinks')
    .option('--size <size>', 'new size: 200G (absolute) or +50G (added to the recorded size); same units as init')
    .option('--force', 'allow a size larger than the space left on the box')
    .option('--offline', 'if the kernel refuses to grow the mounted filesystem, unmount it, grow it offline and mount it again without asking; encrypted: offline from the start (the online resize would write the new inode tables as ciphertext)')
    .option('--luks-key-file <path>', 'encrypted image: the key for cryptsetup (else the unattended key, else a passphrase prompt)')
    .option('--luks-key-stdin', 'encrypted image: the key is stdin, byte for byte (for a passphrase: printf %s "$PW" | hbs grow --luks-key-stdin ...)')
    .option('-y, --yes', 'never ask (without --offline, a needed offline grow then fails; an encrypted image then needs a key flag or the unattended key)')
    .option('-n, --dry-run', 'print every change that would be made; make none (reads no key)')
    .option('-v, --verbose', 'show each command as it runs')
    .addHelpText(
      'after',
      [
        '',
        'Encrypted (LUKS2) images: mounted, it runs losetup --set-capacity, cryptsetup resize (the key on',
        'its stdin) and resize2fs on /dev/mapper/NAME; unmounted, it opens the mapping, runs e2fsck -f and',
        'resize2fs on it and closes it again. The key is checked (cryptsetup open --test-passphrase) before',
        'anything changes: a wrong key exits 2 and changes nothing. Without a key flag, the unattended key or',
        'a terminal it exits 2 at once instead of waiting. Online, the kernel writes the new inode tables:',
        'through LUKS that costs about 1.6 GiB of box space per 100 GiB added; unmounted it is about 1 MiB.',
      ].join('\n'),
    )
    .action(async (opts: { size?: string; force?: boolean; offline?: boolean; yes?: boolean; dryRun?: boolean; verbose?: boolean; luksKeyFile?: string; luksKeyStdin?: boolean }) => {
      const { growCommand } = await import('./commands/grow/index.js');
      await growCommand({ ...opts, config: globalConfig() }, await io(opts));
    });
  // --- end grow ----------------------------------------------------------------------------------

  // --- hbs backup / snapshots (docs/backup.md) ---------------------------------------------------
  const collect = (v: string, prev: string[] = []): string[] => [...prev, v];
  program
    .command('backup')
    .description('make a snapshot of the sources in the backup filesystem (rsync, hard links for what did not change); brings the stack up first')
    .option('--source <path>', 'an absolute path to back up (repeat it); the first run (and --save) keeps the sources in the config', collect)
    .option('--exclude <pattern>', 'an rsync exclude pattern (repeat it), besides the defaults', collect)
    .option('--exclude-from <file>', 'a file of rsync exclude patterns')
    .option('--keep-daily <n>', 'retention: keep the newest snapshot of each of the last N days')
    .option('--keep-weekly <n>', 'retention: … of each of the last N weeks')
    .option('--keep-monthly <n>', 'retention: … of each of the last N months')
    .option('--save', 'keep these sources, excludes and retention in the config (the first run keeps them anyway)')
    .option('--json', 'print one JSON document (for monitoring)')
    .option('--install-timer', 'instead of a backup: install a systemd service + timer that runs `hbs backup` for this config (keeps the settings)')
    .option('--on-calendar <spec>', 'with --install-timer: when (systemd OnCalendar=, default: daily)')
    .option('--systemd-dir <dir>', 'with --install-timer: where the units go (default: /etc/systemd/system)')
    .option('-n, --dry-run', 'print every change that would be made; make none')
    .option('-v, --verbose', 'show each command as it runs')
    .addHelpText('after', '\nExit codes: 0 done (also when files vanished while rsync ran: a warning), 1 failed (the snapshot stays\n.partial, `latest` unchanged), 2 bad input (nothing changed), 3 missing programs, 75 another backup runs.')
    .action(async (opts: Record<string, unknown>) => {
      const config = await existingConfig();
      const { backupCommand } = await import('./commands/backup.js');
      try {
        const result = await backupCommand({ ...opts, config }, await io(opts));
        if (opts.json) console.log(JSON.stringify(result, null, 2));
      } catch (err) {
        if (opts.json) console.log(JSON.stringify({ result: 'failed', exitCode: err instanceof HbsError ? err.exitCode : EXIT.failed, message: err instanceof Error ? err.message : String(err) }, null, 2));
        throw err;
      }
    });

  program
    .command('snapshots')
    .description('list the snapshots: time, complete or partial, files, size, what each added')
    .option('--json', 'print one JSON document')
    .option('-v, --verbose', 'show each command as it runs')
    .action(async (opts: { json?: boolean; verbose?: boolean }) => {
      const config = await existingConfig();
      const { snapshotsCommand, renderSnapshots } = await import('./commands/snapshots.js');
      const report = await snapshotsCommand({ ...opts, config }, await io(opts));
      console.log(opts.json ? JSON.stringify(report, null, 2) : renderSnapshots(report));
    });
  // --- end backup / snapshots ----------------------------------------------------------------------

  try {
    await program.parseAsync(argv);
    return resultCode;
  } catch (err) {
    return report(err);
  }
}

/**
 * What every command gets: the terminal reporter (spinners only on a terminal, not with --verbose,
 * --dry-run or --json), a prompter when stdin and stdout are a terminal, stdin, the environment.
 */
async function io(opts: { verbose?: unknown; dryRun?: unknown; json?: unknown }): Promise<CommandIo> {
  const { TerminalReporter } = await import('./ui/terminal-reporter.js');
  const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  return {
    reporter: new TerminalReporter({ spinners: !opts.verbose && !opts.dryRun && !opts.json }),
    prompter: interactive ? async () => (await import('./ui/prompter.js')).inquirerPrompter() : undefined,
    readStdin,
    readStdinBytes,
    env: process.env,
  };
}

async function readStdinBytes(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function report(err: unknown): number {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.ok;
    return EXIT.usage; // commander already printed its message
  }
  if (err instanceof HbsError) {
    process.stderr.write(`hbs: ${err.message}\n`);
    if (err.details) process.stderr.write(err.details.replace(/^/gm, '  ') + '\n');
    if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
    return err.exitCode;
  }
  const e = err as Error;
  process.stderr.write(`hbs: unexpected error: ${e?.stack ?? String(err)}\n`);
  return EXIT.failed;
}

process.exitCode = await main(process.argv);
