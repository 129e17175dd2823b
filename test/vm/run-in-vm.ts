// Runs a command as root in a throwaway QEMU VM (test/vm/run-in-vm) and brings back its exit code
// and output. For tests that need what this machine's kernel lacks (device-mapper: `cryptsetup
// open`). The guest sees the host's root read-only (writes land in a tmpfs and vanish), fresh
// /tmp, /run and /root, and each `share` directory read-write at the same path.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const RUN_IN_VM = join(dirname(fileURLToPath(import.meta.url)), 'run-in-vm');

/** The script's own exit codes (when its --result file cannot tell). */
export const EXIT_TIMEOUT = 124;
export const EXIT_VM_FAILED = 125;

export interface RunInVmOptions {
  /** Host directories shared read-write, mounted at the same path in the guest. */
  share?: string | readonly string[];
  /** Hard limit for the whole VM, boot included; then qemu is killed. Default 300 s. */
  timeoutMs?: number;
  /** The command's stdin (default: empty). */
  input?: string | Buffer;
  /** Extra environment for the command (the guest's is otherwise minimal). */
  env?: Readonly<Record<string, string>>;
  /** Working directory in the guest (default: this process's cwd). */
  cwd?: string;
  /** More kernel modules to load (dm_crypt, loop, fuse, ext4 always are). */
  modprobe?: readonly string[];
  /** Guest memory in MiB (default 1024) and CPUs (default 1). */
  memMiB?: number;
  smp?: number;
  /** Stream the guest console (kernel + init messages) and the command's output to stderr. */
  verbose?: boolean;
}

export interface VmResult {
  /** The command's exit code; null when it did not finish (VM failed or timed out). */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** The VM could not run the command: missing packages, qemu failed, boot failed, panic. */
  vmFailed: boolean;
  /** Why, when timedOut or vmFailed. */
  reason: string;
  /** Wall time from qemu's start to its exit. */
  totalMs: number;
  /** Guest uptime (seconds) when its init started and when the command started and ended. */
  guestInitS: number | null;
  guestCommandStartS: number | null;
  guestCommandEndS: number | null;
  /** Guest uptime at each step of the boot, e.g. "init=2.1 insmod=2.9 root=3.0 mounts=3.2". */
  guestStages: string;
  /** The last lines of the guest console, when the command did not finish. */
  consoleTail: string;
  /** run-in-vm's own exit status. */
  scriptExitCode: number | null;
}

interface ResultFile {
  exitCode: number | null;
  timedOut: boolean;
  vmFailed: boolean;
  reason: string;
  totalMs: number;
  guestInitS: number | null;
  guestCommandStartS: number | null;
  guestCommandEndS: number | null;
  guestStages: string;
  consoleTail: string;
}

