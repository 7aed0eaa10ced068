"""The active/standby role of one node of a site, from its lease on the shared database (pure:
times are passed in, on the monotonic clock).

The database grants the lease for ``ttl`` seconds from *its* clock at the moment it runs the
statement; the node counts its own validity from *before* it sent the request, and shorter by
``guard``: so the node stops acting before the database lets another node take the lease, and a
reply that took long (or a process that was stopped) never stretches the validity. The check on
the hotkey's path is :meth:`LeaseState.is_active`: one comparison, no round trip.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Change(enum.Enum):
    NONE = "none"  # the role is what it was
    BECAME_ACTIVE = "became_active"  # a new term (a new fencing generation): take over
    LOST = "lost"  # was active, is not any more: stop acting


@dataclass(frozen=True, slots=True)
class Timing:
    """``bound``: the takeover bound (ha.lease_seconds). The database's lease lasts ``ttl`` (the
    bound less two polls: a standby polling every ``poll`` seconds sees it lapse, and has its
    takeover under way, within the bound); the node's own validity is ``ttl - guard`` from
    before its request. Default bound 3 s: poll 0.5 s, ttl 2 s, validity 1.5 s."""

    bound: float

    @property
    def poll(self) -> float:
        return self.bound / 6

    @property
    def ttl(self) -> float:
        return self.bound - 2 * self.poll

    @property
    def guard(self) -> float:
        return min(0.5, self.ttl / 4)

    @property
    def validity(self) -> float:
        return self.ttl - self.guard


class LeaseState:
    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self.generation: int | None = None  # the fencing generation of the current (or last) term
        self.holder: str | None = None  # who holds the lease, as last read
        self._until = float("-inf")  # monotonic: acting allowed before this instant
        self._was_active = False

    def is_active(self, now: float) -> bool:
        return now < self._until

    def granted(self, sent_at: float, generation: int, now: float) -> Change:
        """The database granted (or renewed) the lease; ``sent_at``: when the request was sent."""
        new_term = generation != self.generation or not self._was_active or not self.is_active(now)
        self.generation, self._until = generation, sent_at + self.timing.validity
        if not self.is_active(now):  # the reply came after its own validity (a stopped process)
            return self.tick(now)
        self._was_active = True
        return Change.BECAME_ACTIVE if new_term else Change.NONE

    def refused(self, holder: str | None, now: float) -> Change:
        """Another node holds the lease: whatever this node believed, it is standby now."""
        self.holder, self._until = holder, float("-inf")
        return self.tick(now)

    def tick(self, now: float) -> Change:
        """Time passed (a renewal failed or is still on its way): has the validity run out?"""
        if self._was_active and not self.is_active(now):
            self._was_active = False
            return Change.LOST
        return Change.NONE

    def remaining(self, now: float) -> float:
        return max(0.0, self._until - now)
