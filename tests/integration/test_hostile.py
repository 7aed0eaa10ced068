"""Hostile caller IDs on the lab PBX: nothing reaches another call, nothing unexpected is sent.

A caller dials one of the lab's hostile numbers (config/asterisk/extensions.conf, 190-199):
its caller ID name (190-194) or number (195, 196, 198, 199) holds real CR/LF and other control
characters, built to inject an AMI action, a Hangup of every channel by regex, or a whole
forged CallwardenHotkey event naming another, live call (agent2's channel, Uniqueid and
Linkedid). Meanwhile caller2 talks to agent2 (the bystander). The hostile call's agent presses
a hotkey.

Oracles, each independent of the daemon:

* the bystander: both its channels still exist, are bridged together, audio flows both ways,
  no Hangup event for them, nothing originated (labtest AMI login, every event class);
* every AMI action Asterisk received during the hostile call (``manager set debug on`` makes
  Asterisk 22 log each action's headers to messages.log): only logins, pings and the daemon's
  Setvar/Redirect on the hostile call's own channels; no caller ID text in any action;
* what the daemon's AMI user reads (a second login with its user and event mask): exactly one
  CallwardenHotkey event, the real one; the caller ID name arrives escaped;
* the store: the callback holds the caller ID name exactly as Asterisk delivered it in AMI.

Caller ID *numbers* are not escaped by Asterisk 22: 196 forges a valid hotkey event in the
daemon's own stream: the dialplan's token (set by the daemon after each login) is what stops it
(docs/reliability.md). 198 and 199 forge a Hangup of the bystander's agent or caller channel:
the daemon forgets it, and the agent's next (genuine) press makes it re-read the PBX's
channels. The last tests inject hotkey events through the AMI ``UserEvent`` action (the trust
rule of callwarden.state.trust: bound to a live agent channel by its Uniqueid).
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from bench import sipua
from bench.sipua import Dialog, UserAgent

from callwarden.ami.framing import Frame, FrameDecoder, parse_frame
from callwarden.records import CallbackReason
from callwarden.state.events import HOTKEY_USEREVENT
from tests.audio import find_prompt, load_prompt, prompt_path
from tests.integration.harness import (
    DaemonProcess,
    LabPbx,
    ami_action,
    fetch,
    metric,
    stored_audit,
    stored_callbacks,
)
from tests.sip.phone import PhoneCall, TestPhone, audio_flows, heard, wait_until
from tests.tools.record_transcript import Recorder

pytestmark = pytest.mark.integration
T = TypeVar("T")

LAB_DIR = Path(os.environ.get("CALLWARDEN_LAB_DIR", "/var/lib/callwarden-lab"))
MESSAGES_LOG = LAB_DIR / "root" / "var" / "log" / "asterisk" / "messages.log"
CALLER1_FLAGS = ("493012345678", "00493012345678", "03012345678")
FORGE_GLOBALS = (
    "LAB_FORGE_CHANNEL",
    "LAB_FORGE_UNIQUEID",
    "LAB_FORGE_LINKEDID",
    "LAB_FORGE_PEER",
    "LAB_FORGE_PEER_UNIQUEID",
)
FORGED_LAST = f"Variable: {FORGE_GLOBALS[-1]}"  # the last action bystander_call sends


# -- oracles -----------------------------------------------------------------------------------


@dataclass
class AmiView:
    """A raw AMI login that records every frame (tests/tools/record_transcript.py's Recorder)."""

    recorder: Recorder
    data: bytes = b""
    frames: list[Frame] | None = None

    @classmethod
    def start(cls, username: str, secret: str, events: str) -> AmiView:
        recorder = Recorder(username, secret, events)
        recorder.start()
        return cls(recorder)

    def stop(self) -> list[Frame]:
        """Log out (close) and parse what was received; later calls return the same frames."""
        if self.frames is None:
            self.data = self.recorder.stop()
            self.frames = [parse_frame(text) for text in FrameDecoder().feed(self.data)]
        return self.frames


@dataclass
class ActionLog:
    """Every AMI action Asterisk received while ``manager set debug`` was on, from messages.log.

    Asterisk 22 logs each action as a ``<--- Examining AMI action: -->`` line followed by its
    headers (secrets redacted), one per line.
    """

    offset: int
    actions: list[dict[str, str]] = field(default_factory=list)

    def start_after(self, marker: str, timeout: float = 10) -> None:
        """Read only what follows the logged line holding ``marker`` (the test's own last action).

        Asterisk writes messages.log on its logger thread: an action's lines can land after its
        response has reached the test, so the file's size at that moment is no boundary.
        """
        self.offset = wait_until(lambda: self._end_of_line_with(marker), timeout, f"{marker!r} logged")

    def read(self, timeout: float = 10) -> list[dict[str, str]]:
        """The actions logged so far, up to a Ping of our own (so none still in the logger's queue
        is missed)."""
        marker = f"ActionID: action-log-end-{uuid.uuid4()}"
        ami_action({"Action": "Ping", "ActionID": marker.partition(": ")[2]})
        end = wait_until(lambda: self._end_of_line_with(marker), timeout, f"{marker!r} logged")
        with MESSAGES_LOG.open("rb") as log:
            log.seek(self.offset)
            text = log.read(end - self.offset).decode("utf-8", errors="replace")
        self.actions = []
        current: dict[str, str] | None = None
        for line in text.splitlines():
            if "<--- Examining AMI action: -->" in line:
                current = {}
                self.actions.append(current)
                continue
            if current is None:
                continue
            key, sep, value = line.partition(": ")
            if not sep or line.startswith("[") or " " in key:
                current = None  # the next log line: this action's headers are over
                continue
            current.setdefault(key, value)
        return self.actions

    def _end_of_line_with(self, marker: str) -> int | None:
        with MESSAGES_LOG.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        at = data.rfind(marker.encode())
        end = data.find(b"\n", at) if at >= 0 else -1
        return None if end < 0 else self.offset + end + 1


@pytest.fixture
def action_log(pbx: LabPbx, daemon: DaemonProcess) -> Iterator[ActionLog]:
    """AMI actions from now on (the daemon is logged in and has published its flags)."""
    daemon.wait_for("repeat_callers_synced")
    pbx.cli("manager set debug on")
    try:
        yield ActionLog(MESSAGES_LOG.stat().st_size)
    finally:
        pbx.cli("manager set debug off")


# -- calls ---------------------------------------------------------------------------------------


@dataclass
class Call:
    caller: PhoneCall
    agent: PhoneCall


def connect(phone: Callable[..., TestPhone], caller: str, number: str, agent: str) -> Call:
    caller_phone = phone(caller)
    agent_phone = phone(agent, auto_answer=True)
    placed = caller_phone.call(number)
    answered = agent_phone.next_call()
    placed.wait_answered()
    return Call(placed, answered)


def channel_of(pbx: LabPbx, endpoint: str) -> str:
    (name,) = [c for c in pbx.channels() if c.startswith(f"PJSIP/{endpoint}-")]
    return name


def delivered_name(frames: list[Frame], channel: str) -> str:
    """The caller ID name of ``channel`` as AMI last reported it."""
    names = [f["CallerIDName"] for f in frames if f.get("Channel") == channel and "CallerIDName" in f]
    assert names, f"no CallerIDName for {channel}"
    return names[-1]


# -- the scene: a bystander call, then the hostile one ------------------------------------------


@dataclass
class Bystander:
    call: Call
    agent: str
    caller: str
    uniqueid: str
    linkedid: str

    @property
    def channels(self) -> set[str]:
        return {self.agent, self.caller}


def bystander_call(phone: Callable[..., TestPhone], pbx: LabPbx) -> Bystander:
    """caller2 -> 101 -> agent2, up and talking; what 192/193/195/196 forge is set to it."""
    for flag in CALLER1_FLAGS:  # flags other tests' daemons left: no "[!]" prefix on the name
        ami_action({"Action": "Setvar", "Variable": f"CALLWARDEN_FLAG_{flag}", "Value": ""})
    call = connect(phone, "caller2", "101", "agent2")
    wait_until(lambda: pbx.bridged("caller2", "agent2"), 10, "caller2 and agent2 bridged")
    agent, caller = channel_of(pbx, "agent2"), channel_of(pbx, "caller2")
    info = pbx.channel_info(agent)
    other = Bystander(call, agent, caller, info["UniqueID"], info["LinkedID"])
    forged = (other.agent, other.uniqueid, other.linkedid, other.caller, pbx.channel_info(caller)["UniqueID"])
    for name, value in zip(FORGE_GLOBALS, forged, strict=True):
        ami_action({"Action": "Setvar", "Variable": name, "Value": value})
    return other


def assert_bystander_untouched(other: Bystander, pbx: LabPbx, daemon: DaemonProcess, full: list[Frame]) -> None:
    """The same two channels, still bridged, talking both ways; the daemon never decided on
    that call; no Hangup of its channels, nothing originated."""
    assert other.channels <= set(pbx.channels())
    assert pbx.bridged("caller2", "agent2")
    audio_flows(other.call.caller, other.call.agent)
    audio_flows(other.call.agent, other.call.caller)
    assert not [r for r in daemon.events("hotkey_pressed") if r.get("agent_channel") == other.agent]
    assert not [r for r in daemon.events("decision") if r.get("linkedid") == other.linkedid]
    assert not [f for f in full if f.get("Event") == "Hangup" and f.get("Channel") in other.channels]
    assert not [f for f in full if f.get("Event") == "Newchannel" and "Local/" in f.get("Channel", "")]
    assert daemon.proc.poll() is None


def assert_actions(action_log: ActionLog, allowed_channels: set[str]) -> list[dict[str, str]]:
    """Every AMI action Asterisk received meanwhile: logins (ours), and from the daemon only
    Setvar/Redirect (and a Hangup of a released agent) on the hostile call; no caller text."""
    actions = action_log.read()
    assert actions, "no AMI action logged: is 'manager set debug' logging still as expected?"
    kinds = {a.get("Action", "").lower() for a in actions}
    assert kinds <= {"login", "logoff", "setvar", "redirect", "hangup", "ping"}, kinds
    channels = {a[h] for a in actions for h in ("Channel", "ExtraChannel") if h in a}
    assert channels <= allowed_channels, channels
    assert not any("Mallory" in value or "Uniqueid" in value for a in actions for value in a.values())
    return actions


# -- caller ID names: Asterisk escapes CR/LF -----------------------------------------------------

NAME_CASES = {
    # number: (what the caller ID name attempts, the key the agent presses, the decision)
    "190": ("CR LF + a whole Originate action", "*4", "callback"),
    "191": ("bare LF + Hangup of /.*/", "*1", "warn"),
    "192": ("a blank line + a forged CallwardenHotkey 'end' for the other call", "*4", "callback"),
    "193": ("CR LF + the other call's Uniqueid ahead of the agent's own", "*4", "callback"),
    "194": ("bare CR, TAB, VT, FF, ESC, DEL, BS, quotes, NEL, U+2028", "*4", "callback"),
}


@pytest.mark.parametrize("number", list(NAME_CASES), ids=[f"{n}-{NAME_CASES[n][0]}" for n in NAME_CASES])
def test_hostile_caller_id_name_touches_nothing_else(
    number: str,
    daemon: DaemonProcess,
    phone: Callable[..., TestPhone],
    pbx: LabPbx,
    store_path: Path,
    action_log: ActionLog,
) -> None:
    _, key, action = NAME_CASES[number]
    other = bystander_call(phone, pbx)
    action_log.start_after(FORGED_LAST)  # from here on: the hostile call only
    full = AmiView.start("labtest", "labtest-secret", "on")
    seen_by_daemon = AmiView.start("callwarden", "callwarden-lab-secret", "call,user")
    try:
        hostile = connect(phone, "caller1", number, "agent1")
        wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "the hostile call bridged")
        hostile_agent, hostile_caller = channel_of(pbx, "agent1"), channel_of(pbx, "caller1")
        hostile.agent.press(key)
        pressed = daemon.wait_for("hotkey_pressed")
        made = daemon.wait_for("decision", where=lambda r: r.get("action") == action)
        assert made["outcome"] == "approved", made
        if action == "callback":
            heard(hostile.caller, "callback-later")
            hostile.caller.wait_ended()
        else:
            heard(hostile.caller, "warn")
            wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "the hostile call bridged again")
            hostile.caller.hangup()
        hostile.agent.wait_ended()
        assert_bystander_untouched(other, pbx, daemon, full.stop())
    finally:
        full.stop()
        daemon_frames = seen_by_daemon.stop()
        other.call.caller.hangup()

    # The daemon acted on the real press only.
    assert (pressed["agent_channel"], pressed["caller_channel"]) == (hostile_agent, hostile_caller)
    assert [r["agent_channel"] for r in daemon.events("hotkey_pressed")] == [hostile_agent]

    # What the daemon's AMI user read: one hotkey event (the real one); the name escaped.
    hotkeys = [f for f in daemon_frames if f.get("UserEvent") == HOTKEY_USEREVENT]
    assert [(f["Channel"], f["Hotkey"]) for f in hotkeys] == [(hostile_agent, action)]
    name = delivered_name(daemon_frames, hostile_caller)
    assert name.startswith("Mallory") and not any(c in name for c in "\r\n\x00"), repr(name)

    actions = assert_actions(action_log, {hostile_agent, hostile_caller})
    assert any(a.get("Action", "").lower() == "redirect" for a in actions)

    # The store keeps the name exactly as Asterisk delivered it in AMI.
    if action == "callback":
        (callback,) = stored_callbacks(store_path)
        rows = stored_audit(store_path, str(made["linkedid"]))
        assert callback.reason is CallbackReason.CALL_BACK_LATER
        assert (callback.caller_name, callback.caller_number) == (name, "+493012345678")
        assert ("callback", "approved") in [(r.action, r.outcome) for r in rows]


