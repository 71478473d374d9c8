"""A clock the tests move under a running daemon: libfaketime preloaded, its offset in a file the test rewrites.

The thread-safe build (libfaketimeMT) is the one to use: the daemon reads the clock from several threads (the
main loop, the scheduler), and the plain build now and then returns the real time there, after which the
scheduler sleeps until a date that is a week of real time away. Monotonic time is left alone, so waits and
time-outs keep real time.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def require_libfaketime() -> None:
    if shutil.which("faketime") is None or not LIBFAKETIME.exists():
        pytest.fail("libfaketime is not installed; `make test` installs it (apt-get install faketime)")


class Clock:
    """The daemon's wall clock; ``set`` moves it, the daemon sees the move at its next clock read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, local: datetime) -> None:
        """Written aside and renamed, so the daemon never reads a half-written offset."""
        offset = (local.astimezone(UTC) - datetime.now(UTC)).total_seconds()
        partial = self.path.with_suffix(".partial")
        partial.write_text(f"{offset:+.0f}\n")
        os.replace(partial, self.path)

    def now(self) -> datetime:
        """What the daemon's clock reads now (the real time plus the offset last set)."""
        offset = float(self.path.read_text()) if self.path.exists() else 0.0
        return datetime.now(UTC) + timedelta(seconds=offset)

    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(self.path), "FAKETIME_NO_CACHE": "1",
                "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
