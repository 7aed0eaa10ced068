"""Local channel pairs (``Local/201@ctx-0000002a;1`` and ``;2``) and the bridges they join. Pure.

A queue with Local members (and FreePBX, which rings every queue member as
``Local/NNN@from-queue/n``) puts two Local halves between the caller and the agent's phone:

    caller ── bridge A ── Local/…;1 ═(pair)═ Local/…;2 ── bridge B ── agent's phone

Neither half is a party: the agent is the phone, the caller the caller. The agent's
``BRIDGEPEER`` is then ``Local/…;2``; :meth:`LocalPairs.behind` walks from it through the pair
and the far bridge to the real channel (through several pairs, if Local members ring Local
members). A pair that optimizes away (no ``/n``) leaves: the phone takes ``;1``'s place in
bridge A (BridgeEnter with ``SwapUniqueid``), the halves hang up, and the phone's peer is the
caller itself.

The halves are paired by name (Asterisk names them together: the same name up to ``;1``/``;2``).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HOPS = 4  # Local members of Local members: deeper is no real PBX's dialplan


@dataclass(slots=True)
class LocalHalf:
    name: str
    uniqueid: str
    bridge: str | None = None


def partner_name(name: str) -> str | None:
    """``Local/201@q-0000002a;2`` -> ``Local/201@q-0000002a;1`` (and back); None if no half."""
    base, sep, half = name.rpartition(";")
    if not sep or half not in ("1", "2"):
        return None
    return f"{base};{'2' if half == '1' else '1'}"


class LocalPairs:
    """The Local halves alive, and who is in which bridge (every channel, Local or not)."""

    def __init__(self) -> None:
        self.halves: dict[str, LocalHalf] = {}  # by Uniqueid
        self._by_name: dict[str, str] = {}  # name -> Uniqueid
        self._bridges: dict[str, set[str]] = {}  # bridge -> the Uniqueids in it

    def add(self, name: str, uniqueid: str) -> None:
        if uniqueid not in self.halves:
            self.halves[uniqueid] = LocalHalf(name, uniqueid)
            self._by_name[name] = uniqueid

    def remove(self, uniqueid: str) -> None:
        half = self.halves.pop(uniqueid, None)
        if half is None:
            return
        if self._by_name.get(half.name) == uniqueid:
            del self._by_name[half.name]
        if half.bridge is not None:
            self.left(half.bridge, uniqueid)

    def forget(self, uniqueids: set[str]) -> None:
        """Halves a snapshot of the PBX no longer has (their Hangup was missed)."""
        for uniqueid in uniqueids:
            self.remove(uniqueid)

    def entered(self, bridge: str, uniqueid: str) -> None:
        self._bridges.setdefault(bridge, set()).add(uniqueid)
        if (half := self.halves.get(uniqueid)) is not None:
            half.bridge = bridge

    def left(self, bridge: str, uniqueid: str) -> None:
        members = self._bridges.get(bridge)
        if members is not None:
            members.discard(uniqueid)
            if not members:
                del self._bridges[bridge]
        half = self.halves.get(uniqueid)
        if half is not None and half.bridge == bridge:
            half.bridge = None

    def behind(self, name: str, *, not_uniqueid: str = "") -> str | None:
        """The Uniqueid of the real (not Local) channel behind the Local half ``name``: the
        other party in the bridge its partner half is in. ``not_uniqueid``: the channel
        asking (the agent), never its own answer. None while the far side is not bridged."""
        seen: set[str] = set()
        for _ in range(MAX_HOPS):
            uniqueid = self._by_name.get(name)
            other = partner_name(name)
            if uniqueid is None or other is None or uniqueid in seen:
                return None
            seen.add(uniqueid)
            far = self.halves.get(self._by_name.get(other, ""))
            if far is None or far.bridge is None:
                return None
            members = self._bridges.get(far.bridge, set()) - {far.uniqueid, not_uniqueid}
            if len(members) != 1:
                return None  # a conference, or nobody yet: no single party
            (found,) = members
            if (half := self.halves.get(found)) is None:
                return found
            name = half.name  # a Local member of a Local member: one more pair
        return None