# -- caller ID numbers: Asterisk does not escape them --------------------------------------------


def test_cr_lf_in_the_caller_number_is_cleaned_before_the_agent_rings(
    daemon: DaemonProcess, phone: Callable[..., TestPhone], pbx: LabPbx, action_log: ActionLog
) -> None:
    """195: ``+493012345678\r\nUniqueid: <the bystander agent's>``. The caller's events while
    the number holds it repeat an identity header: ignored. callwarden-dial-agent removes the
    control characters before the agent's phone rings, so the agent's events, the hotkey event
    too, are whole again: the press is acted on, on the hostile call's own channels (before
    that step: it did nothing); the bystander is not touched."""
    other = bystander_call(phone, pbx)
    action_log.start_after(FORGED_LAST)  # from here on: the hostile call only
    full = AmiView.start("labtest", "labtest-secret", "on")
    try:
        hostile = connect(phone, "caller1", "195", "agent1")
        wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "the hostile call bridged")
        hostile_agent, hostile_caller = channel_of(pbx, "agent1"), channel_of(pbx, "caller1")
        daemon.wait_for("ami_frame_tampered", where=lambda r: r.get("ami_event") == "NewCallerid")
        hostile.agent.press("*4")
        pressed = daemon.wait_for("hotkey_pressed")
        assert (pressed["agent_channel"], pressed["caller_channel"]) == (hostile_agent, hostile_caller)
        made = daemon.wait_for("decision", where=lambda r: r.get("action") == "callback")
        assert made["outcome"] == "approved"
        assert made["linkedid"] == pbx.channel_info(hostile_agent)["LinkedID"] != other.linkedid
        hostile.caller.hangup()
        hostile.agent.wait_ended()
        assert_bystander_untouched(other, pbx, daemon, full.stop())
    finally:
        full.stop()
        other.call.caller.hangup()
    actions = assert_actions(action_log, {hostile_agent, hostile_caller})
    assert any(a.get("Action", "").lower() == "redirect" for a in actions)


