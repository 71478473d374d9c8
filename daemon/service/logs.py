"""Structured logs: JSON lines for journald and log shippers, readable lines on a terminal.

Every line carries its context (inbound id, Message-ID, ticket) as fields, bound where the work happens, so an
operator can follow one mail with ``journalctl -o cat | jq 'select(.inbound_id==42)'``.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(level: str = "info", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if as_json else structlog.dev.ConsoleRenderer()
    )
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if as_json:
        processors.append(structlog.processors.dict_tracebacks)
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=_to_stderr,
        cache_logger_on_first_use=False,
    )


def _to_stderr(*_args: object) -> structlog.PrintLogger:
    """Lines go to ``sys.stderr`` as it is when they are written, not as it was when logging was configured: a
    command run in-process (the tests run the CLI so) may swap it for a buffer and close that afterwards, and the
    logging configuration, which is the process's, must not keep writing there."""
    return structlog.PrintLogger(sys.stderr)
