"""structlog set-up and the masking of personal data in logs.

Caller numbers are personal data: logs show them masked (``mask_number``); the store keeps
them in full. Secrets are ``SecretStr`` in the config and never rendered.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def mask_number(number: str | None) -> str | None:
    """Mask the middle of a phone number, keeping enough to recognise a call in a log.

    ``+493012345678`` -> ``+4930******78``; short numbers keep only their last digit.
    """
    if not number:
        return number
    digits = [i for i, c in enumerate(number) if c.isdigit()]
    keep = set(digits[-1:]) if len(digits) <= 4 else set(digits[:4] + digits[-2:])
    return "".join(c if (i in keep or not c.isdigit()) else "*" for i, c in enumerate(number))


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