def test_a_forged_hotkey_in_the_caller_number_is_not_acted_on(
    daemon: DaemonProcess, phone: Callable[..., TestPhone], pbx: LabPbx, action_log: ActionLog
) -> None:
    """196: the number ends its frame with a blank line and carries a CallwardenHotkey "end"
    for the bystander's agent channel, with its real Uniqueid and Linkedid."""
    other = bystander_call(phone, pbx)
    action_log.start_after(FORGED_LAST)  # from here on: the hostile call only
    full = AmiView.start("labtest", "labtest-secret", "on")
    try:
        hostile = connect(phone, "caller1", "196", "agent1")
        wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "the hostile call bridged")
        forged = daemon.wait_for("hotkey_rejected")  # a whole valid-looking event, but no token
        assert (forged["reason"], forged["agent_channel"]) == ("bad_token", other.agent)
        hostile.caller.hangup()
        hostile.agent.wait_ended()
        assert not [r for r in daemon.events("hotkey_pressed") if r.get("agent_channel") == other.agent]
        assert_actions(action_log, set())
        assert_bystander_untouched(other, pbx, daemon, full.stop())
    finally:
        full.stop()
        other.call.caller.hangup()


@pytest.mark.lost_channel
@pytest.mark.parametrize("number", ["198", "199"])
def test_a_hangup_forged_in_the_caller_number_does_not_disable_another_agents_keys(
    number: str, daemon: DaemonProcess, phone: Callable[..., TestPhone], pbx: LabPbx, store_path: Path, http_port: int
) -> None:
    """198 (199): the number ends its frame and carries a Hangup of the bystander's agent
    (caller) channel; no rule can tell it from a real one, so the daemon forgets that channel.
    The bystander agent's next press carries the dialplan's token: the daemon re-reads the
    PBX's channels, finds the channel alive and warns the caller, once; the hostile call is not
    touched."""
    other = bystander_call(phone, pbx)
    forgotten = other.agent if number == "198" else other.caller
    try:
        hostile = connect(phone, "caller1", number, "agent1")
        wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "the hostile call bridged")
        other.call.agent.press("*1")
        lost = daemon.wait_for("hotkey_channel_untracked")  # the forgery took: the channel was forgotten
        assert (lost["agent_channel"], lost["missing"]) == (other.agent, [forgotten])
        assert daemon.wait_for("channel_adopted")["channel"] == forgotten  # Asterisk has it
        recovered = daemon.wait_for("hotkey_channel_recovered")
        assert recovered["missing"] == [forgotten]
        decision = daemon.wait_for("decision", where=lambda r: r.get("linkedid") == other.linkedid)
        assert (decision["action"], decision["outcome"]) == ("warn", "approved")
        heard(other.call.caller, "warn", lang="de")  # 101 is the German line
        presses = [r for r in daemon.events("decision") if r.get("action") != "repeat_caller"]  # not its flag
        assert [r["linkedid"] for r in presses] == [other.linkedid]
        assert daemon.events("hotkey_rejected") == []
        assert [o for a, o, _ in audit_of(store_path, other.linkedid) if a == "warn"] == ["approved"]
        assert pbx.bridged("caller1", "agent1")
        text = fetch(http_port, "/metrics")[1]
        assert metric(text, 'callwarden_hotkey_channel_lookups_total{outcome="found"}') == 1
        hostile.caller.hangup()
        hostile.agent.wait_ended()
    finally:
        other.call.caller.hangup()


