"""The one owner of what the daemon keeps per call besides the channels: the decisions'
memory, when a press started the clock, the calls whose memory is being read back (and their
events meanwhile), and the agents' approved ends of the last hour. Pure: times are passed in.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from callwarden.state.events import CallbackNumberEntered, ChannelHungUp, DomainEvent, HandoverUnanswered, HotkeyPressed
from callwarden.state.memory import CallMemory

# Events whose decisions read a call's memory: held while that memory is read back.
HELD_WHILE_RESTORING = (HotkeyPressed, HandoverUnanswered, CallbackNumberEntered, ChannelHungUp)
HeldEvent = HotkeyPressed | HandoverUnanswered | CallbackNumberEntered | ChannelHungUp
HOUR = 3600.0


class EndsWindow:
    """Approved ends per agent within the last hour (the policy's ``max_ends_per_hour``), on a
    monotonic clock."""

    def __init__(self) -> None:
        self._times: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def record(self, agent: str, at: float) -> None:
        self._times[agent].append(at)

    def count(self, agent: str, now: float) -> int:
        times = self._times.get(agent)
        if times is None:
            return 0
        while times and times[0] < now - HOUR:
            times.popleft()
        return len(times)


class CallBook:
    def __init__(self) -> None:
        self._memory: dict[str, CallMemory] = {}  # by Linkedid
        self._press_times: dict[str, float] = {}  # Linkedid -> when its first press was read
        self._restoring: set[str] = set()  # calls whose memory is being read from the store
        self._held: list[HeldEvent] = []  # their events meanwhile, in order
        self.ends = EndsWindow()

    # -- memory ------------------------------------------------------------------------------

    def memory_of(self, linkedid: str) -> CallMemory:
        return self._memory.get(linkedid, CallMemory())

    def knows(self, linkedid: str) -> bool:
        return linkedid in self._memory

    def remember(self, linkedid: str, memory: CallMemory | None) -> None:
        if memory is not None:
            self._memory[linkedid] = memory

    def forget(self, linkedid: str) -> None:
        """The call ended: nothing of it is kept."""
        self._memory.pop(linkedid, None)
        self._press_times.pop(linkedid, None)

    def __len__(self) -> int:
        return len(self._memory)

    # -- the hotkey -> announcement clock ------------------------------------------------------

    def press_read(self, linkedid: str, at: float) -> None:
        self._press_times.setdefault(linkedid, at)  # the first press starts the clock

    def announcement_started(self, linkedid: str) -> float | None:
        """When the press that led to this announcement was read (once per press)."""
        return self._press_times.pop(linkedid, None)

    # -- memory read back from the audit trail -------------------------------------------------

    def begin_restore(self, linkedids: Iterable[str]) -> list[str]:
        """Of ``linkedids``, those with no memory here and no restore under way: their events
        that read the memory are held from now on, until :meth:`end_restore`."""
        unknown = [c for c in linkedids if c not in self._memory and c not in self._restoring]
        self._restoring.update(unknown)
        return unknown

    def restored(self, linkedid: str, memory: CallMemory) -> bool:
        """The memory read back for a call: kept unless the call has one by now, or it is empty."""
        if linkedid in self._memory or memory == CallMemory():
            return False
        self._memory[linkedid] = memory
        return True

    def end_restore(self, linkedids: Iterable[str]) -> list[HeldEvent]:
        """The restore of ``linkedids`` is over: every event held meanwhile, in order, to route
        again (those of calls another restore still reads are held again)."""
        self._restoring.difference_update(linkedids)
        held, self._held = self._held, []
        return held

    def hold(self, event: DomainEvent) -> bool:
        """Hold ``event`` if it reads the memory of a call being restored."""
        if not self._restoring or not isinstance(event, HELD_WHILE_RESTORING) or event.linkedid not in self._restoring:
            return False
        self._held.append(event)
        return True
