// Smoke test of the VM harness (test/vm/run-in-vm): it boots, brings back exit codes and output,
// runs LUKS (format, open, mkfs, mount, online grow) on an image kept in a shared directory,
// finds that image intact after a second boot, and fails loudly (never silently) when a VM cannot
// start, boot, or finish in time. `npm run test:vm`; needs the packages scripts/test --deps
// installs (it fails, naming them, when they are missing).
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeVmResult, RUN_IN_VM, runInVm, vmAvailable, type VmResult } from './run-in-vm.js';

const VM_TIMEOUT_MS = 180_000;
const KEY = 'correct horse battery staple';

let share = '';
const times: string[] = [];
// What boot 1 left, for boot 2 to find.
let bootOne: { bootId: string; sizeAfter: number } | undefined;

function record(name: string, r: VmResult): void {
  const line =
    `${name}: qemu start to exit ${r.totalMs} ms (guest: ${r.guestStages}; ` +
    `command ${String(r.guestCommandStartS)}..${String(r.guestCommandEndS)} s)`;
  times.push(line);
  console.log(`[vm] ${line}`);
}

function field(out: string, name: string): string {
  const m = new RegExp(`^${name}=(.*)$`, 'm').exec(out);
  if (!m) throw new Error(`no ${name}= line in:\n${out}`);
  return m[1]!;
}

// run-in-vm run directly, with extra environment (to simulate a machine that cannot start a VM).
function runScript(args: string[], env: Record<string, string>): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(RUN_IN_VM, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stderr }));
  });
}

