"""A clock the tests move under a running daemon: libfaketime preloaded, its offset in a file the test rewrites.

The thread-safe build (libfaketimeMT) is the one to use: the daemon reads the clock from several threads (the
main loop, the scheduler), and the plain build now and then returns the real time there, after which the
scheduler sleeps until a date that is a week of real time away. Monotonic time is left alone, so waits and
time-outs keep real time.

The whole suite may itself run at a faked hour (``tests/at-hour.sh``: libfaketime with ``FAKETIME=+SECONDS``
around pytest). Offsets here are then counted from the real clock, the one libfaketime adds them to, and the
suite's own ``FAKETIME`` is kept out of the daemons these clocks drive (it would win over their offset file).
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
_SECONDS = re.compile(r"[+-]\d+(?:\.\d+)?")


def require_libfaketime() -> None:
    if shutil.which("faketime") is None or not LIBFAKETIME.exists():
        pytest.fail("libfaketime is not installed; `make test` installs it (apt-get install faketime)")


def suite_offset() -> timedelta:
    """How far the suite's own clock is moved (``FAKETIME=+SECONDS``); zero when it runs on the real clock."""
    value = os.environ.get("FAKETIME", "")
    return timedelta(seconds=float(value)) if _SECONDS.fullmatch(value) else timedelta(0)


def real_now() -> datetime:
    return datetime.now(UTC) - suite_offset()


def ahead(seconds: float) -> list[str]:
    """The `faketime` command line that runs a program ``seconds`` ahead of the suite's clock."""
    total = seconds + suite_offset().total_seconds()
    return ["faketime", "-m", "-f", f"{total:+.0f}"]


class Clock:
    """The daemon's wall clock; ``set`` moves it, the daemon sees the move at its next clock read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, local: datetime) -> None:
        """Written aside and renamed, so the daemon never reads a half-written offset."""
        offset = (local.astimezone(UTC) - real_now()).total_seconds()
        partial = self.path.with_suffix(".partial")
        partial.write_text(f"{offset:+.0f}\n")
        os.replace(partial, self.path)

    def now(self) -> datetime:
        """What the daemon's clock reads now (the real time plus the offset last set)."""
        offset = float(self.path.read_text()) if self.path.exists() else 0.0
        return real_now() + timedelta(seconds=offset)

    def env(self) -> dict[str, str]:
        """The whole environment of a program on this clock."""
        inherited = {k: v for k, v in os.environ.items() if k != "FAKETIME"}
        return {**inherited, "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(self.path),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
