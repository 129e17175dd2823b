/**
 * What the tests of `hbs init` share: its flags and options for the sandbox, the box's host key,
 * a fake machine that offers it, an InitCtx for running single steps through the executor, and the
 * fstab / crypttab lines init must write, spelled out (not built with the src helpers, so a change
 * to a line fails a test).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { InitCliFlags } from '../../src/commands/init/index.js';
import { Executor, type StepOutcome } from '../../src/core/executor.js';
import { MemoryReporter } from '../../src/core/reporter.js';
import type { Step } from '../../src/core/step.js';
import type { Config } from '../../src/lib/config.js';
import type { HostKey } from '../../src/lib/host-keys.js';
import type { LuksKey } from '../../src/lib/luks.js';
import { newState, stackForInit, type EncryptOptions, type InitCtx, type InitOptions, type InitState } from '../../src/steps/init/context.js';
import { FakeMachine } from './fake-machine.js';
import { FINGERPRINT, FIXED_NOW, GiB, HOST, IMAGE, makeDeps, USER, type Sandbox } from './sandbox.js';

/** The box's ed25519 host key (a real key blob); FINGERPRINT is its SHA256 fingerprint. */
export const HOST_KEY: HostKey = { type: 'ssh-ed25519', blob: 'AAAAC3NzaC1lZDI1NTE5AAAAIOUiTSjaTBz44BEeedRSXHHI0WAZuFXeRYWa3+kxYYjo', fingerprint: FINGERPRINT };
/** Another host key (the box "changed" its key). */
export const OTHER_HOST_KEY: HostKey = {
  type: 'ssh-ed25519',
  blob: 'AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
  fingerprint: 'SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU',
};
/** known_hosts as init pins HOST_KEY (port 23). */
export const PINNED = `[${HOST}]:23 ${HOST_KEY.type} ${HOST_KEY.blob}\n`;
export const MAPPER = 'hbs-filesystem';
export const BOX_PASSWORD = 'S3cr3t pw,with=odd"chars';

/** A machine whose box (not mounted yet) offers HOST_KEY and accepts key login. */
export function fakeBox(sb: Sandbox): FakeMachine {
  const m = new FakeMachine().box(sb.boxMount, sb.boxHome);
  m.world.hostKeys = [HOST_KEY];
  return m;
}

/** `hbs init --yes` with every answer given as a flag, for the sandbox. */
export function initFlags(sb: Sandbox, over: InitCliFlags = {}): InitCliFlags {
  return {
    user: USER,
    host: HOST,
    port: '23',
    remotePath: 'backup',
    image: IMAGE,
    size: '10G',
    boxMount: sb.boxMount,
    mountPoint: sb.mountPoint,
    sshKey: sb.sshKey,
    hostKeyFingerprint: FINGERPRINT,
    fstab: sb.fstab,
    config: sb.config,
    yes: true,
    ...over,
  };
}

export function initOpts(sb: Sandbox, over: Partial<InitOptions> = {}): InitOptions {
  return {
    user: USER,
    host: HOST,
    port: 23,
    remotePath: 'backup',
    image: IMAGE,
    size: 10 * GiB,
    boxMount: sb.boxMount,
    mountPoint: sb.mountPoint,
    sshKey: sb.sshKey,
    hostKeyFingerprint: FINGERPRINT,
    fstab: sb.fstab,
    config: sb.config,
    force: false,
    adopt: false,
    forceFormat: false,
    formatConfirmed: false,
    sizeGiven: true,
    systemd: null,
    ...over,
  };
}

export function encryptOpts(sb: Sandbox, over: Partial<EncryptOptions> = {}): EncryptOptions {
  return { mapperName: MAPPER, passphrase: true, headerBackup: join(sb.configDir, `${MAPPER}.luks-header`), unattendedKeyFile: null, kdf: {}, ...over };
}

export interface CtxParts {
  opts?: Partial<InitOptions>;
  password?: string;
  luksKeys?: LuksKey[];
  state?: Partial<InitState>;
  stealLock?: boolean;
}

