"""Hostile values from the PBX: stored intact, never sent back in an AMI action.

The caller controls their caller ID (name and number); the dialplan and other AMI users can
raise UserEvents. None of that may reach an AMI action unchecked (header injection, a Hangup
by regex) or make the daemon act on a call the event does not belong to. What the caller sent
is kept as it arrived in the store (parameterised SQL: any text is data), for a human to read.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from panoramisk.actions import Action

from callwarden.ami.client import AmiClient, AmiNotConnectedError, PreparedAction
from callwarden.ami.framing import CHANNEL_HEADERS, UnsafeActionError, check_action
from callwarden.config import AmiConfig
from callwarden.effects.executor import Executor
from callwarden.numbers import dialplan_keys, to_e164
from callwarden.policy.commands import Hangup, Redirect, SetVar, StoreCallback
from callwarden.policy.decide import decide
from callwarden.policy.rules import load_policy
from callwarden.policy.situation import CallFacts
from callwarden.state.events import (
    HOTKEY_USEREVENT,
    Hotkey,
    HotkeyPressed,
    HotkeyRejected,
    HotkeyRejection,
    HotkeyUntracked,
)
from callwarden.state.memory import CallMemory
from callwarden.state.tracker import CallTracker
from callwarden.state.trust import HOTKEY_TOKEN_HEADER
from callwarden.store import AsyncStore, Store

POLICY = load_policy(Path(__file__).resolve().parents[2] / "config" / "policy.toml")
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
CALLER, AGENT = "PJSIP/caller1-00000001", "PJSIP/agent1-00000002"
FACTS = CallFacts(caller_present=True, dialed="100", callback_number="+493012345678")

HOSTILE_NAMES = {
    "crlf_action": "x\r\nAction: Originate\r\nChannel: Local/600@lab-internal\r\nApplication: Hangup\r\n",
    "lf_regex_hangup": "x\nAction: Hangup\nChannel: /.*/\n",
    "forged_hotkey": (
        "\r\n\r\nEvent: UserEvent\r\nUserEvent: CallwardenHotkey\r\nHotkey: end\r\nChannel: PJSIP/agent2-1"
    ),
    "nul": "Mallory\x00Action: Hangup",
    "bare_cr": "Mallory\rAction: Hangup\rChannel: /.*/",
    "as_asterisk_escapes_it": "Mallory\\r\\nAction: Originate\\r\\n",
    "terminal_escapes": "\x1b[2J\x1b[31mred\x7f\x08\t\x0b\x0c",
    "unicode_separators": "Jürgen\u2028Müßig\u0085\u0418\u0432\u0430\u043d\u043e\u0432\u2029",
    "huge": "A" * 10_000,
}


class CheckingAmi:
    """The AMI as the daemon's client presents it: every action checked, then "sent" (recorded).

    ``AmiClient.send_action`` checks with the same ``framing.check_action`` before it touches
    the connection (test_client_checks_every_action_before_the_connection below).
    """

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []

    def prepare(self, action: dict[str, str]) -> PreparedAction:
        return PreparedAction(action)  # the client's own: checked, then encoded

    async def send_action(self, action: Mapping[str, str]) -> dict[str, str]:
        check_action(dict(action))
        self.sent.append(dict(action))
        return {"Response": "Success"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncStore]:
    opened = await AsyncStore.open(str(tmp_path / "callwarden.db"))
    yield opened
    await opened.close()


def _tracked_call(caller_name: str, caller_number: str = "+493012345678") -> CallTracker:
    tracker = CallTracker()
    tracker.handle(
        {
            "Event": "Newchannel",
            "Channel": CALLER,
            "Uniqueid": "c1",
            "Linkedid": "c1",
            "CallerIDNum": caller_number,
            "CallerIDName": caller_name,
        }
    )
    tracker.handle({"Event": "Newchannel", "Channel": AGENT, "Uniqueid": "a1", "Linkedid": "c1"})
    return tracker


def _press(tracker: CallTracker, hotkey: str, **headers: str) -> list[object]:
    event = {
        "Event": "UserEvent",
        "UserEvent": HOTKEY_USEREVENT,
        "Channel": AGENT,
        "Uniqueid": "a1",
        "Linkedid": "c1",
        "Hotkey": hotkey,
        "Leg": "agent",
        "BridgePeer": CALLER,
    }
    return list(tracker.handle(event | headers))


def assert_wire_safe(actions: list[dict[str, str]]) -> None:
    for action in actions:
        check_action(action)  # raises if unsafe
        for key, value in action.items():
            assert not any(c in value for c in "\r\n\x00"), (key, value)
            assert not (key.lower() in CHANNEL_HEADERS and value.startswith("/")), (key, value)


@pytest.mark.parametrize("name", list(HOSTILE_NAMES.values()), ids=list(HOSTILE_NAMES))
async def test_hostile_caller_name_is_stored_intact_and_never_sent(name: str, store: AsyncStore) -> None:
    tracker = _tracked_call(name)
    (press,) = _press(tracker, "callback")
    assert isinstance(press, HotkeyPressed)
    assert press.caller_name == name  # the tracker passes it on as Asterisk delivered it
    decision = decide(press, CallMemory(), FACTS, POLICY, T0)
    assert decision.reason == "callback_recorded"
    ami = CheckingAmi()
    assert await Executor(ami=ami, store=store).execute(decision)
    assert [a["Action"] for a in ami.sent] == ["Setvar"] * 4 + ["Redirect"]
    assert_wire_safe(ami.sent)
    assert not any(name in value for action in ami.sent for value in action.values())
    (callback,) = await store.list_callbacks()
    assert callback.caller_name == name  # byte for byte, control characters included
    (audit,) = await store.list_audit(linkedid="c1")
    assert (audit.action, audit.outcome) == ("callback", "approved")


def test_hostile_caller_name_read_back_by_a_second_process(tmp_path: Path) -> None:
    """What a supervisor's ``callwarden callbacks`` reads: the same text, from the file."""
    path = tmp_path / "callwarden.db"
    tracker = _tracked_call(HOSTILE_NAMES["crlf_action"])
    (press,) = _press(tracker, "callback")
    assert isinstance(press, HotkeyPressed)
    decision = decide(press, CallMemory(), FACTS, POLICY, T0)
    (callback,) = [c.callback for c in decision.commands if isinstance(c, StoreCallback)]
    writer = Store.open(str(path))
    try:
        writer.add_callback(callback)
    finally:
        writer.close()
    reader = Store.open(str(path))
    try:
        (stored,) = reader.list_callbacks()
    finally:
        reader.close()
    assert stored.caller_name == HOSTILE_NAMES["crlf_action"]


