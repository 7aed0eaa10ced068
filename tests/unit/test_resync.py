from __future__ import annotations

from callwarden.state.events import HotkeyPressed
from callwarden.state.resync import resync_events, status_item
from callwarden.state.tracker import CallTracker


def show(name: str, uniqueid: str, linkedid: str, num: str, bridge: str = "") -> dict[str, str]:
    return {
        "Event": "CoreShowChannel",
        "Channel": name,
        "Uniqueid": uniqueid,
        "Linkedid": linkedid,
        "CallerIDNum": num,
        "CallerIDName": "",
        "BridgeId": bridge,
    }


def test_calls_started_while_away_become_tracked_and_their_hotkeys_work() -> None:
    tracker = CallTracker()
    snapshot = [
        show("PJSIP/caller1-1", "c1", "c1", "+493012345678", "b1"),
        show("PJSIP/agent1-2", "a1", "c1", "201", "b1"),
        show("Local/x@y-0001;1", "l1", "c1", ""),
    ]
    for event in resync_events(tracker.channels, snapshot):
        tracker.handle(event)
    assert set(tracker.channels) == {"c1", "a1"} and set(tracker.calls) == {"c1"}
    assert tracker.channels["c1"].bridge == "b1"
    (pressed,) = tracker.handle(
        {
            "Event": "UserEvent",
            "UserEvent": "CallwardenHotkey",
            "Channel": "PJSIP/agent1-2",
            "Uniqueid": "a1",
            "Linkedid": "c1",
            "Hotkey": "warn",
            "Leg": "agent",
            "BridgePeer": "PJSIP/caller1-1",
        }
    )
    assert isinstance(pressed, HotkeyPressed) and pressed.caller_number == "+493012345678"


def test_channels_gone_while_away_are_hung_up_and_known_ones_left_alone() -> None:
    tracker = CallTracker()
    tracker.handle({"Event": "Newchannel", "Channel": "PJSIP/old-1", "Uniqueid": "o1", "Linkedid": "o1"})
    tracker.handle({"Event": "Newchannel", "Channel": "PJSIP/kept-2", "Uniqueid": "k1", "Linkedid": "k1"})
    events = resync_events(tracker.channels, [show("PJSIP/kept-2", "k1", "k1", "")])
    assert events == [{"Event": "Hangup", "Uniqueid": "o1"}]
    for event in events:
        tracker.handle(event)
    assert set(tracker.channels) == {"k1"} and set(tracker.calls) == {"k1"}


def test_nothing_to_do_when_in_sync() -> None:
    tracker = CallTracker()
    tracker.handle({"Event": "Newchannel", "Channel": "PJSIP/a-1", "Uniqueid": "u", "Linkedid": "u"})
    assert resync_events(tracker.channels, [show("PJSIP/a-1", "u", "u", "")]) == []
    assert resync_events({}, [{"Event": "CoreShowChannelsComplete"}, {"Event": "CoreShowChannel"}]) == []


def test_events_during_the_snapshot_win_over_it() -> None:
    tracker = CallTracker()
    # Tracked while the CoreShowChannels request was under way: not in the older snapshot.
    tracker.handle({"Event": "Newchannel", "Channel": "PJSIP/new-1", "Uniqueid": "n1", "Linkedid": "n1"})
    snapshot = [show("PJSIP/gone-2", "g1", "g1", "")]  # hung up while the snapshot travelled
    events = resync_events(tracker.channels, snapshot, tracked_before=set(), ended_meanwhile={"g1"})
    assert events == []


def test_an_item_cut_short_by_a_caller_number_does_not_hang_up_its_channel() -> None:
    """A caller ID number with a blank line ends that channel's item before its Uniqueid (the
    rest arrives as another frame): the channel is still there, and stays tracked."""
    tracker = CallTracker()
    tracker.handle({"Event": "Newchannel", "Channel": "PJSIP/caller1-1", "Uniqueid": "c1", "Linkedid": "c1"})
    tracker.handle({"Event": "Newchannel", "Channel": "PJSIP/gone-2", "Uniqueid": "g1", "Linkedid": "g1"})
    cut = {"Event": "CoreShowChannel", "Channel": "PJSIP/caller1-1", "CallerIDNum": "+4930"}
    assert resync_events(tracker.channels, [cut]) == [{"Event": "Hangup", "Uniqueid": "g1"}]


def status(name: str, **headers: str) -> dict[str, str]:
    return {"Event": "Status", "Channel": name, "Uniqueid": "c1", "Linkedid": "c1", "BridgeID": "b1", "DNID": "100"} | (
        headers
    )


def test_a_status_reply_gives_the_channel_as_a_resync_item() -> None:
    reply = [{"Response": "Success", "EventList": "start"}, status("PJSIP/c-1", CallerIDNum="+4930")]
    item = status_item([*reply, {"Event": "StatusComplete"}], "PJSIP/c-1")
    assert item is not None
    assert (item["Uniqueid"], item["Linkedid"], item["BridgeId"], item["DNID"]) == ("c1", "c1", "b1", "100")
    tracker = CallTracker()
    for event in resync_events(tracker.channels, [item], tracked_before=()):
        tracker.handle(event)
    channel = tracker.channel_by_name("PJSIP/c-1")
    assert channel is not None and (channel.number, channel.bridge, channel.dialed) == ("+4930", "b1", "100")


def test_a_status_reply_cut_short_or_for_another_channel_gives_nothing() -> None:
    cut = {"Event": "Status", "Channel": "PJSIP/c-1", "CallerIDNum": "+4930"}  # a blank line in the number
    assert status_item([cut], "PJSIP/c-1") is None
    assert status_item([status("PJSIP/other-2")], "PJSIP/c-1") is None
    assert status_item([{"Response": "Error", "Message": "No such channel"}], "PJSIP/c-1") is None