/** The context initCommand builds, for running single steps. */
export function initCtx(sb: Sandbox, m: FakeMachine, p: CtxParts = {}): InitCtx & { reporter: MemoryReporter } {
  const opts = initOpts(sb, p.opts);
  const keys = p.luksKeys ?? [];
  return {
    stack: stackForInit(opts),
    probe: m.probes,
    reporter: new MemoryReporter(),
    deps: makeDeps(),
    key: { source: keys.length ? { kind: 'read', read: () => Promise.resolve(keys[0]!) } : { kind: 'later' }, key: keys[0] },
    stealLock: p.stealLock ?? false,
    found: {},
    opts,
    password: p.password,
    luksKeys: keys,
    state: { ...newState(), ...p.state },
    hbsCommand: ['/usr/bin/node', '/opt/hbs/bin/hbs'],
  };
}

/** Runs steps through the one executor, as initCommand does. */
export function runSteps(ctx: InitCtx, m: FakeMachine, steps: readonly Step<InitCtx>[], o: { dryRun?: boolean } = {}): Promise<StepOutcome[]> {
  const ex = new Executor({ runner: m, reporter: ctx.reporter, dryRun: Boolean(o.dryRun), verbose: false, now: () => FIXED_NOW, hint: 're-run `hbs init`' });
  return ex.run(ctx, steps);
}

/** The sshfs option string of the box mount, written out. */
export function sshfsOptions(sb: Sandbox, remotePath = 'backup'): string {
  return [
    'reconnect',
    'port=23',
    `IdentityFile=${sb.sshKey}`,
    'IdentitiesOnly=yes',
    `UserKnownHostsFile=${sb.knownHosts}`,
    'GlobalKnownHostsFile=/dev/null',
    'StrictHostKeyChecking=yes',
    'ServerAliveInterval=15',
    'ServerAliveCountMax=3',
    'BatchMode=yes',
    `fsname=sshfs#${USER}@${HOST}:${remotePath}`,
  ].join(',');
}

/** The two fstab lines of a plain image, spelled out. */
export function plainFstabLines(sb: Sandbox, mountOptions = 'noatime,noinit_itable'): string[] {
  return [
    `sshfs#${USER}@${HOST}:backup ${sb.boxMount} fuse _netdev,nofail,noatime,${sshfsOptions(sb)} 0 0`,
    `${sb.image} ${sb.mountPoint} ext4 loop,_netdev,nofail,${mountOptions},x-systemd.requires-mounts-for=${sb.boxMount} 0 0`,
  ];
}

/** The hbs block around lines, as it stands in fstab or crypttab. */
export function block(sb: Sandbox, lines: readonly string[]): string {
  return [`# BEGIN hbs managed block (${sb.config}): edit with hbs, not by hand`, ...lines, `# END hbs managed block (${sb.config})`, ''].join('\n');
}

/** Every file and directory under `dir` (relative, sorted; directories end in /); [] when missing. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(e.isDirectory() ? `${r}/` : r);
      if (e.isDirectory()) await walk(join(d, e.name), r);
    }
  };
  await walk(dir, '');
  return out.sort();
}

export async function modeOf(path: string): Promise<number> {
  return (await stat(path)).mode & 0o7777;
}

/** The lines a dry-run shows as the content of a write or block action: the `!   | …` lines after `header`. */
export function shownContent(lines: readonly string[], header: RegExp): string[] {
  const start = lines.findIndex((l) => header.test(l));
  if (start < 0) throw new Error(`no line matches ${header}`);
  const out: string[] = [];
  for (const l of lines.slice(start + 1)) {
    const m = /^ {2}! {3}\| (.*)$/.exec(l) ?? /^ {2}! {3}\|$/.exec(l);
    if (!m) break;
    out.push(m[1] ?? '');
  }
  return out;
}

/** The config init wrote, as JSON (not checked by the schema: the test looks at what is there). */
export async function configFile(sb: Sandbox): Promise<Config> {
  return JSON.parse(await readFile(sb.config, 'utf8')) as Config;
}
