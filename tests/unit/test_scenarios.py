"""In-process scenarios (tests/unit/scenario.py): AMI events in, what the daemon decides, stores
and sends out; the faults of issue 12 among them. Each fault's scenario failed before its fix."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from structlog.testing import capture_logs

from callwarden.records import AuditEntry
from tests.unit.scenario import NO_WAIT, POLICY, Scenario, scenario

CALLER, AGENT = "PJSIP/caller1-00000001", "PJSIP/agent1-00000002"
NUMBER = "+493012345678"


def a_bridged_call(s: Scenario, linkedid: str = "c1", caller_uid: str = "c1", agent_uid: str = "a1") -> None:
    s.channel(CALLER, caller_uid, linkedid, number=NUMBER)
    s.channel(AGENT, agent_uid, linkedid, exten="s")
    s.bridge("b1", caller_uid, agent_uid)


def core_show_channels(*items: dict[str, str]) -> list[dict[str, str]]:
    return [
        {"Response": "Success", "EventList": "start"},
        *({"Event": "CoreShowChannel", "CallerIDName": "", **item} for item in items),
        {"Event": "CoreShowChannelsComplete", "EventList": "Complete"},
    ]


async def test_warn_then_end(tmp_path: Path) -> None:
    async with scenario(tmp_path, policy=NO_WAIT) as s:
        a_bridged_call(s)
        s.press("warn", AGENT, CALLER)
        await s.settled()
        (warn,) = s.ami.actions("Redirect")
        assert (warn["Channel"], warn["Context"], warn["ExtraChannel"], warn["ExtraContext"]) == (
            CALLER,
            "callwarden-caller-warn",
            AGENT,
            "callwarden-agent-warn",
        )
        s.press("end", AGENT, CALLER)  # still away from the bridge: ignored
        s.bridge("b2", "c1", "a1")  # the warning is over: both legs bridged again
        s.press("end", AGENT, CALLER)
        await s.settled()
        assert [r["Context"] for r in s.ami.actions("Redirect")] == ["callwarden-caller-warn", "callwarden-caller-end"]
        assert await s.decisions("c1") == [
            ("warn", "approved", "warning_given"),
            ("end", "ignored", "action_in_progress"),
            ("end", "approved", "end_approved"),
        ]
        # The caller had two incidents: flagged as a repeat caller (the follow-up decision).
        flags = [a for a in s.ami.actions("Setvar") if a["Variable"].startswith("CALLWARDEN_FLAG_")]
        assert {a["Variable"] for a in flags} == {
            "CALLWARDEN_FLAG_493012345678",
            "CALLWARDEN_FLAG_00493012345678",
            "CALLWARDEN_FLAG_03012345678",
        }
        assert [r.reason for r in await s.audit("c1") if r.action == "repeat_caller"] == ["repeat_caller_flagged"] * 2


async def test_a_restart_brings_back_the_warning_so_the_end_is_approved(tmp_path: Path) -> None:
    async with scenario(tmp_path, policy=NO_WAIT) as s:
        # Before the restart (another daemon process): the warning, in the audit trail.
        await s.store.add_audit(
            AuditEntry(
                at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30),
                linkedid="c1",
                agent="agent1",
                caller_number=NUMBER,
                action="warn",
                outcome="approved",
                reason="warning_given",
                policy_version=POLICY.version,
                detail={"agent_channel": AGENT, "caller_channel": CALLER},
            )
        )
        # After the login: the PBX's channels, then their memory.
        s.ami.replies["CoreShowChannels"] = lambda _a: core_show_channels(
            {"Channel": CALLER, "Uniqueid": "c1", "Linkedid": "c1", "CallerIDNum": NUMBER, "BridgeId": "b1"},
            {"Channel": AGENT, "Uniqueid": "a1", "Linkedid": "c1", "CallerIDNum": "201", "BridgeId": "b1"},
        )
        s.ami.replies["Getvar"] = lambda _a: {"Response": "Success", "Value": "100"}
        await s.recovery.resync()
        await s.recovery.restore_memory()
        s._uniqueids[AGENT] = "a1"
        s.press("end", AGENT, CALLER)
        await s.settled()
        assert ("end", "approved", "end_approved") in await s.decisions("c1")


async def test_a_press_from_a_lost_channel_is_looked_up_and_acted_on(tmp_path: Path) -> None:
    async with scenario(tmp_path) as s:
        s.channel(CALLER, "c1", "c1", number=NUMBER)
        s.bridge("b1", "c1")
        s._uniqueids[AGENT] = "a1"  # the agent's channel was never seen here
        s.ami.replies["Status"] = lambda a: [
            {"Response": "Success"},
            {"Event": "Status", "Channel": a["Channel"], "Uniqueid": "a1", "Linkedid": "c1", "BridgeID": "b1"},
            {"Event": "StatusComplete"},
        ]
        s.press("warn", AGENT, CALLER, Linkedid="c1")
        await s.settled()
        assert [a["Channel"] for a in s.ami.actions("Status")] == [AGENT]
        assert await s.decisions("c1") == [("warn", "approved", "warning_given")]


# -- the faults -----------------------------------------------------------------------------


async def test_after_a_pbx_restart_no_action_goes_to_a_channel_name_now_another_calls(tmp_path: Path) -> None:
    """A warning is under way when the PBX restarts; after the new login the resync finds the
    call gone, and a new call whose agent channel has the same name (chan_pjsip's numbers
    restart). The caller's synthetic Hangup used to make the daemon hang up the "agent" by
    name: the new call's agent."""
    async with scenario(tmp_path) as s:
        a_bridged_call(s)
        s.press("warn", AGENT, CALLER)
        await s.settled()
        s.ami.sent.clear()
        s.ami.replies["CoreShowChannels"] = lambda _a: core_show_channels(
            {"Channel": "PJSIP/caller2-00000001", "Uniqueid": "n1", "Linkedid": "n1", "CallerIDNum": "+4930999"},
            {"Channel": AGENT, "Uniqueid": "n2", "Linkedid": "n1", "CallerIDNum": "201"},
        )
        await s.recovery.resync()
        await s.settled()
        assert s.ami.actions("Hangup") == []
        failed = [r for r in await s.audit("c1") if r.outcome == "failed"]
        assert [r.reason.split(":")[0] for r in failed] == ["stale_channel"]


