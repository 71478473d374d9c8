"""What a long-running service asks of its surroundings: the sd_notify protocol (READY, WATCHDOG, STATUS,
STOPPING) without a library, one datagram per message, and a C heap that gives big buffers back.

Nothing happens when NOTIFY_SOCKET is unset, so the daemon runs the same outside systemd.
"""

from __future__ import annotations

import ctypes
import os
import socket


def notify(*fields: str) -> bool:
    """Send ``KEY=value`` fields to systemd; True when a manager was there to hear them."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(fields).encode(), address)
        return True
    except OSError:
        return False


def return_big_buffers() -> None:
    """Make glibc give a big buffer (a 20 MB mail, its decoded attachment) back to the kernel when it is freed.

    glibc serves allocations over its mmap threshold from mappings of their own, but raises that threshold to the
    size of each such buffer freed (up to 32 MiB): after the first big mail the next ones come from the heap, whose
    freed space stays resident. Fixing the threshold at 1 MiB stops that. ``ticketd run --once`` over 40 mails of
    20 MB: peak RSS 366-396 MiB without, 141 MiB with (tests/benchmarks/memory.py). Other C libraries (musl)
    map big buffers anyway and have no ``mallopt``: nothing to do there.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_mmap_threshold = -3  # <malloc.h>
    mallopt(m_mmap_threshold, 1024 * 1024)
