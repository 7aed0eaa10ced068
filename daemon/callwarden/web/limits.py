"""Sign-in rate limit per client address: a sliding window, in this process's memory."""

from __future__ import annotations

from collections import deque


class RateLimiter:
    def __init__(self, per_minute: int, window: float = 60.0, max_clients: int = 10_000) -> None:
        self._limit = per_minute
        self._window = window
        self._max_clients = max_clients
        self._seen: dict[str, deque[float]] = {}

    def allow(self, client: str, now: float) -> bool:
        """Count an attempt at ``now`` (monotonic seconds); False past the limit."""
        times = self._seen.setdefault(client, deque())
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) >= self._limit:
            return False
        times.append(now)
        if len(self._seen) > self._max_clients:  # forget the quiet ones
            for key in [k for k, v in self._seen.items() if not v or v[-1] <= now - self._window]:
                del self._seen[key]
        return True