@pytest.mark.parametrize(
    "number",
    [
        "+4930\r\nUniqueid: forged",
        "+493012345678\r\nAction: Hangup\r\nChannel: /.*/",
        "+493012345678\nX",
        "0301234\x00",
        "/.*/",
        "<unknown>",
    ],
)
def test_hostile_caller_number_becomes_plain_digits_or_nothing(number: str) -> None:
    """Callback numbers, incidents and repeat-caller flags (AMI Setvar names!) use the E.164
    form only: whatever the caller sent, it is ``+`` and digits, or None."""
    e164 = to_e164(number, "49")
    assert e164 is None or re.fullmatch(r"\+[0-9]{6,15}", e164), e164
    if e164 is not None:
        for key in dialplan_keys(e164):
            check_action({"Action": "Setvar", "Variable": f"CALLWARDEN_FLAG_{key}", "Value": "1"})


@pytest.mark.parametrize(
    "channel",
    [
        "/.*/",
        "/PJSIP/",
        "PJSIP/agent1-00000002\r\nAction: Hangup",
        "PJSIP/agent1-00000002\nChannel: /.*/",
        "PJSIP/agent1\x00",
        "PJSIP/agent1-\x1b[2J",
        "agent1",
        "P" * 300,
    ],
)
def test_no_press_for_a_channel_no_pbx_would_name(channel: str) -> None:
    """Even a channel the tracker was told about (Newchannel) is no agent when its name is
    a regex, holds control characters or is absurd: nothing downstream ever sees it."""
    tracker = CallTracker()
    tracker.handle({"Event": "Newchannel", "Channel": channel, "Uniqueid": "a9", "Linkedid": "a9"})
    event = {"Event": "UserEvent", "UserEvent": HOTKEY_USEREVENT, "Channel": channel, "Uniqueid": "a9"}
    (rejected,) = tracker.handle(event | {"Hotkey": "end"})
    assert isinstance(rejected, HotkeyRejected) and rejected.reason is HotkeyRejection.BAD_CHANNEL
    assert all(c.isprintable() for c in rejected.agent_channel)  # safe to log and to audit
    assert sum(tracker.rejected.values()) == 1


