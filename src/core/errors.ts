/** Exit codes, documented in the README. Only the entry point turns them into process exits. */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  preflight: 3,
  /** Another run holds the lock of this config (EX_TEMPFAIL): try again later. */
  busy: 75,
  aborted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error that knows how the process should end and what the person can do next. */
export class HbsError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.failed,
    readonly hint?: string,
    readonly details?: string,
  ) {
    super(message);
    this.name = 'HbsError';
  }
}

/** Bad input: a value the person gave (or left out). Nothing has been changed when this is thrown. */
export class UsageError extends HbsError {
  constructor(message: string, hint?: string) {
    super(message, EXIT.usage, hint);
    this.name = 'UsageError';
  }
}

export class PreflightError extends HbsError {
  constructor(
    message: string,
    readonly missing: { what: string; pkg?: string }[],
    hint?: string,
  ) {
    super(message, EXIT.preflight, hint);
    this.name = 'PreflightError';
  }
}

export class AbortError extends HbsError {
  constructor(message = 'aborted') {
    super(message, EXIT.aborted);
    this.name = 'AbortError';
  }
}
