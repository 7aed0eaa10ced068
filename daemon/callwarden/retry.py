"""Reconnect backoff, shared by every connection the daemon keeps (AMI, MQTT)."""

from __future__ import annotations

import random
from collections.abc import Callable


def reconnect_delay(attempt: int, low: float, high: float, rand: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with jitter: in [cap/2, cap], cap = min(high, low * 2**attempt)."""
    cap = min(high, low * (2 ** min(attempt, 30)))
    return float(cap / 2 + rand() * cap / 2)
