import { formatCmd, isWrite, type Cmd, type CmdResult, type Runner } from './runner.js';

/**
 * Runs read-only probes through the inner runner, so the plan sees the machine's real state, and
 * prints every changing command as `! cmd` without running it.
 */
export class DryRunRunner implements Runner {
  readonly dryRun = true;

  constructor(
    private readonly inner: Runner,
    private readonly print: (line: string) => void,
  ) {}

  async run(cmd: Cmd): Promise<CmdResult> {
    if (!isWrite(cmd)) return this.inner.run(cmd);
    this.print(`! ${formatCmd(cmd)}`);
    return { exitCode: 0, stdout: '', stderr: '' };
  }
}
