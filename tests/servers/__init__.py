"""Real servers for the integration tests, each started with its own config on loopback."""

from __future__ import annotations

import os

FAKETIME_KEYS = ("LD_PRELOAD", "FAKETIME")


def real_clock_env() -> dict[str, str]:
    """The environment for a server the tests start: when the whole suite runs at a faked hour (see
    ``tests/at-hour.sh``), the servers keep the real clock; faking Dovecot's or PostgreSQL's timers only breaks
    them, and what is tested is ticketd's clock."""
    return {k: v for k, v in os.environ.items() if k not in FAKETIME_KEYS and not k.startswith("FAKETIME_")}