// Processes whose command line mentions `needle` (e.g. a qemu given a share under it).
async function processesMentioning(needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ');
      if (cmd.includes(needle)) found.push(`${pid}: ${cmd}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

describe('run-in-vm (QEMU, software emulation)', () => {
  beforeAll(async () => {
    const check = await vmAvailable();
    // Not a skip: `npm run test:vm` exists to run these, so a machine that cannot is a failure.
    if (!check.ok) throw new Error(`cannot start a VM here:\n${check.message}`);
    share = await mkdtemp(join(tmpdir(), 'hbs-vm-share-'));
  });

  afterAll(async () => {
    if (share) await rm(share, { recursive: true, force: true });
    if (times.length) console.log(`[vm] boot-to-poweroff times:\n  ${times.join('\n  ')}`);
  });

  it('brings back the exit code, stdout and stderr; the guest has device-mapper; a cwd under /tmp stays visible (read-only) although the guest gets a fresh /tmp (a checkout there)', async () => {
    // One boot for both (the boot is most of what either costs).
    const dir = await mkdtemp(join('/tmp', 'hbs-vm-cwd-'));
    try {
      await writeFile(join(dir, 'marker'), 'from the host\n');
      const r = await runInVm(
        [
          'echo "out: $HBS_IN_VM $(id -u)"',
          'echo err >&2',
          'test -e /dev/mapper/control && echo has-dm-control',
          'grep -qw dm_crypt /proc/modules && echo has-dm-crypt',
          // The host root is read-only underneath: this write lands in the guest's tmpfs only.
          'echo written > /hbs-vm-overlay-probe && echo overlay-writable',
          'read -r line; echo "stdin: $line"',
          'echo "cwd: $(pwd)"; echo "marker: $(cat marker)"; touch marker 2>/dev/null || echo marker-read-only',
          'exit 7',
        ].join('\n'),
        { timeoutMs: VM_TIMEOUT_MS, input: 'hello stdin\n', cwd: dir },
      );
      record('exit code + output + cwd', r);
      expect(r.exitCode, describeVmResult(r)).toBe(7);
      expect(r.scriptExitCode).toBe(7);
      expect(r.timedOut).toBe(false);
      expect(r.vmFailed).toBe(false);
      expect(r.stdout.split('\n')).toEqual([
        'out: 1 0',
        'has-dm-control',
        'has-dm-crypt',
        'overlay-writable',
        'stdin: hello stdin',
        `cwd: ${dir}`,
        'marker: from the host',
        'marker-read-only',
        '',
      ]);
      expect(r.stderr.trim()).toBe('err');
      await expect(stat('/hbs-vm-overlay-probe')).rejects.toThrow();
      expect(await readFile(join(dir, 'marker'), 'utf8')).toBe('from the host\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('LUKS2 on an image in the shared dir: format, open, mkfs, mount, write, close; online grow', async () => {
    const img = join(share, 'luks.img');
    const script = `
      set -euo pipefail
      KEY=${JSON.stringify(KEY)}
      img=${JSON.stringify(img)}
      cat /proc/sys/kernel/random/boot_id | sed 's/^/boot-id=/'
      truncate -s 64M "$img"
      printf %s "$KEY" | cryptsetup luksFormat --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \\
        --batch-mode --key-file - "$img"
      cryptsetup isLuks "$img" && echo is-luks
      loop=$(losetup -f --show "$img")
      printf %s "$KEY" | cryptsetup open --key-file - "$loop" hbsx
      mkfs.ext4 -q -m 0 /dev/mapper/hbsx
      mkdir -p /mnt/x
      mount /dev/mapper/hbsx /mnt/x
      echo hello-from-boot-1 > /mnt/x/hello.txt
      umount /mnt/x
      cryptsetup close hbsx
      echo closed
      # Online grow: extend the file, refresh the loop device, resize the mapping, then ext4 mounted.
      printf %s "$KEY" | cryptsetup open --key-file - "$loop" hbsx
      mount /dev/mapper/hbsx /mnt/x
      echo "size-before=$(df --output=size -B1 /mnt/x | tail -n 1 | tr -d ' ')"
      truncate -s '>128M' "$img"
      losetup -c "$loop"
      printf %s "$KEY" | cryptsetup resize --key-file - hbsx
      resize2fs /dev/mapper/hbsx
      echo "size-after=$(df --output=size -B1 /mnt/x | tail -n 1 | tr -d ' ')"
      echo "content=$(cat /mnt/x/hello.txt)"
      umount /mnt/x
      cryptsetup close hbsx
      losetup -d "$loop"
      echo done
    `;
    const r = await runInVm(script, { share, timeoutMs: VM_TIMEOUT_MS });
    record('boot 1: LUKS format/open/mkfs/mount/grow', r);
    expect(r.exitCode, describeVmResult(r)).toBe(0);
    bootOne = { bootId: field(r.stdout, 'boot-id'), sizeAfter: Number(field(r.stdout, 'size-after')) };
    expect(r.stdout).toContain('is-luks');
    expect(r.stdout).toContain('closed');
    expect(r.stdout).toContain('content=hello-from-boot-1');
    expect(r.stdout).toMatch(/^done$/m);
    expect(r.stdout).toMatch(/on-line resizing required/);
    const before = Number(field(r.stdout, 'size-before'));
    const after = Number(field(r.stdout, 'size-after'));
    expect(before).toBeGreaterThan(30 * 2 ** 20);
    expect(after - before).toBeGreaterThan(60 * 2 ** 20);
    // The image lives on the host: grown to 128 MiB, and LUKS from the host's point of view too.
    expect((await stat(img)).size).toBe(128 * 2 ** 20);
  });

  it('reboot: a second boot opens the same image and reads what the first wrote', async () => {
    expect(bootOne, 'needs the previous test').toBeDefined();
    const img = join(share, 'luks.img');
    const script = `
      set -euo pipefail
      img=${JSON.stringify(img)}
      cat /proc/sys/kernel/random/boot_id | sed 's/^/boot-id=/'
      loop=$(losetup -f --show "$img")
      printf %s ${JSON.stringify(KEY)} | cryptsetup open --key-file - "$loop" hbsx
      e2fsck -fn /dev/mapper/hbsx
      mkdir -p /mnt/x
      mount /dev/mapper/hbsx /mnt/x
      echo "size=$(df --output=size -B1 /mnt/x | tail -n 1 | tr -d ' ')"
      echo "content=$(cat /mnt/x/hello.txt)"
      umount /mnt/x
      cryptsetup close hbsx
      losetup -d "$loop"
    `;
    const r = await runInVm(script, { share, timeoutMs: VM_TIMEOUT_MS });
    record('boot 2: reopen + read', r);
    expect(r.exitCode, describeVmResult(r)).toBe(0);
    expect(field(r.stdout, 'boot-id')).not.toBe(bootOne!.bootId);
    expect(field(r.stdout, 'content')).toBe('hello-from-boot-1');
    expect(Number(field(r.stdout, 'size'))).toBe(bootOne!.sizeAfter);
  });

  it('a hard timeout kills the VM: exit 124, no qemu left behind', async () => {
    // A share under a unique path: it is on qemu's command line, so leftovers can be found.
    const marker = await mkdtemp(join(tmpdir(), 'hbs-vm-timeout-'));
    try {
      const started = Date.now();
      const r = await runInVm('echo started; sleep 600', { share: marker, timeoutMs: 3_000 });
      record('timeout (3 s)', r);
      expect(r.timedOut, describeVmResult(r)).toBe(true);
      expect(r.exitCode).toBeNull();
      expect(r.scriptExitCode).toBe(124);
      expect(r.reason).toMatch(/timed out/);
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(await processesMentioning(marker)).toEqual([]);
    } finally {
      await rm(marker, { recursive: true, force: true });
    }
  });

  it('a VM that cannot start or boot says so and fails (125), never passes', async () => {
    const noQemu = await runScript(['--', 'true'], { HBS_VM_QEMU: '/nonexistent/qemu-system-x86_64' });
    expect(noQemu.status).toBe(125);
    expect(noQemu.stderr).toMatch(/cannot start a VM: missing qemu-system-x86_64/);
    expect(noQemu.stderr).toMatch(/apt-get install -y --no-install-recommends qemu-system-x86/);

    const noKernel = await runScript(['--', 'true'], { HBS_VM_KERNEL: '0.0.0-none' });
    expect(noKernel.status).toBe(125);
    expect(noKernel.stderr).toMatch(/linux-image-amd64/);

    // The kernel finds no init: it panics, panic=-1 + -no-reboot end qemu, and the console says why.
    const panic = await runScript(['--timeout', '120', '--', 'true'], { HBS_VM_APPEND: 'rdinit=/nonexistent' });
    expect(panic.status, panic.stderr).toBe(125);
    expect(panic.stderr).toMatch(/the VM did not boot/);
    expect(panic.stderr).toMatch(/Kernel panic/);
  });
});
