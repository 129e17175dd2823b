/**
 * The interactive `hbs init`: every question, in the order a person thinks about the setup, each
 * answer checked right under its prompt (asked again, never a crash), the host key shown for an
 * explicit yes, and the summary's single confirmation. Steps never prompt; this module does.
 */
import { AbortError, EXIT, HbsError, UsageError } from '../../core/errors.js';
import { dirState, fileExists } from '../../core/files.js';
import type { Prompter, Validate } from '../../core/prompter.js';
import type { Reporter } from '../../core/reporter.js';
import { readConfig, type Config } from '../../lib/config.js';
import type { HostKey } from '../../lib/host-keys.js';
import type { Probes } from '../../lib/probes.js';
import type { BoxSpace } from '../../lib/remote-df.js';
import { formatSize, parseSize } from '../../lib/size.js';
import { withThrowawayKnownHosts } from '../../lib/ssh.js';
import { knownHostsPath } from '../../lib/stack.js';
import { portSchema } from '../../lib/validate.js';
import type { InitOptions } from '../../steps/init/context.js';
import { readPinned, scanHostKeys } from '../../steps/init/host-key.js';
import type { ExistingImageError } from '../../steps/init/image.js';
import { completeAnswers, fieldSchema, QUESTIONS, validateAnswer, type GivenAnswers } from './answers.js';
import { placeClash, siblingConfigs } from '../../lib/siblings.js';
import { crossIssues, DEFAULTS, type InitAnswers, type RawAnswers } from './options.js';

export interface WizardIo {
  prompter: Prompter;
  reporter: Reporter;
  /** Read-only probes: ssh-keyscan, sftp `df`, findmnt. */
  probe: Probes;
  /** A fresh private temporary directory. */
  mkTempDir(prefix: string): Promise<string>;
}

/** The answers, plus what the wizard learned about the box on the way. */
export interface Interview {
  answers: InitAnswers;
  /** The host key that will be pinned. */
  hostKey: HostKey;
  hostKeyBy: 'confirmed' | 'pinned' | 'flag';
  /** Whether hbs's known_hosts holds exactly that key already (else pinning it is part of the plan). */
  hostKeyPinned: boolean;
  /** Whether a key is already at the ssh key path. */
  keyExists: boolean;
  /** Key login to the box already works: no password is needed. */
  keyLogin: boolean;
  /** The box's space, when it could be read without mounting anything (key login works). */
  space?: BoxSpace;
}

type Key = keyof RawAnswers;

