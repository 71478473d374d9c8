#!/usr/bin/env bash
# Install what the integration tests need from Debian's packages when missing: Dovecot (the tests start their
# own private server), faketime (to run ticketd with a clock the tests move: mail storms, SLA timers, report
# schedules), systemd, for `systemd-analyze verify` of deploy/ticketd.service (the package's files only: nothing
# is started, no init is replaced — systemd-sysv, which would, is a separate package and not installed),
# LibreOffice Calc without its GUI, which must open every report workbook (converted to PDF, headless), and the
# PostgreSQL server, whose initdb and pg_ctl (under /usr/lib/postgresql/<major>/bin) the tests use to run a
# private cluster of their own on a free loopback port; the system-wide cluster the package creates is never
# started. Postfix: the tests start a private instance (its own config directory and queue, on loopback) that
# delivers to ticketd over LMTP. Chromium and its driver: the web form is tested in a real headless browser.
# Debian's python3 with venv and ensurepip (python3-venv): tests/integration/test_install.py installs the wheel
# into a fresh venv as the README's walkthrough does, and runs the daemon from it as an unprivileged user.
set -euo pipefail
have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
if [ -x /usr/sbin/dovecot ] && [ -x /usr/bin/faketime ] && [ -x /usr/bin/systemd-analyze ] && [ -x /usr/bin/soffice ] \
    && have_postgres && [ -x /usr/sbin/postfix ] && [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
    && /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
    exit 0
fi
had_postgres=0
have_postgres && had_postgres=1
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "Dovecot, faketime, systemd-analyze, LibreOffice, PostgreSQL, Postfix and Chromium are needed by the integration tests and are not all installed." >&2
    echo "Install them as root: apt-get install dovecot-imapd faketime systemd libreoffice-calc-nogui postgresql postfix chromium chromium-driver python3-venv   (then run make test again)" >&2
    exit 1
fi
echo "installing Dovecot, faketime, systemd, LibreOffice Calc, PostgreSQL, Postfix and Chromium from Debian's packages (no service is started)..."
# policy-rc.d 101 keeps the packages from starting a system-wide server (Dovecot on ports 143/993, PostgreSQL's
# cluster "main", which its postinst creates, on 5432, Postfix on 25).
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
    libreoffice-calc-nogui postgresql postfix chromium chromium-driver python3-venv >/dev/null
if [ "$had_postgres" = 0 ] && command -v pg_lsclusters >/dev/null 2>&1; then
    # Should a cluster this install created be running anyway (an init that ignores policy-rc.d), stop it.
    pg_lsclusters --no-header | while read -r version cluster _port status _rest; do
        case "$status" in online*)
            echo "stopping PostgreSQL cluster $version/$cluster, started by its package: the tests run their own"
            $SUDO pg_ctlcluster "$version" "$cluster" stop ;;
        esac
    done
fi
/usr/sbin/dovecot --version
/usr/bin/systemd-analyze --version | sed -n 1p
/usr/bin/soffice --version
ls -d /usr/lib/postgresql/*/bin/initdb
/usr/sbin/postconf mail_version
/usr/bin/chromium --version