def test_asterisk_escapes_caller_id_names_but_not_app_data(pbx: LabPbx, phone: Callable[..., TestPhone]) -> None:
    """What Asterisk 22 does (docs/reliability.md): in the channel snapshot headers
    (CallerIDName, ConnectedLineName) CR and LF arrive as backslash-r / backslash-n; in a
    Newexten's AppData (event class ``dialplan``) the same text arrives raw and adds headers.
    The daemon's AMI user must therefore never read ``dialplan``."""
    full = AmiView.start("labtest", "labtest-secret", "on")
    try:
        call = connect(phone, "caller1", "190", "agent1")
        wait_until(lambda: pbx.bridged("caller1", "agent1"), 10, "bridged")
        caller = channel_of(pbx, "caller1")
        call.caller.hangup()
        call.agent.wait_ended()
    finally:
        frames = full.stop()
    assert delivered_name(frames, caller) == (
        "Mallory\\r\\nAction: Originate\\r\\nChannel: Local/600@lab-internal\\r\\nApplication: Hangup"
    )
    assert re.search(rb"AppData: CALLERID\(name\)=Mallory\r\nAction: Originate\r\n", full.data)
    assert any(f.get("Event") == "Newexten" and f.get("Action") == "Originate" for f in frames)


@dataclass
class TrunkCaller:
    """A caller from a SIP trunk (bench/sipua.py, endpoint bench-caller: its caller ID is the
    P-Asserted-Identity), on an event loop of its own beside the threaded test phones."""

    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    agent: UserAgent | None = None
    thread: threading.Thread | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, number: str, caller_id: tuple[str, str]) -> Dialog:
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="trunk-caller")
        self.thread.start()
        self.agent = self.run(UserAgent().start())
        return self.run(self.agent.call(number, caller_id=caller_id))

    def heard(self, dialog: Dialog, name: str, timeout: float = 15) -> None:
        prompt = load_prompt(prompt_path("en", name))
        wait_until(lambda: find_prompt(sipua.received_pcm(dialog.leg)[0], prompt) is not None, timeout, name)

    def hang_up(self, dialog: Dialog) -> None:
        assert self.agent is not None
        self.run(self.agent.bye(dialog))

    def close(self) -> None:
        if self.agent is not None:
            self.run(self.agent.stop())
        if self.thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        self.loop.close()