@pytest.mark.parametrize("peer", ["/.*/", "PJSIP/caller1-00000001\r\nAction: Hangup", "PJSIP/x\x00"])
def test_hostile_bridge_peer_is_no_caller(peer: str) -> None:
    tracker = _tracked_call("Erika Mustermann")
    (press,) = _press(tracker, "end", BridgePeer=peer)
    assert isinstance(press, HotkeyPressed)
    assert press.caller_channel == CALLER  # falls back to the channel that started the call


def _press_of(agent_channel: str, caller_channel: str) -> HotkeyPressed:
    return HotkeyPressed(
        hotkey=Hotkey.WARN,
        linkedid="c1",
        agent_channel=agent_channel,
        agent_endpoint="agent1",
        caller_channel=caller_channel,
        caller_number="+493012345678",
        caller_name="x",
    )


@pytest.mark.parametrize(
    ("agent_channel", "caller_channel"),
    [
        (AGENT, "/.*/"),
        (AGENT, "PJSIP/caller1-00000001\r\nAction: Hangup"),
        ("PJSIP/agent1-00000002\nChannel: /.*/", CALLER),
        (AGENT, "PJSIP/caller1\x00"),
    ],
)
async def test_executor_sends_nothing_unsafe(agent_channel: str, caller_channel: str, store: AsyncStore) -> None:
    """Even if a hostile channel name got into a decision, no unsafe action reaches the wire:
    every action is checked before the first is sent, so the decision sends nothing at all
    (not half of its Setvars), and the failure is audited."""
    decision = decide(_press_of(agent_channel, caller_channel), CallMemory(), FACTS, POLICY, T0)
    ami = CheckingAmi()
    assert not await Executor(ami=ami, store=store).execute(decision)
    # None of the decision's actions; only the repeat-caller flags its stored incident leads to.
    assert [a for a in ami.sent if not a["Variable"].startswith("CALLWARDEN_FLAG_")] == []
    failed = [r for r in await store.list_audit(linkedid="c1") if r.outcome == "failed"]
    assert len(failed) == 1 and failed[0].reason.startswith("unsafe_value")


@pytest.mark.parametrize(
    "command",
    [
        Hangup("/.*/"),
        Hangup("PJSIP/a-1\r\nAction: Originate"),
        Redirect("PJSIP/a-1", "ctx", extra_channel="/.*/", extra_context="ctx"),
        SetVar("PJSIP/a-1", "CALLWARDEN_PEER", "PJSIP/b-2\nAction: Hangup"),
        SetVar(None, "CALLWARDEN_FLAG_49\r\n", "1"),
        SetVar("PJSIP/a-1", "X", "nul\x00"),
    ],
)
async def test_executor_send_refuses_each_unsafe_command(command: SetVar | Redirect | Hangup) -> None:
    ami = CheckingAmi()
    error = await Executor(ami=ami, store=_NoStore()).send([command])
    assert error is not None and error.startswith("unsafe_value")
    assert ami.sent == []