/** A size as a person would type it, exact: 10737418240 → "10G". */
export function exactSize(bytes: number): string {
  for (const [unit, f] of [['T', 1024 ** 4], ['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) {
    if (bytes % f === 0) return `${bytes / f}${unit}`;
  }
  return String(bytes);
}

/**
 * Defaults from a config already on disk (an interrupted or repeated `hbs init`): accepting them
 * resumes that setup. Only while the account is the recorded one.
 */
function recordedDefaults(prior: Config | undefined, user: string | null | undefined): Partial<Record<Key, string>> {
  if (!prior) return {};
  if (user !== undefined && user !== prior.box.user) return {};
  return {
    user: prior.box.user,
    ...(user === prior.box.user
      ? {
          host: prior.box.host,
          port: String(prior.box.port),
          remotePath: prior.box.remotePath,
          image: prior.image.name,
          size: exactSize(prior.image.sizeBytes),
          boxMount: prior.boxMount,
          mountPoint: prior.filesystem.mountPoint,
          sshKey: prior.ssh.key,
        }
      : {}),
  };
}

/** Whether a local directory can take a mount: missing, empty, or already a mount point (the plan checks which). */
export async function mountTargetProblem(probe: Probes, path: string): Promise<true | string> {
  let state;
  try {
    state = await dirState(path);
  } catch (err) {
    return `${path} cannot be used: ${(err as Error).message}`;
  }
  if (state === 'missing' || state === 'empty') return true;
  if (state === 'not-a-directory') return `${path} is a file, not a directory`;
  if (await probe.mountAt(path)) return true;
  return `${path} is a directory with files in it; hbs will not mount over them: choose an empty or new directory`;
}

/** Asks every answer the flags left open and returns them checked, with the box's host key trusted. */
export async function interview(given: GivenAnswers, io: WizardIo, flags: { force: boolean; adopt: boolean }): Promise<Interview> {
  const a: GivenAnswers = { ...given };
  const config = a.config ?? DEFAULTS.config;
  const prior = await readConfig(config);

  const ask = async (key: Key, extra: { message?: string; check?: Validate; retry?: string } = {}): Promise<void> => {
    if (a[key] !== undefined) return;
    const q = QUESTIONS.find((x) => x.key === key);
    if (!q) throw new Error(`no question for ${key}`);
    const fallback = extra.retry ?? recordedDefaults(prior, a.user)[key] ?? q.fallback?.(a);
    const pick = (v: string): string => (v === '' && fallback !== undefined ? fallback : v);
    const answer = await io.prompter.input({
      message: extra.message ?? q.message,
      default: fallback,
      validate: async (v) => {
        const value = pick(v);
        const ok = validateAnswer(key, value);
        if (ok !== true) return ok;
        return extra.check ? extra.check(value) : true;
      },
    });
    a[key] = pick(answer);
  };

  // How to reach the box: account, host, port; then the box itself answers with its host key.
  await ask('user');
  const retry: { host?: string; port?: string } = {};
  let offered: HostKey[];
  for (;;) {
    const asked = { host: a.host === undefined, port: a.port === undefined };
    await ask('host', { retry: retry.host });
    await ask('port', { retry: retry.port });
    try {
      offered = await scanHostKeys(io.probe, String(a.host), portSchema.parse(a.port));
      break;
    } catch (err) {
      if (!(err instanceof HbsError) || (!asked.host && !asked.port)) throw err;
      io.reporter.warn(`${err.message}; check the host and the port (Storage Boxes serve SFTP on 22 and 23)`);
      if (asked.host) [retry.host, a.host] = [String(a.host), undefined];
      if (asked.port) [retry.port, a.port] = [String(a.port), undefined];
    }
  }
  const host = String(a.host);
  const port = portSchema.parse(a.port);
  const pinned = await readPinned(knownHostsPath(config), host, port);
  const { key: hostKey, by: hostKeyBy } = await trustHostKey(io, offered, pinned, { host, port, config, fingerprint: a.hostKeyFingerprint ?? undefined });
  const hostKeyPinned = pinned.length === 1 && pinned[0]?.blob === hostKey.blob;
  a.hostKeyFingerprint = hostKey.fingerprint;

  // The key comes next: with it, the box can be asked for its free space before the size question.
  const knownPaths = (): { boxMount?: string; mountPoint?: string; sshKey?: string; config: string } => {
    const out: { boxMount?: string; mountPoint?: string; sshKey?: string; config: string } = { config };
    for (const k of ['boxMount', 'mountPoint', 'sshKey', 'config'] as const) {
      const v = a[k];
      if (typeof v === 'string') out[k] = fieldSchema(k).parse(v) as string;
    }
    return out;
  };
  const others = await siblingConfigs(config);
  const pathCheck =
    (key: 'boxMount' | 'mountPoint' | 'sshKey'): Validate =>
    async (value) => {
      const v = fieldSchema(key).parse(value) as string;
      const clash = crossIssues({ ...knownPaths(), [key]: v }).find((i) => i.involves.includes(key));
      if (clash) return clash.message;
      if (key === 'sshKey') return true;
      // Another config in the same directory already mounts something there.
      for (const o of others) {
        const taken = placeClash(key === 'boxMount' ? '--box-mount' : '--mount-point', v, o.path, { boxMount: o.cfg.boxMount, fs: { ...o.cfg.filesystem, device: '' } });
        if (taken) return taken.replace(/^--[a-z-]+ /, '');
      }
      return mountTargetProblem(io.probe, v);
    };
  await ask('sshKey', { check: pathCheck('sshKey') });
  const sshKey = fieldSchema('sshKey').parse(a.sshKey) as string;
  const keyExists = await fileExists(sshKey);
  const probe = keyExists ? await probeWithKey(io, { user: String(a.user), host, port, key: sshKey }, hostKey) : { login: false };

  // What goes on the box.
  await ask('remotePath');
  await ask('image');
  const space = probe.space;
  const recorded =
    prior !== undefined &&
    prior.box.user === a.user &&
    prior.box.host === host &&
    prior.box.port === port &&
    prior.box.remotePath === a.remotePath &&
    prior.image.name === a.image;
  // The recorded image is there already: its size is a fact, not a question (growing is `hbs grow`).
  if (recorded && a.size === undefined) a.size = String(prior.image.sizeBytes);
  const sizeQuestion = QUESTIONS.find((q) => q.key === 'size')?.message ?? 'Image size';
  // --adopt: the image on the box has its own size.
  if (!flags.adopt) await ask('size', {
    message: space ? `${sizeQuestion.replace(/\)$/, '')}; the box has ${formatSize(space.freeBytes)} free of ${formatSize(space.totalBytes)})` : sizeQuestion,
    check: (v) => {
      const r = parseSize(v);
      if (!space || flags.force || !r.ok || r.bytes <= space.freeBytes) return true;
      return `${formatSize(r.bytes)} is more than the ${formatSize(space.freeBytes)} free on the box: choose a smaller size (or re-run with --force if the box will grow)`;
    },
  });

  // Where it goes on this machine.
  await ask('boxMount', { check: pathCheck('boxMount') });
  await ask('mountPoint', { check: pathCheck('mountPoint') });

  return { answers: completeAnswers(a, { adopt: flags.adopt }), hostKey, hostKeyBy, hostKeyPinned, keyExists, keyLogin: probe.login, space };
}

/** The key to pin: the one --host-key-fingerprint names, the one pinned before, or one the person confirms. */
async function trustHostKey(
  io: WizardIo,
  offered: HostKey[],
  pinned: HostKey[],
  o: { host: string; port: number; config: string; fingerprint?: string },
): Promise<{ key: HostKey; by: Interview['hostKeyBy'] }> {
  const list = offered.map((k) => `${k.fingerprint} (${k.type})`).join(', ');
  if (o.fingerprint) {
    const wanted = o.fingerprint.replace(/=$/, '');
    const key = offered.find((k) => k.fingerprint === wanted);
    if (!key) throw new UsageError(`host key fingerprint ${wanted} does not match ${o.host}:${o.port}, which offers ${list}`);
    return { key, by: 'flag' };
  }
  const path = knownHostsPath(o.config);
  if (pinned.length) {
    const key = offered.find((k) => k.blob === pinned[0]?.blob);
    if (!key) {
      throw new HbsError(
        `the host key of ${o.host}:${o.port} changed: pinned ${pinned[0]?.fingerprint}, the server offers ${list}`,
        EXIT.failed,
        `if the box really got new keys, remove its line from ${path} and re-run; otherwise someone may be intercepting the connection`,
      );
    }
    return { key, by: 'pinned' };
  }
  const key = offered[0] as HostKey;
  io.reporter.info(`\nThe box ${o.host} (port ${o.port}) offers this ${key.type} host key:\n\n    ${key.fingerprint}\n`);
  io.reporter.info('Compare this with the fingerprint your provider shows for the box (Hetzner: the Storage Box page');
  io.reporter.info('of the console). Only if they are the same is this really your box.');
  const ok = await io.prompter.confirm({ message: 'Is it the same fingerprint?', default: false });
  if (!ok) throw new AbortError('host key not confirmed; nothing was changed');
  return { key, by: 'confirmed' };
}

/** Key login and free space with the key, trusting only `hostKey` (through a throwaway known_hosts). */
async function probeWithKey(
  io: WizardIo,
  c: { user: string; host: string; port: number; key: string },
  hostKey: HostKey,
): Promise<{ login: boolean; space?: BoxSpace }> {
  return withThrowawayKnownHosts((prefix) => io.mkTempDir(prefix), c.host, c.port, hostKey, (knownHosts) => io.probe.boxSpaceOverSftp({ ...c, remotePath: '', knownHosts }));
}

/** The box password, masked; needed once, before the summary, so nothing is asked after "yes". */
export function askPassword(prompter: Prompter, user: string): Promise<string> {
  return prompter.password({
    message: `Password of ${user} (used once, to put the key on the box; not stored)`,
    validate: (v) => (v === '' ? 'the password is needed once, to put the key on the box' : true),
  });
}

/** Offers to install what the preflight found missing; the command is shown in the question. */
export async function offerInstall(prompter: Prompter, reporter: Reporter, missingText: string, cmd: readonly string[]): Promise<boolean> {
  reporter.warn(`missing on this machine:\n${missingText}`);
  return prompter.confirm({ message: `Install them now with: ${cmd.join(' ')}?`, default: true });
}

/** For an encrypted image found on the box: whether a key is still missing, and how to ask for it. */
export interface ExistingImageIo {
  needsKey(): boolean;
  /** Asks the passphrase (checked against the image) and turns encryption on with it. */
  askKey(): Promise<void>;
}

/** Asks what to do with an image that is already on the box; true to go on (adopt or erase). */
export async function decideOnExistingImage(err: ExistingImageError, opts: InitOptions, prompter: Prompter, existing?: ExistingImageIo): Promise<boolean> {
  const name = opts.image;
  if (opts.forceFormat) {
    const typed = await prompter.input({ message: `${err.message}.\nThis ERASES it. Type the image name (${name}) to format it anew, anything else to stop` });
    if (typed !== name) throw new AbortError(`"${typed}" is not "${name}"; nothing was erased`);
    opts.formatConfirmed = true;
    return true;
  }
  if (err.kind === 'adoptable' && !opts.adopt) {
    const ok = await prompter.confirm({ message: `${err.message}.\nAdopt it as it is (no mkfs, the data stays)?`, default: true });
    if (!ok) throw new AbortError('not adopted; the image was left as it is');
    opts.adopt = true;
    return true;
  }
  if (err.kind === 'encrypted' && existing) {
    if (!opts.adopt) {
      const ok = await prompter.confirm({
        message: `${err.message}.\nIt is encrypted (LUKS). Adopt it as it is (no luksFormat, no mkfs, the data stays)? You need its passphrase.`,
        default: true,
      });
      if (!ok) throw new AbortError('not adopted; the image was left as it is');
      opts.adopt = true;
    }
    if (existing.needsKey()) await existing.askKey();
    return true;
  }
  return false;
}

/**
 * The plan cannot probe key login before the host key is pinned, so it lists the key upload; the
 * real run finds the key on the box and skips it.
 */
const keyUploadNote = ' (the plan lists the key upload only because the host key is not pinned yet; it will be skipped)';

/** Every answer, one per line, for the summary screen. */
export function summaryLines(o: InitOptions, iv: Omit<Interview, 'answers'>): string[] {
  const by = { confirmed: 'you confirmed it', pinned: 'pinned before', flag: 'from --host-key-fingerprint' }[iv.hostKeyBy];
  const free = iv.space ? ` (the box has ${formatSize(iv.space.freeBytes)} free of ${formatSize(iv.space.totalBytes)})` : '';
  const size = o.adopt && !o.sizeGiven ? 'the size of the image already there' : formatSize(o.size ?? 0);
  const rows: [string, string][] = [
    ['Storage Box account', o.user],
    ['Host', `${o.host}, port ${o.port}`],
    ['Host key', `${iv.hostKey.fingerprint} (${iv.hostKey.type}; ${by})`],
    ['Directory on the box', o.remotePath === '' ? 'the account home' : o.remotePath],
    ['Image', `${o.image}, ${size}${o.adopt ? ', adopted as it is' : ''}${free}`],
    ['Box mounted at', o.boxMount],
    ['Filesystem mounted at', o.mountPoint],
    ['SSH key', `${o.sshKey} (${iv.keyExists ? 'exists' : 'made now'})`],
    ['Key login', iv.keyLogin ? `works already: no password needed${iv.hostKeyPinned ? '' : keyUploadNote}` : 'set up once with the password you gave'],
    ['fstab', o.fstab ? `${o.fstab} (one hbs block; the rest stays as it is)` : 'not touched (--no-fstab)'],
    ['Config', o.config],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return [
    '',
    'Summary: nothing has been changed yet.',
    '',
    ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`),
    '',
    'The plan, as `hbs init --dry-run` prints it (• already so, ! a change to be made):',
  ];
}

/** The single confirmation after the summary; "no" leaves everything as it was. */
export async function confirmChanges(prompter: Prompter): Promise<void> {
  const ok = await prompter.confirm({ message: 'Make these changes?', default: true });
  if (!ok) throw new AbortError('answered no at the summary; nothing was changed');
}
