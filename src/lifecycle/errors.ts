import { EXIT, HbsError } from '../core/errors.js';

/** Thrown when another machine holds the lock; the command layer may ask and retry with stealLock. */
export class LockHeldError extends HbsError {
  constructor(readonly holder: string) {
    super(
      `the image is in use by another machine: ${holder}; mounting it here as well would destroy the filesystem`,
      EXIT.failed,
      'unmount it there (`hbs umount`); if that machine is gone for good, re-run with --steal-lock',
    );
  }
}