async def test_client_checks_every_action_before_the_connection() -> None:
    """The real client: an unsafe action fails with UnsafeActionError although there is no
    connection at all (the check comes first); a safe one gets as far as the connection."""
    client = AmiClient(config=AmiConfig(), on_event=lambda _frame: None)
    client.logged_in.set()  # pretend: the check must not depend on a live session
    with pytest.raises(UnsafeActionError):
        await client.send_action({"Action": "Hangup", "Channel": "/.*/"})
    with pytest.raises(UnsafeActionError):
        await client.send_action({"Action": "Setvar", "Variable": "X", "Value": "a\r\nAction: Originate"})
    with pytest.raises(AmiNotConnectedError):
        await client.send_action({"Action": "Hangup", "Channel": "PJSIP/a-1"})
    with pytest.raises(UnsafeActionError):
        client.prepare({"Action": "Redirect", "Channel": "PJSIP/a-1", "ExtraChannel": "/.*/"})
    prepared = client.prepare({"Action": "Setvar", "Channel": "PJSIP/a-1", "Variable": "X", "Value": "Jürgen"})
    assert str(prepared) == str(Action(dict(prepared)))  # encoded once, as panoramisk would
    assert str(prepared).startswith("Action: Setvar\r\nActionID: ") and str(prepared).endswith("\r\n\r\n")


