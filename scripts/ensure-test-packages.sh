#!/usr/bin/env bash
# Install what the integration tests need from Debian's packages when missing: Dovecot (the tests start their
# own private server), faketime (to run ticketd a simulated day ahead in the mail-storm test) and systemd, for
# `systemd-analyze verify` of deploy/ticketd.service (the package's files only: nothing is started, no init is
# replaced — systemd-sysv, which would, is a separate package and not installed).
set -euo pipefail
if [ -x /usr/sbin/dovecot ] && [ -x /usr/bin/faketime ] && [ -x /usr/bin/systemd-analyze ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "Dovecot, faketime and systemd-analyze are needed by the integration tests and are not all installed." >&2
    echo "Install them as root: apt-get install dovecot-imapd faketime systemd   (then run make test again)" >&2
    exit 1
fi
echo "installing Dovecot, faketime and systemd from Debian's packages (no service is started)..."
# policy-rc.d 101 keeps the package from starting a system-wide server on ports 143/993.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    created_policy=1
fi
trap '[ "$created_policy" = 1 ] && $SUDO rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends dovecot-imapd dovecot-core openssl faketime systemd >/dev/null
/usr/sbin/dovecot --version
/usr/bin/systemd-analyze --version | sed -n 1p