@pytest.mark.lost_channel
def test_a_trunk_caller_number_with_encoded_crlf_is_still_handled(
    daemon: DaemonProcess, phone: Callable[..., TestPhone], pbx: LabPbx
) -> None:
    """A SIP trunk's P-Asserted-Identity whose user part holds ``%0D%0A%0D%0A`` and a forged
    frame: Asterisk 22 decodes it into the caller ID number and sends it raw in AMI, from the
    very first event of the call (no dialplan ran yet: no FILTER at the edge can stop that one).
    The caller's channel is never seen whole; callwarden-dial-agent cleans the number before
    the agent's phone rings, so the agent's events are whole; the agent's press names a caller
    the daemon does not know, which it then finds by asking Asterisk: the warning plays."""
    agent_phone = phone("agent1", auto_answer=True)
    full = AmiView.start("labtest", "labtest-secret", "on")
    trunk = TrunkCaller()
    try:
        forged = "%2B493012345678%0D%0A%0D%0AEvent%3A%20LabSipForged%0D%0AX%3A%20y"
        dialog = trunk.call("100", ("Trunk", forged))
        answered = agent_phone.next_call()
        wait_until(lambda: pbx.bridged("bench-caller", "agent1"), 10, "the trunk call bridged")
        caller = channel_of(pbx, "bench-caller")
        answered.press("*1")
        lost = daemon.wait_for("hotkey_channel_untracked")
        assert lost["missing"] == [caller]  # its Newchannel never arrived whole
        assert daemon.wait_for("channel_adopted")["channel"] == caller  # its number is clean by now
        assert daemon.wait_for("hotkey_channel_recovered")["missing"] == [caller]
        made = daemon.wait_for("decision")
        assert (made["action"], made["outcome"]) == ("warn", "approved")
        trunk.heard(dialog, "warn")
        trunk.hang_up(dialog)
    finally:
        trunk.close()
        frames = full.stop()
    assert b"CallerIDNum: +493012345678\r\n\r\nEvent: LabSipForged\r\nX: y\r\n" in full.data
    assert any(f.get("Event") == "LabSipForged" for f in frames)
    assert {f.get("ConnectedLineNum") for f in frames if f.get("Channel", "").startswith("PJSIP/agent1-")} >= {
        "+493012345678Event: LabSipForgedX: y"  # cleaned: no CR LF left, the rest kept
    }


