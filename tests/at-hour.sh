#!/usr/bin/env bash
# Run the test suite with ticketd's clock (the tests', and every ticketd process they start) moved to another
# hour, to show that no test depends on when it runs: CI runs at whatever hour a change lands.
#
#   tests/at-hour.sh 2026-12-09T10:03:00+03:00 [pytest arguments]    # inside Istanbul business hours
#   tests/at-hour.sh 2026-12-09T20:03:00+03:00 -n 3 --dist loadfile  # after closing time
#
# libfaketime moves the wall clock by a fixed offset (FAKETIME=+SECONDS) from the given instant on; it runs on
# from there. The servers the fixtures start (Dovecot, PostgreSQL, LibreOffice) keep the real clock
# (tests/servers/__init__.py), and the tests' own fake clocks count from the real one (tests/fakeclock.py).
# Monotonic time keeps the real clock, as the tests' own fake clocks do, so every timed wait and time-out stays as
# long as it was; tests/at_hour/sitecustomize.py works around the one call that setting breaks (time.sleep).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    echo "usage: tests/at-hour.sh ISO-8601-INSTANT [pytest arguments]" >&2
    exit 2
fi
lib=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
[ -e "$lib" ] || { echo "libfaketime is not installed (apt-get install faketime)" >&2; exit 2; }
instant="$1"; shift
offset=$(.venv/bin/python -c "import sys; from datetime import datetime, UTC; \
print(f'{round((datetime.fromisoformat(sys.argv[1]) - datetime.now(UTC)).total_seconds()):+d}')" "$instant")
echo "running the suite at $instant (clock offset ${offset} s)" >&2
export LD_PRELOAD="$lib" FAKETIME="${offset}" FAKETIME_DONT_FAKE_MONOTONIC=1
export PYTHONPATH="$PWD/tests/at_hour${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m pytest "$@"
