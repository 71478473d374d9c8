#!/usr/bin/env bash
# Install what the integration tests need from Debian's packages when missing: Dovecot (the tests start their
# own private server) and faketime (to run ticketd a simulated day ahead in the mail-storm test).
set -euo pipefail
if [ -x /usr/sbin/dovecot ] && [ -x /usr/bin/faketime ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "Dovecot and faketime are needed by the integration tests and are not both installed." >&2
    echo "Install them as root: apt-get install dovecot-imapd faketime   (then run make test again)" >&2
    exit 1
fi
echo "installing Dovecot and faketime from Debian's packages (the system service stays stopped)..."
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
$SUDO apt-get install -y -qq --no-install-recommends dovecot-imapd dovecot-core openssl faketime >/dev/null
/usr/sbin/dovecot --version
