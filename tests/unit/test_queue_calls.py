"""Issue 10: queue calls whose member is a Local channel (in process, fake AMI: scenario.py).

The agent is the phone behind the Local pair, the caller the caller: a press from the phone,
whose bridge peer is a Local half, finds the real caller, and the commands move the real legs.
"""

from __future__ import annotations

from pathlib import Path

from callwarden.state.events import HotkeyPressed, HotkeyRejected, HotkeyRejection
from callwarden.state.local_pairs import LocalPairs, partner_name
from callwarden.state.resync import resync_events
from callwarden.state.tracker import CallTracker
from tests.unit.scenario import NO_WAIT, TOKEN, Scenario, scenario

CALLER, AGENT = "PJSIP/caller1-00000001", "PJSIP/agent1-00000004"
ONE, TWO = "Local/201@lab-queue-member-00000000;1", "Local/201@lab-queue-member-00000000;2"
NUMBER = "+493012345678"


def a_local_member_call(s: Scenario, linkedid: str = "c1") -> None:
    """caller -- b1 -- Local;1 =pair= Local;2 -- b2 -- agent's phone (a member with /n)."""
    s.channel(CALLER, "c1", linkedid, number=NUMBER, exten="111")
    s.channel(ONE, "l1", linkedid, exten="201")
    s.channel(TWO, "l2", linkedid, exten="201")
    s.channel(AGENT, "a1", linkedid, exten="s")
    s.bridge("b2", "l2", "a1")
    s.bridge("b1", "c1", "l1")


def test_partner_names() -> None:
    assert partner_name(ONE) == TWO and partner_name(TWO) == ONE
    assert partner_name("Local/201@ctx-0000000a") is None
    assert partner_name("PJSIP/agent1-00000004") is None


def test_behind_walks_through_pairs_and_gives_up_on_conferences() -> None:
    pairs = LocalPairs()
    for name, uid in ((ONE, "l1"), (TWO, "l2"), ("Local/9@x-0001;1", "m1"), ("Local/9@x-0001;2", "m2")):
        pairs.add(name, uid)
    # caller -- b1 -- m1 =pair= m2 -- b3 -- l1 =pair= l2 -- b2 -- agent
    for bridge, uid in (("b1", "c1"), ("b1", "m1"), ("b3", "m2"), ("b3", "l1"), ("b2", "l2"), ("b2", "a1")):
        pairs.entered(bridge, uid)
    assert pairs.behind(TWO, not_uniqueid="a1") == "c1"
    assert pairs.behind("Local/9@x-0001;1", not_uniqueid="c1") == "a1"
    pairs.entered("b1", "c2")  # a third party in the caller's bridge: no single caller
    assert pairs.behind(TWO, not_uniqueid="a1") is None
    pairs.left("b1", "c2")
    pairs.remove("m1")
    assert pairs.behind(TWO, not_uniqueid="a1") is None  # the chain is broken
    assert pairs.behind("PJSIP/agent1-00000004") is None


def test_a_press_behind_a_local_member_names_the_real_caller() -> None:
    tracker = CallTracker(hotkey_token=TOKEN)
    for name, uid in ((CALLER, "c1"), (ONE, "l1"), (TWO, "l2"), (AGENT, "a1")):
        tracker.handle({"Event": "Newchannel", "Channel": name, "Uniqueid": uid, "Linkedid": "x9"})
    for bridge, uid in (("b1", "c1"), ("b1", "l1"), ("b2", "l2"), ("b2", "a1")):
        tracker.handle({"Event": "BridgeEnter", "Uniqueid": uid, "BridgeUniqueid": bridge})
    assert set(tracker.channels) == {"c1", "a1"}  # the halves are no parties
    press = {"Event": "UserEvent", "UserEvent": "CallwardenHotkey", "Hotkey": "warn", "Leg": "agent", "Token": TOKEN}
    # Linkedid x9 is no channel's Uniqueid (the caller came in transferred): only the pair leads
    # from the agent's peer Local;2 to the caller.
    (pressed,) = tracker.handle(press | {"Channel": AGENT, "Uniqueid": "a1", "BridgePeer": TWO})
    assert isinstance(pressed, HotkeyPressed)
    assert (pressed.caller_channel, pressed.caller_uniqueid, pressed.agent_channel) == (CALLER, "c1", AGENT)
    # The same Local pair pressing (features inherited by the halves): never the agent.
    (refused,) = tracker.handle(press | {"Channel": TWO, "Uniqueid": "l2", "BridgePeer": AGENT})
    assert isinstance(refused, HotkeyRejected) and refused.reason is HotkeyRejection.LOCAL_CHANNEL