# -- hotkey events injected through AMI (the trust rule; replaces test_actions' injections) ------


def audit_of(store_path: Path, linkedid: str) -> list[tuple[str, str, str]]:
    return [(r.action, r.outcome, r.reason) for r in stored_audit(store_path, linkedid)]


def test_injected_press_bound_to_the_live_agent_channel_counts_as_a_press(
    daemon: DaemonProcess, phone: Callable[..., TestPhone], pbx: LabPbx, store_path: Path
) -> None:
    """The same key press reported twice (a bouncing key, a retransmission): an event that
    names the agent's channel *and its Uniqueid* is a press like the phone's own, and the
    second one is audited as a duplicate. Without the Uniqueid it is not acted on at all."""
    call = connect(phone, "caller1", "100", "agent1")
    call.agent.press("*1")
    first = daemon.wait_for("hotkey_pressed")
    agent = str(first["agent_channel"])
    uniqueid = pbx.channel_info(agent)["UniqueID"]
    headers = {"Channel": agent, "Linkedid": str(first["linkedid"]), "Hotkey": "warn"}
    pbx.inject_hotkey(headers | {"BridgePeer": str(first["caller_channel"])})  # no Uniqueid: not bound
    rejected = daemon.wait_for("hotkey_rejected")
    assert rejected["reason"] == "uniqueid_mismatch"
    pbx.inject_hotkey(headers | {"Uniqueid": uniqueid, "BridgePeer": str(first["caller_channel"])})
    made = daemon.wait_for("decision", where=lambda r: r.get("action") == "warn")
    duplicate = daemon.wait_for("decision", where=lambda r: r.get("action") == "warn")
    assert {made["reason"], duplicate["reason"]} == {"warning_given", "action_in_progress"}
    heard(call.caller, "warn")
    assert len(daemon.events("hotkey_pressed")) == 2  # the phone's press and the bound injection
    outcomes = sorted(o for a, o, _ in audit_of(store_path, str(first["linkedid"])) if a == "warn")
    assert outcomes == ["approved", "ignored", "rejected"]
    call.caller.hangup()