/** Boots a VM, runs `command` (a string runs with `bash -c`; an array is the argv), powers off. */
export async function runInVm(command: string | readonly string[], options: RunInVmOptions = {}): Promise<VmResult> {
  const argv = typeof command === 'string' ? ['bash', '-c', command] : [...command];
  if (argv.length === 0) throw new Error('runInVm: empty command');
  const timeoutMs = options.timeoutMs ?? 300_000;
  const work = await mkdtemp(join(tmpdir(), 'hbs-vm-ts-'));
  try {
    const resultFile = join(work, 'result.json');
    const args = ['--timeout', String(Math.max(1, Math.ceil(timeoutMs / 1000))), '--result', resultFile];
    const shares = typeof options.share === 'string' ? [options.share] : (options.share ?? []);
    for (const dir of shares) args.push('--share', dir);
    for (const [name, value] of Object.entries(options.env ?? {})) args.push('--env', `${name}=${value}`);
    if (options.cwd !== undefined) args.push('--cwd', options.cwd);
    if (options.modprobe?.length) args.push('--modprobe', options.modprobe.join(','));
    if (options.memMiB !== undefined) args.push('--mem', String(options.memMiB));
    if (options.smp !== undefined) args.push('--smp', String(options.smp));
    if (options.verbose) args.push('--verbose');
    if (options.input !== undefined) {
      const inputFile = join(work, 'stdin');
      await writeFile(inputFile, options.input);
      args.push('--input', inputFile);
    }
    args.push('--', ...argv);

    const run = await spawnScript(args, timeoutMs, options.verbose ?? false);
    let file: ResultFile | undefined;
    try {
      file = JSON.parse(await readFile(resultFile, 'utf8')) as ResultFile;
    } catch {
      file = undefined; // the script stopped before booting (missing packages, bad option)
    }
    if (!file) {
      return {
        exitCode: null,
        stdout: run.stdout,
        stderr: run.stderr,
        timedOut: run.killedByUs,
        vmFailed: !run.killedByUs,
        reason: run.killedByUs
          ? `run-in-vm did not finish within ${timeoutMs + GRACE_MS} ms and was killed`
          : `run-in-vm exited ${String(run.code ?? run.signal)} before booting: ${lastLines(run.stderr, 8)}`,
        totalMs: 0,
        guestInitS: null,
        guestCommandStartS: null,
        guestCommandEndS: null,
        guestStages: '',
        consoleTail: '',
        scriptExitCode: run.code,
      };
    }
    return {
      exitCode: file.exitCode,
      stdout: run.stdout,
      stderr: run.stderr,
      timedOut: file.timedOut,
      vmFailed: file.vmFailed,
      reason: file.reason,
      totalMs: file.totalMs,
      guestInitS: file.guestInitS,
      guestCommandStartS: file.guestCommandStartS,
      guestCommandEndS: file.guestCommandEndS,
      guestStages: file.guestStages,
      consoleTail: file.consoleTail,
      scriptExitCode: run.code,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Whether a VM can be started here; `message` names the packages to install when not. */
export async function vmAvailable(): Promise<{ ok: boolean; message: string }> {
  const run = await spawnScript(['--check'], 60_000, false);
  return { ok: run.code === 0, message: (run.stderr + run.stdout).trim() };
}

/** Everything about a run, for assertion messages. */
export function describeVmResult(r: VmResult): string {
  const lines = [
    `exit code ${String(r.exitCode)}${r.timedOut ? ' (timed out)' : ''}${r.vmFailed ? ' (VM failed)' : ''}` +
      `${r.reason ? `: ${r.reason}` : ''}; qemu ${r.totalMs} ms; guest ${r.guestStages} ` +
      `command ${String(r.guestCommandStartS)}..${String(r.guestCommandEndS)} s`,
    '---- stdout:',
    r.stdout.trimEnd(),
    '---- stderr:',
    r.stderr.trimEnd(),
  ];
  if (r.consoleTail) lines.push('---- guest console (tail):', r.consoleTail.trimEnd());
  return lines.join('\n');
}

// The script enforces the hard limit itself; this is the backstop should it hang.
const GRACE_MS = 30_000;

interface ScriptRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  killedByUs: boolean;
}

function spawnScript(args: string[], timeoutMs: number, echo: boolean): Promise<ScriptRun> {
  // setpriv --pdeathsig: should this process die, the script gets SIGTERM and stops its VM.
  const [file, argv] = existsSync('/usr/bin/setpriv')
    ? ['/usr/bin/setpriv', ['--pdeathsig', 'TERM', '--', RUN_IN_VM, ...args]]
    : [RUN_IN_VM, args];
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let killedByUs = false;
    child.stdout.on('data', (b: Buffer) => {
      out.push(b);
      if (echo) process.stderr.write(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      err.push(b);
      if (echo) process.stderr.write(b);
    });
    let hardKill: NodeJS.Timeout | undefined;
    const backstop = setTimeout(() => {
      killedByUs = true;
      child.kill('SIGTERM');
      hardKill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    }, timeoutMs + GRACE_MS);
    child.on('error', (e) => {
      clearTimeout(backstop);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(backstop);
      if (hardKill) clearTimeout(hardKill);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        killedByUs,
      });
    });
  });
}

function lastLines(text: string, n: number): string {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}