class _NoStore:
    """``send`` needs no store."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the store was used: {name}")


# -- the optional token: what stops a whole forged event ------------------------------------------


def _token_tracker(token: str | None) -> CallTracker:
    tracker = CallTracker(hotkey_token=token)
    tracker.handle({"Event": "Newchannel", "Channel": CALLER, "Uniqueid": "c1", "Linkedid": "c1"})
    tracker.handle({"Event": "Newchannel", "Channel": AGENT, "Uniqueid": "a1", "Linkedid": "c1"})
    return tracker


@pytest.mark.parametrize(("sent", "acted"), [("s3cret-token", True), ("", False), ("s3cret", False), (None, False)])
def test_with_a_token_only_events_carrying_it_are_acted_on(sent: str | None, acted: bool) -> None:
    """A forged event can copy a live channel's name and Uniqueid (both guessable), not the
    token the daemon gave the dialplan."""
    tracker = _token_tracker("s3cret-token")
    headers = {} if sent is None else {HOTKEY_TOKEN_HEADER: sent}
    presses = [e for e in _press(tracker, "end", **headers) if isinstance(e, HotkeyPressed)]
    assert bool(presses) is acted
    assert tracker.rejected[HotkeyRejection.BAD_TOKEN] == (0 if acted else 1)


def test_without_a_token_the_header_is_ignored() -> None:
    (press,) = _press(_token_tracker(None), "end", **{HOTKEY_TOKEN_HEADER: "anything"})
    assert isinstance(press, HotkeyPressed)


# -- a real press from a channel the state lost: caught up with, then the same rule -----------


def test_a_press_with_the_token_from_a_channel_not_tracked_asks_to_catch_up() -> None:
    """E.g. a Hangup of the agent's channel forged in a caller ID number: the press is genuine
    (the token), the state is wrong. Not refused (nor counted) yet."""
    tracker = _token_tracker("s3cret-token")
    tracker.handle({"Event": "Hangup", "Channel": AGENT, "Uniqueid": "a1", "Linkedid": "c1"})
    (event,) = _press(tracker, "warn", **{HOTKEY_TOKEN_HEADER: "s3cret-token"})
    assert isinstance(event, HotkeyUntracked)
    assert (event.hotkey, event.agent_channel, event.missing, event.linkedid) == ("warn", AGENT, (AGENT,), "c1")
    assert not any(tracker.rejected.values())


def test_a_press_naming_a_bridge_peer_not_tracked_asks_to_catch_up_too() -> None:
    """The caller's channel forgotten instead: the press would go to a caller the daemon knows
    nothing about (no number for a callback, "no caller" for the policy)."""
    tracker = _token_tracker("s3cret-token")
    tracker.handle({"Event": "Hangup", "Channel": CALLER, "Uniqueid": "c1", "Linkedid": "c1"})
    (event,) = _press(tracker, "handover", **{HOTKEY_TOKEN_HEADER: "s3cret-token"})
    assert isinstance(event, HotkeyUntracked)
    assert (event.agent_channel, event.missing) == (AGENT, (CALLER,))
    tracker.handle(
        {"Event": "Newchannel", "Channel": CALLER, "Uniqueid": "c1", "Linkedid": "c1", "CallerIDNum": "+4930"}
    )
    (pressed,) = tracker.recheck_hotkey(event.frame)
    assert isinstance(pressed, HotkeyPressed)
    assert (pressed.caller_channel, pressed.caller_number) == (CALLER, "+4930")


@pytest.mark.parametrize(
    ("token", "peer"),
    [
        (None, "PJSIP/trunk-0000000a"),  # no token: nothing proves the dialplan sent it
        ("s3cret-token", "PJSIP/a-00000001,PJSIP/b-00000002"),  # a conference: BRIDGEPEER lists them
        ("s3cret-token", "Local/600@lab-internal-00000001;1"),  # plumbing, never tracked
        ("s3cret-token", "/.*/"),  # no channel at all
    ],
)
def test_a_peer_that_is_no_single_channel_or_no_token_is_no_reason_to_catch_up(token: str | None, peer: str) -> None:
    tracker = _token_tracker(token)
    (event,) = _press(tracker, "warn", BridgePeer=peer, **({HOTKEY_TOKEN_HEADER: token} if token else {}))
    assert isinstance(event, HotkeyPressed)


@pytest.mark.parametrize(("token", "sent"), [("s3cret-token", "wrong"), ("s3cret-token", None), (None, "anything")])
def test_without_the_token_a_press_from_a_channel_not_tracked_is_refused(token: str | None, sent: str | None) -> None:
    """Only the dialplan can make the daemon re-read the PBX (a forger could flood it)."""
    tracker = _token_tracker(token)
    tracker.handle({"Event": "Hangup", "Channel": AGENT, "Uniqueid": "a1", "Linkedid": "c1"})
    (event,) = _press(tracker, "warn", **({} if sent is None else {HOTKEY_TOKEN_HEADER: sent}))
    assert isinstance(event, HotkeyRejected)
    assert event.reason is HotkeyRejection.UNTRACKED_CHANNEL
    assert tracker.rejected[HotkeyRejection.UNTRACKED_CHANNEL] == 1


def test_the_recheck_acts_once_the_channel_is_back_and_refuses_for_good_otherwise() -> None:
    tracker = _token_tracker("s3cret-token")
    tracker.handle({"Event": "Hangup", "Channel": AGENT, "Uniqueid": "a1", "Linkedid": "c1"})
    (untracked,) = _press(tracker, "warn", **{HOTKEY_TOKEN_HEADER: "s3cret-token"})
    assert isinstance(untracked, HotkeyUntracked)
    (refused,) = tracker.recheck_hotkey(untracked.frame)  # still unknown: no second catch-up
    assert isinstance(refused, HotkeyRejected)
    assert refused.reason is HotkeyRejection.UNTRACKED_CHANNEL
    tracker.handle({"Event": "Newchannel", "Channel": AGENT, "Uniqueid": "a1", "Linkedid": "c1"})
    (pressed,) = tracker.recheck_hotkey(untracked.frame)
    assert isinstance(pressed, HotkeyPressed)
    assert (pressed.agent_channel, pressed.caller_channel, pressed.linkedid) == (AGENT, CALLER, "c1")


def test_the_recheck_keeps_the_whole_rule() -> None:
    """Back under another Uniqueid (a new channel of the same name): not that press's channel."""
    tracker = _token_tracker("s3cret-token")
    tracker.handle({"Event": "Hangup", "Channel": AGENT, "Uniqueid": "a1", "Linkedid": "c1"})
    (untracked,) = _press(tracker, "end", **{HOTKEY_TOKEN_HEADER: "s3cret-token"})
    assert isinstance(untracked, HotkeyUntracked)
    tracker.handle({"Event": "Newchannel", "Channel": AGENT, "Uniqueid": "a9", "Linkedid": "c9"})
    (refused,) = tracker.recheck_hotkey(untracked.frame)
    assert isinstance(refused, HotkeyRejected)
    assert refused.reason is HotkeyRejection.UNIQUEID_MISMATCH
