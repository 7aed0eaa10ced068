"""After every AMI login (and for a press from a channel the state lost): bring the call state
in line with what the PBX has now.

Pure: the tracked channels and Asterisk's ``CoreShowChannels`` snapshot in, the AMI-shaped
events that reconcile them out (fed through ``CallTracker.handle`` like any event). Calls that
started while the daemon was away become tracked (their hotkeys work); channels that ended
meanwhile are hung up in the state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from callwarden.ami.framing import Frame
from callwarden.state.channels import Channel, is_local


def resync_events(
    tracked: Mapping[str, Channel],
    snapshot: Iterable[Mapping[str, str]],
    *,
    tracked_before: Iterable[str] | None = None,
    ended_meanwhile: Iterable[str] = (),
) -> list[Frame]:
    """Events are still flowing while the snapshot is taken: only channels tracked before the
    request (``tracked_before``) can be stale, and channels whose hangup arrived meanwhile
    (``ended_meanwhile``) are not brought back."""
    candidates = set(tracked if tracked_before is None else tracked_before)
    ended = set(ended_meanwhile)
    events: list[Frame] = []
    present: set[str] = set()
    cut_short: set[str] = set()  # names of items without a Uniqueid
    for item in snapshot:
        name, uniqueid = item.get("Channel", ""), item.get("Uniqueid", "")
        if item.get("Event") != "CoreShowChannel" or not name:
            continue
        if is_local(name):
            events.extend(_local_half(item))  # no party: only what leads to one (state/local_pairs.py)
            continue
        if not uniqueid:
            # Asterisk always sends it: a caller ID number with a blank line ended this item
            # early. The channel is there all the same: keep the one tracked by that name.
            cut_short.add(name)
            continue
        present.add(uniqueid)
        if uniqueid in ended:
            continue
        if uniqueid not in tracked:
            events.append(
                {
                    "Event": "Newchannel",
                    "Channel": name,
                    "Uniqueid": uniqueid,
                    "Linkedid": item.get("Linkedid") or uniqueid,
                    "CallerIDNum": item.get("CallerIDNum", ""),
                    "CallerIDName": item.get("CallerIDName", ""),
                    # What it dialed: a Status item knows (DNID); CoreShowChannels shows only the
                    # current extension, so after a gap it is asked for (CALLERID(dnid)).
                    "Exten": item.get("DNID", ""),
                }
            )
        bridge = item.get("BridgeId", "")
        if bridge and (uniqueid not in tracked or tracked[uniqueid].bridge != bridge):
            events.append({"Event": "BridgeEnter", "Channel": name, "Uniqueid": uniqueid, "BridgeUniqueid": bridge})
    for uniqueid, channel in list(tracked.items()):
        if uniqueid in candidates and uniqueid not in present and channel.name not in cut_short:
            events.append({"Event": "Hangup", "Uniqueid": uniqueid})
    return events


def _local_half(item: Mapping[str, str]) -> list[Frame]:
    name, uniqueid, bridge = item.get("Channel", ""), item.get("Uniqueid", ""), item.get("BridgeId", "")
    if not uniqueid:
        return []
    events: list[Frame] = [{"Event": "Newchannel", "Channel": name, "Uniqueid": uniqueid}]
    if bridge:
        events.append({"Event": "BridgeEnter", "Channel": name, "Uniqueid": uniqueid, "BridgeUniqueid": bridge})
    return events


def status_item(reply: Iterable[Mapping[str, str]], name: str) -> dict[str, str] | None:
    """The channel ``name`` from an AMI ``Status`` reply, shaped as a ``CoreShowChannels`` item
    (for ``resync_events``), or None if the reply does not hold it whole (no such channel, or
    an item cut short by a caller ID number: its Uniqueid and Linkedid come after the number)."""
    for item in reply:
        if item.get("Event") != "Status" or item.get("Channel") != name:
            continue
        uniqueid, linkedid = item.get("Uniqueid", ""), item.get("Linkedid", "")
        if not uniqueid or not linkedid:
            return None
        return {
            "Event": "CoreShowChannel",
            "Channel": name,
            "Uniqueid": uniqueid,
            "Linkedid": linkedid,
            "CallerIDNum": item.get("CallerIDNum", ""),
            "CallerIDName": item.get("CallerIDName", ""),
            "BridgeId": item.get("BridgeID", ""),
            "DNID": item.get("DNID", ""),
        }
    return None
