#!/usr/bin/env bash
# Installs what test/vm/run-in-vm needs to boot a throwaway VM (Debian/Ubuntu, as root):
#   qemu-system-x86  the emulator          linux-image-amd64  a kernel + modules in /boot
#   busybox-static   the initramfs         kmod               modprobe (module dependencies)
#   cryptsetup-bin   LUKS, for the tests that run in the VM
#   systemd-cryptsetup  (Debian 13+; in `systemd` on 12) what boot runs for a crypttab line
# Only what is missing is installed; --no-install-recommends keeps it to the ~100 MB needed.
set -euo pipefail

packages=(qemu-system-x86 linux-image-amd64 busybox-static kmod cryptsetup-bin)
# The reboot test runs /lib/systemd/systemd-cryptsetup: part of `systemd` on Debian 12 (a container
# may not have it), a package of its own (systemd-cryptsetup) from Debian 13 on.
SDC=/lib/systemd/systemd-cryptsetup
if [[ ! -x $SDC ]]; then
  if apt-cache show systemd-cryptsetup >/dev/null 2>&1; then packages+=(systemd-cryptsetup); else packages+=(systemd); fi
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)) && [[ -x $SDC ]]; then
  echo "install-deps: all present: ${packages[*]}"
  exit 0
fi
if ((EUID != 0)); then
  echo "install-deps: must run as root to install: ${missing[*]}" >&2
  echo "install-deps:   apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]:-systemd-cryptsetup}"
apt-get update -qq
((${#missing[@]} == 0)) || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Without package lists at first, `systemd` was chosen; where the binary is a package of its own:
if [[ ! -x $SDC ]] && apt-cache show systemd-cryptsetup >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd-cryptsetup
fi