@pytest.mark.lost_channel
def test_injected_press_for_a_gone_or_unknown_channel_is_rejected_and_audited(
    daemon: DaemonProcess, phone: Callable[..., TestPhone], pbx: LabPbx, store_path: Path
) -> None:
    """A press after the call hung up (the agent's channel is gone too), or one for a channel
    that never existed: no decision, no action, but a log line and an audit row; the daemon
    lives on. (Both carry the token: the daemon asks the PBX for the channel first.)"""
    call = connect(phone, "caller1", "100", "agent1")
    call.agent.press("*1")
    first = daemon.wait_for("hotkey_pressed")
    agent = str(first["agent_channel"])
    uniqueid = pbx.channel_info(agent)["UniqueID"]
    daemon.wait_for("decision", where=lambda r: r.get("action") == "warn")
    call.caller.hangup()
    call.agent.wait_ended()
    wait_until(lambda: agent not in pbx.channels(), 10, "the agent's channel gone")
    pbx.inject_hotkey({"Channel": agent, "Uniqueid": uniqueid, "Linkedid": str(first["linkedid"]), "Hotkey": "end"})
    pbx.inject_hotkey(
        {"Channel": "PJSIP/agent2-ffffffff", "Uniqueid": "x.1", "Linkedid": "lab-none.1", "Hotkey": "end"}
    )
    late = daemon.wait_for("hotkey_rejected")
    unknown = daemon.wait_for("hotkey_rejected")
    assert (late["reason"], unknown["reason"]) == ("untracked_channel", "untracked_channel")
    missing = {tuple(r["missing"]) for r in daemon.events("hotkey_channel_not_found")}
    assert missing == {(agent,), ("PJSIP/agent2-ffffffff",)}
    assert [r for r in daemon.events("decision") if r.get("action") == "end"] == []
    assert len(daemon.events("hotkey_pressed")) == 1
    assert audit_of(store_path, "lab-none.1") == [("end", "rejected", "untracked_channel")]
    assert ("end", "rejected", "untracked_channel") in audit_of(store_path, str(first["linkedid"]))
    assert daemon.proc.poll() is None


def test_injected_press_on_a_call_without_caller_is_audited_as_no_caller(
    daemon: DaemonProcess, phone: Callable[..., TestPhone], pbx: LabPbx, store_path: Path
) -> None:
    """agent1 calls the echo test (no caller, no hotkey features): a press bound to its live
    channel is handled and audited as ``no_caller``, nothing is sent."""
    agent_phone = phone("agent1")
    echo = agent_phone.call("600")
    echo.wait_answered()
    agent = channel_of(pbx, "agent1")
    info = pbx.channel_info(agent)
    pbx.inject_hotkey(
        {
            "Channel": agent,
            "Uniqueid": info["UniqueID"],
            "Linkedid": info["LinkedID"],
            "Hotkey": "warn",
            "BridgePeer": "",
        }
    )
    alone = daemon.wait_for("decision", where=lambda r: r.get("action") == "warn")
    assert (alone["outcome"], alone["reason"]) == ("ignored", "no_caller")
    assert audit_of(store_path, info["LinkedID"]) == [("warn", "ignored", "no_caller")]
    echo.hangup()