def test_a_resync_brings_back_the_pair() -> None:
    tracker = CallTracker(hotkey_token=TOKEN)
    snapshot = [
        {"Event": "CoreShowChannel", "Channel": n, "Uniqueid": u, "Linkedid": "x9", "BridgeId": b}
        for n, u, b in ((CALLER, "c1", "b1"), (ONE, "l1", "b1"), (TWO, "l2", "b2"), (AGENT, "a1", "b2"))
    ]
    for event in resync_events(tracker.channels, snapshot):
        tracker.handle(event)
    assert tracker.behind_local(TWO, not_uniqueid="a1") is tracker.channels["c1"]


async def test_warn_then_end_on_a_local_member_call_moves_the_real_legs(tmp_path: Path) -> None:
    async with scenario(tmp_path, policy=NO_WAIT) as s:
        a_local_member_call(s)
        s.press("warn", AGENT, TWO)
        await s.settled()
        (warn,) = s.ami.actions("Redirect")
        assert (warn["Channel"], warn["Context"], warn["ExtraChannel"], warn["ExtraContext"]) == (
            CALLER,
            "callwarden-caller-warn",
            AGENT,
            "callwarden-agent-warn",
        )
        # Both legs leave their bridges; the Local pair, alone, hangs up: the call goes on.
        for bridge, uid in (("b1", "c1"), ("b2", "a1"), ("b1", "l1"), ("b2", "l2")):
            s.event(Event="BridgeLeave", Uniqueid=uid, BridgeUniqueid=bridge)
        s.hangup("l1")
        s.hangup("l2")
        s.bridge("b3", "c1", "a1")  # the warning is over: Bridge() joins the two directly
        s.press("end", AGENT, CALLER)
        await s.settled()
        assert [r["Context"] for r in s.ami.actions("Redirect")] == ["callwarden-caller-warn", "callwarden-caller-end"]
        assert await s.decisions("c1") == [("warn", "approved", "warning_given"), ("end", "approved", "end_approved")]


async def test_a_member_that_optimizes_away_swaps_in_for_its_local_half(tmp_path: Path) -> None:
    async with scenario(tmp_path, policy=NO_WAIT) as s:
        a_local_member_call(s)
        # No /n: the phone takes Local;1's place in the caller's bridge, the pair hangs up.
        s.event(Event="BridgeLeave", Uniqueid="a1", BridgeUniqueid="b2")
        s.event(Event="BridgeEnter", Uniqueid="a1", BridgeUniqueid="b1", SwapUniqueid="l1")
        s.event(Event="BridgeLeave", Uniqueid="l1", BridgeUniqueid="b1")
        s.event(Event="BridgeLeave", Uniqueid="l2", BridgeUniqueid="b2")
        s.hangup("l1")
        s.hangup("l2")
        s.press("callback", AGENT, CALLER)
        await s.settled()
        (moved,) = s.ami.actions("Redirect")
        assert (moved["Channel"], moved["ExtraChannel"]) == (CALLER, AGENT)
        assert await s.decisions("c1") == [("callback", "approved", "callback_recorded")]


async def test_a_resync_forgets_local_halves_whose_hangup_was_missed(tmp_path: Path) -> None:
    async with scenario(tmp_path, policy=NO_WAIT) as s:
        a_local_member_call(s)
        assert set(s.tracker.locals.halves) == {"l1", "l2"}
        # AMI was down while the pair optimized away: the snapshot has the caller and the phone only.
        s.ami.replies["CoreShowChannels"] = lambda _a: [
            {"Response": "Success", "EventList": "start"},
            *(
                {"Event": "CoreShowChannel", "Channel": n, "Uniqueid": u, "Linkedid": "c1", "BridgeId": "b1"}
                for n, u in ((CALLER, "c1"), (AGENT, "a1"))
            ),
            {"Event": "CoreShowChannelsComplete", "EventList": "Complete"},
        ]
        await s.recovery.resync()
        assert s.tracker.locals.halves == {}
        s.press("warn", AGENT, CALLER)
        await s.settled()
        (warn,) = s.ami.actions("Redirect")
        assert (warn["Channel"], warn["ExtraChannel"]) == (CALLER, AGENT)
