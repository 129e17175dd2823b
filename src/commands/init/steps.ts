import type { Step } from '../../core/step.js';
import { boxMountStep, boxReadaheadStep } from '../../steps/box.js';
import { loopBufferedStep, fsMountStep } from '../../steps/fs.js';
import { fsckIfNeededStep } from '../../steps/stack.js';
import { boxSpaceStep } from '../../steps/init/box-space.js';
import { configStep, intentDoneStep } from '../../steps/init/config.js';
import type { InitCtx } from '../../steps/init/context.js';
import { crypttabStep } from '../../steps/init/crypttab.js';
import { fstabStep } from '../../steps/init/fstab.js';
import { hostKeyStep } from '../../steps/init/host-key.js';
import { imageStep } from '../../steps/init/image.js';
import { keyUploadStep } from '../../steps/init/key-upload.js';
import { luksFormatStep, luksOpenStep } from '../../steps/init/luks.js';
import { mkfsStep } from '../../steps/init/mkfs.js';
import { sshKeyStep } from '../../steps/init/ssh-key.js';
import { bootUnitStep } from '../../steps/init/systemd.js';
import { targetsStep } from '../../steps/init/targets.js';
import { lockCheckStep, lockTakeStep } from '../../steps/lock.js';
import { leftoversStep } from '../../steps/leftovers.js';

/**
 * `hbs init` as a list of steps. The order matters: nothing is written under the box mount before
 * the lock check has seen the box mounted there and nobody else using the image, and the config is
 * written right after mkfs so an interrupted run can resume. With --encrypt, LUKS format (or
 * adoption) and open come between the image and mkfs; with --luks-unattended the crypttab line
 * comes before the fstab lines that rely on it.
 */
export function initStepsFor(o: { encrypt?: { unattendedKeyFile: string | null } }): readonly Step<InitCtx>[] {
  return [
    leftoversStep,
    targetsStep,
    hostKeyStep,
    sshKeyStep,
    keyUploadStep,
    boxMountStep,
    boxReadaheadStep,
    lockCheckStep,
    boxSpaceStep,
    imageStep,
    ...(o.encrypt ? [luksFormatStep, luksOpenStep] : []),
    mkfsStep,
    configStep,
    intentDoneStep,
    lockTakeStep,
    fsckIfNeededStep,
    fsMountStep,
    loopBufferedStep,
    ...(o.encrypt?.unattendedKeyFile ? [crypttabStep] : []),
    fstabStep,
    bootUnitStep,
  ];
}
