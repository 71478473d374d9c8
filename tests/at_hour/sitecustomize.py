"""Loaded by every Python process of a suite run at a faked hour (``tests/at-hour.sh`` puts this folder on
PYTHONPATH), and by nothing else.

The processes run under libfaketime with monotonic time left real (``FAKETIME_DONT_FAKE_MONOTONIC``): moving it
would make every timed wait on a thread (the daemon's loop, IMAP IDLE, the scheduler) wait for the wrong time.
With libfaketime 0.9.10 that setting makes ``time.sleep`` alone fail with EINVAL, while the timed waits of
threading, select and selectors work; so sleep waits on an Event here, for the same time.
"""

import threading
import time


def _sleep(seconds: float) -> None:
    threading.Event().wait(max(0.0, seconds))


time.sleep = _sleep