async def test_a_release_after_the_caller_hung_up_names_the_agent_by_uniqueid(tmp_path: Path) -> None:
    async with scenario(tmp_path) as s:
        a_bridged_call(s)
        s.press("warn", AGENT, CALLER)
        s.hangup("c1")  # the caller hangs up during the warning
        await s.settled()
        (hangup,) = s.ami.actions("Hangup")
        assert hangup["Channel"] == "a1"


async def test_a_press_whose_two_legs_are_both_unknown_looks_up_both(tmp_path: Path) -> None:
    async with scenario(tmp_path) as s:
        s._uniqueids[AGENT] = "a1"
        items = {
            AGENT: {"Event": "Status", "Channel": AGENT, "Uniqueid": "a1", "Linkedid": "c1", "BridgeID": "b1"},
            CALLER: {
                "Event": "Status",
                "Channel": CALLER,
                "Uniqueid": "c1",
                "Linkedid": "c1",
                "CallerIDNum": NUMBER,
                "BridgeID": "b1",
            },
        }
        s.ami.replies["Status"] = lambda a: [{"Response": "Success"}, items[a["Channel"]], {"Event": "StatusComplete"}]
        s.press("warn", AGENT, CALLER, Linkedid="c1")
        await s.settled()
        assert sorted(a["Channel"] for a in s.ami.actions("Status")) == sorted([AGENT, CALLER])
        assert await s.decisions("c1") == [("warn", "approved", "warning_given")]  # not "caller_gone"
        assert s.ami.actions("Redirect")


async def test_a_hotkey_event_without_a_channel_is_never_silent(tmp_path: Path) -> None:
    async with scenario(tmp_path) as s:
        a_bridged_call(s)
        with capture_logs() as logs:
            s.event(Event="UserEvent", UserEvent="CallwardenHotkey", Hotkey="end", Uniqueid="a1", Linkedid="c1")
            await s.settled()
        (row,) = [r for r in await s.audit() if r.outcome == "rejected"]
        assert (row.action, row.reason) == ("end", "bad_channel")
        assert [e["reason"] for e in logs if e["event"] == "hotkey_rejected"] == ["bad_channel"]
        metric = s.metrics.registry.get_sample_value("callwarden_hotkeys_rejected_total", {"reason": "bad_channel"})
        assert metric == 1.0
        assert s.ami.sent == []


async def test_a_press_from_the_callers_leg_is_refused_and_moves_nobody(tmp_path: Path) -> None:
    """Other dialplan enabled the features on the caller's channel too: the caller's *2 carries
    the right token but not the agent-leg mark. It used to be taken for the agent's (the
    caller as "agent", the agent as "caller"), and its refusal moved both legs."""
    async with scenario(tmp_path) as s:
        a_bridged_call(s)
        s.press("end", CALLER, AGENT, leg="")
        await s.settled()
        assert s.ami.sent == []
        (row,) = await s.audit()
        assert (row.action, row.outcome, row.reason) == ("end", "rejected", "not_agent_leg")
        assert s.book.memory_of("c1").origin is None
