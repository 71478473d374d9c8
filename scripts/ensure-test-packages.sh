#!/usr/bin/env bash
# Install what the integration tests need from Debian's packages when missing: Dovecot (the tests start their
# own private server), faketime (to run ticketd with a clock the tests move: mail storms, SLA timers, report
# schedules), systemd, for `systemd-analyze verify` of deploy/ticketd.service (the package's files only: nothing
# is started, no init is replaced — systemd-sysv, which would, is a separate package and not installed), and
# LibreOffice Calc without its GUI, which must open every report workbook (converted to PDF, headless).
set -euo pipefail
if [ -x /usr/sbin/dovecot ] && [ -x /usr/bin/faketime ] && [ -x /usr/bin/systemd-analyze ] && [ -x /usr/bin/soffice ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "Dovecot, faketime, systemd-analyze and LibreOffice are needed by the integration tests and are not all installed." >&2
    echo "Install them as root: apt-get install dovecot-imapd faketime systemd libreoffice-calc-nogui   (then run make test again)" >&2
    exit 1
fi
echo "installing Dovecot, faketime, systemd and LibreOffice Calc from Debian's packages (no service is started)..."
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
$SUDO apt-get install -y -qq --no-install-recommends dovecot-imapd dovecot-core openssl faketime systemd \
    libreoffice-calc-nogui >/dev/null
/usr/sbin/dovecot --version
/usr/bin/systemd-analyze --version | sed -n 1p
/usr/bin/soffice --version
