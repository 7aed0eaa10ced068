"""Active/standby (issue 13): the lease's state machine (pure), the [ha] configuration, and two
nodes' call handling in process on one store: the standby decides and sends nothing, and on
taking over it counts the warning the old active gave."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from callwarden.config import ConfigError, parse_config
from callwarden.metrics import HttpServer, Metrics
from callwarden.state.lease import Change, LeaseState, Timing
from tests.unit.scenario import scenario
from tests.unit.test_scenarios import AGENT, CALLER, NO_WAIT, a_bridged_call

TIMING = Timing(3.0)


def test_timing_stops_the_active_before_the_database_frees_the_lease_within_the_bound() -> None:
    assert TIMING.validity < TIMING.ttl < TIMING.bound
    assert TIMING.ttl + TIMING.poll < TIMING.bound  # a polling standby is in time, with a poll to spare


def test_a_grant_is_valid_from_before_the_request_and_no_longer() -> None:
    lease = LeaseState(TIMING)
    assert not lease.is_active(0.0)
    assert lease.granted(sent_at=10.0, generation=1, now=10.4) is Change.BECAME_ACTIVE
    assert lease.is_active(10.0 + TIMING.validity - 0.01)
    assert not lease.is_active(10.0 + TIMING.validity)  # counted from the request, not the reply


def test_a_renewal_keeps_the_term_and_a_failed_renewal_runs_out() -> None:
    lease = LeaseState(TIMING)
    lease.granted(sent_at=0.0, generation=7, now=0.01)
    assert lease.granted(sent_at=0.5, generation=7, now=0.51) is Change.NONE
    assert lease.tick(0.5 + TIMING.validity - 0.01) is Change.NONE  # renewals failing, still valid
    assert lease.tick(0.5 + TIMING.validity) is Change.LOST
    assert lease.tick(100.0) is Change.NONE  # lost once


def test_a_reply_read_after_its_validity_never_makes_the_node_act() -> None:
    """A stopped process (SIGSTOP) reads its last grant late: too late to act on."""
    lease = LeaseState(TIMING)
    lease.granted(sent_at=0.0, generation=3, now=0.01)
    assert lease.granted(sent_at=0.5, generation=3, now=30.0) is Change.LOST
    assert not lease.is_active(30.0)


def test_a_new_generation_is_a_new_term_and_a_refusal_means_standby() -> None:
    lease = LeaseState(TIMING)
    lease.granted(sent_at=0.0, generation=1, now=0.0)
    assert lease.refused("b/1234", now=0.5) is Change.LOST
    assert not lease.is_active(0.5) and lease.holder == "b/1234"
    assert lease.granted(sent_at=9.0, generation=2, now=9.0) is Change.BECAME_ACTIVE
    assert lease.generation == 2


def test_a_standby_that_is_refused_stays_standby_quietly() -> None:
    lease = LeaseState(TIMING)
    assert lease.refused("a/1", now=1.0) is Change.NONE
    assert lease.tick(5.0) is Change.NONE


@pytest.mark.parametrize(
    ("ha", "store", "ami", "wanted"),
    [
        ({"enabled": True, "node": "a"}, {"path": "/tmp/x.db"}, {"hotkey_token": "t" * 20}, "needs a PostgreSQL store"),
        ({"enabled": True, "node": "a"}, {"path": "postgresql+psycopg://cw@db/cw"}, {}, "needs ami.hotkey_token"),
        ({"enabled": True}, {"path": "postgresql+psycopg://cw@db/cw"}, {"hotkey_token": "t" * 20}, "ha.node"),
        ({"enabled": True, "node": "a", "lease_seconds": 0.1}, {}, {}, "ha.lease_seconds"),
    ],
)
def test_ha_configuration_errors_name_the_key(
    ha: dict[str, object], store: dict[str, object], ami: dict[str, object], wanted: str
) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"ha": ha, "store": store, "ami": ami})
    assert any(wanted in line for line in error.value.errors), error.value.errors


def test_ha_configuration_accepted_with_postgresql_and_a_shared_token() -> None:
    config = parse_config(
        {
            "ha": {"enabled": True, "node": "pbx1-a"},
            "store": {"path": "postgresql+psycopg://cw@db/cw"},
            "ami": {"hotkey_token": "t" * 20},
        }
    )
    assert (config.ha.node, config.ha.lease_seconds) == ("pbx1-a", 3.0)


async def test_the_standby_decides_nothing_then_takes_over_with_the_old_actives_warning(tmp_path: Path) -> None:
    standby_active = False
    async with (
        scenario(tmp_path, policy=NO_WAIT) as active,
        scenario(tmp_path, policy=NO_WAIT, may_act=lambda: standby_active) as standby,
    ):
        for node in (active, standby):  # both follow the same PBX
            a_bridged_call(node)
        for node in (active, standby):
            node.press("warn", AGENT, CALLER)
        await active.settled()
        await standby.settled()
        assert [a["Context"] for a in active.ami.actions("Redirect")] == ["callwarden-caller-warn"]
        assert standby.ami.sent == []  # no action at all
        assert await standby.decisions("c1") == [("warn", "approved", "warning_given")]  # one row: the active's
        for node in (active, standby):
            node.bridge("b2", "c1", "a1")  # the warning is over
        # The active dies; the standby's term starts (the step the lease is granted in).
        standby_active = True
        await standby.handling.begin_term()
        with capture_logs() as logs:
            standby.press("end", AGENT, CALLER)
            await standby.settled()
        assert [a["Context"] for a in standby.ami.actions("Redirect")] == ["callwarden-caller-end"]
        assert await standby.decisions("c1") == [
            ("warn", "approved", "warning_given"),
            ("end", "approved", "end_approved"),  # the warning given by the old active counted
        ]
        assert not [entry for entry in logs if entry["event"] == "standby_not_acting"]


async def test_a_node_whose_lease_ran_out_records_and_sends_nothing(tmp_path: Path) -> None:
    active = True
    async with scenario(tmp_path, policy=NO_WAIT, may_act=lambda: active) as s:
        a_bridged_call(s)
        active = False
        with capture_logs() as logs:
            s.press("warn", AGENT, CALLER)
            await s.settled()
        assert s.ami.sent == []
        assert await s.decisions("c1") == []
        assert [e["kind"] for e in logs if e["event"] == "standby_not_acting"] == ["HotkeyPressed"]


async def test_an_action_decided_while_active_is_not_sent_once_the_lease_ran_out(tmp_path: Path) -> None:
    """The executor checks again before each AMI action (after the commit): a node stopped in
    between (SIGSTOP) sends nothing when it runs again."""
    checks: list[bool] = []  # once set: the answers to the next checks, then False

    def may_act() -> bool:
        return True if not checks else checks.pop(0) if len(checks) > 1 else False

    async with scenario(tmp_path, policy=NO_WAIT, may_act=may_act) as s:
        a_bridged_call(s)
        checks.extend([True, True, False])  # the flow, the commit: active; the send: no longer
        with capture_logs() as logs:
            s.press("warn", AGENT, CALLER)
            await s.settled()
        assert s.ami.actions("Redirect") == []
        # The warning's Redirect is not sent; its follow-up (the repeat-caller flag) not looked at.
        assert [e["phase"] for e in logs if e["event"] == "standby_not_acting"] == ["send", "follow_ups"]
        (failure,) = [r for r in await s.audit("c1") if r.outcome == "failed"]
        assert "standby" in failure.reason


def test_healthz_says_standby_from_the_start_and_follows_the_role() -> None:
    """/healthz reads the role at each request: a standby never says active, not even before
    the first health round (the snapshot's default), and a new term shows at once."""

    class FakeRole:
        role = "standby"
        generation: int | None = None

    role = FakeRole()
    server = HttpServer(host="127.0.0.1", port=0, metrics=Metrics(), role=role)
    server.start()
    try:
        url = f"http://{server.address}/healthz"

        def document() -> dict[str, object]:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return dict(json.load(response))
            except urllib.error.HTTPError as failing:  # 503: not logged in yet, still a document
                return dict(json.load(failing))

        assert (document()["role"], document()["generation"]) == ("standby", None)
        role.role, role.generation = "active", 7
        assert (document()["role"], document()["generation"]) == ("active", 7)
    finally:
        server.stop()
