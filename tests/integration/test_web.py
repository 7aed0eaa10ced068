"""Issue 11: callwarden web in a real headless Chromium, against the lab PBX, real SIP phones,
the daemon and a real broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from callwarden.records import CallbackReason, CallbackStatus, NewCallback
from callwarden.store import Store
from callwarden.web import db
from tests.integration.harness import DaemonProcess, LabPbx, Mosquitto, free_tcp_port, stored_callbacks, wait_for_port
from tests.integration.test_events_out import Subscriber
from tests.integration.web_harness import (
    WebProcess,
    add_users,
    browser,
    click,
    screenshot,
    sign_in,
    text_of,
    wait_for,
)
from tests.sip.phone import TestPhone, audio_flows, heard, wait_until

pytestmark = pytest.mark.integration

LOCK_AFTER = 3


@pytest.fixture
def web_port() -> int:
    return free_tcp_port()


@pytest.fixture
def test_sections(
    test_sections: dict[str, dict[str, object]], mosquitto: Mosquitto, web_port: int
) -> dict[str, dict[str, object]]:
    """The daemon's and the page's config (one file, as in production): MQTT on, the page on
    a free port, a short lockout."""
    return test_sections | {
        "mqtt": {"enabled": True, "port": mosquitto.port, "site": "lab", "reconnect_min": 0.2},
        "web": {
            "port": web_port,
            "secret_key": "integration-test-secret-key-0123456789",
            "poll_seconds": 0.2,
            "max_failed_logins": LOCK_AFTER,
        },
    }


@pytest.fixture
def web(pbx: LabPbx, daemon_config: Path, store_path: Path, web_port: int) -> Iterator[str]:
    add_users(
        store_path,
        ("alice", "colleague", "billing", "PJSIP/colleague1"),
        ("bob", "colleague", "support", "PJSIP/colleague2"),
        ("sue", "supervisor", None, None),
    )
    proc = WebProcess(daemon_config).start()
    wait_for_port(web_port, 15, proc.proc)
    proc.wait_for("ami_logged_in")  # its own AMI user (click-to-call)
    yield f"http://127.0.0.1:{web_port}"
    proc.kill()


def today_label() -> str:
    return datetime.now(UTC).strftime("%m-%d")


def test_a_hand_over_callback_is_called_back_from_the_page(
    daemon: DaemonProcess,
    web: str,
    phone: Callable[..., TestPhone],
    pbx: LabPbx,
    store_path: Path,
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    with Subscriber(mosquitto.port, client_id="test-web") as mqtt, browser() as alice, browser() as other:
        sign_in(alice, web, "alice")
        wait_for(alice, "#empty")
        screenshot(alice, "worklist-empty", tmp_path)
        alice.execute_script("window.callwardenMarker = 'no reload'")

        # A call: the agent warns (an incident), then hands over; nobody answers: a callback.
        colleague = phone("colleague1")  # registered; rings for the hand-over, nobody answers
        caller, agent = phone("caller1"), phone("agent1", auto_answer=True)
        call = caller.call("100")
        agent_call = agent.next_call()
        call.wait_answered()
        agent_call.press("*1")
        daemon.wait_for("decision", where=lambda r: r.get("action") == "warn")
        heard(call, "warn")
        wait_until(lambda: pbx.bridged("caller1", "agent1"), 15, "caller and agent talk again")
        agent_call.press("*3")
        daemon.wait_for("decision", timeout=30, where=lambda r: r.get("reason", "").startswith("handover_unans"))
        colleague.next_call()  # the hand-over's ring, left unanswered
        call.wait_ended(30)
        (callback,) = stored_callbacks(store_path)

        # It appears on alice's page by itself (the page was not reloaded).
        row = f"#callback-{callback.id}"
        wait_for(alice, row)
        assert alice.execute_script("return window.callwardenMarker") == "no reload"
        text = text_of(alice, row)
        assert "Hand-over not answered" in text and "warned" in text and "handed over" in text
        assert "+4930******78" in text and "+493012345678" not in text  # colleagues see it masked
        screenshot(alice, "worklist", tmp_path)

        # bob (team support) does not see billing's callback.
        sign_in(other, web, "bob")
        wait_for(other, "#empty")
        assert not other.find_elements(By.CSS_SELECTOR, row)

        # Call back: alice's phone rings first, then the caller's; they talk.
        click(alice, f"{row} button.call")
        ringing = colleague.next_call(15)
        wait_for(alice, f"{row} .call-state.ringing")
        ringing.answer()
        callee = caller.next_call(15)
        callee.answer()
        callee.wait_answered()
        audio_flows(ringing, callee)
        audio_flows(callee, ringing)
        wait_for(alice, f"{row} .call-state.answered")
        screenshot(alice, "worklist-calling", tmp_path)

        # Reached: the callback is done, in the audit trail and on MQTT.
        click(alice, f"{row} button.outcome.reached")
        # (the row says done, then leaves the list of open callbacks with the next live update)
        wait_until(lambda: not alice.find_elements(By.CSS_SELECTOR, f'{row}[data-status="open"]'), 20, "row done")
        ringing.hangup()
        (done,) = stored_callbacks(store_path)
        assert (done.status, done.done_by) == (CallbackStatus.DONE, "alice")
        _, event = mqtt.next(lambda topic, body: isinstance(body, dict) and body.get("type") == "callback.attempt")
        assert event["data"]["outcome"] == "reached" and event["data"]["callback_id"] == callback.id
        assert event["data"]["status"] == "done" and event["data"]["call_linkedid"]

        # The supervisor's chart shows the incident (and the warning) of today.
        other.find_element(By.ID, "logout").click()
        sign_in(other, web, "sue")
        other.get(f"{web}/supervisor")
        day = today_label()
        incidents = other.find_element(
            By.CSS_SELECTOR, f'#chart-per-day rect[data-series="Incidents"][data-group="{day}"]'
        )
        warnings = other.find_element(
            By.CSS_SELECTOR, f'#chart-per-day rect[data-series="Warnings"][data-group="{day}"]'
        )
        assert (incidents.get_attribute("data-value"), warnings.get_attribute("data-value")) == ("1", "1")
        assert "2026-11-lab.1" in other.find_element(By.ID, "policy-version").text
        screenshot(other, "supervisor", tmp_path)
        other.get(f"{web}/supervisor/audit?agent=alice")
        assert "callback_attempt" in other.find_element(By.ID, "audit-rows").text
        screenshot(other, "audit", tmp_path)


def test_the_colleague_calling_back_has_the_hotkeys(
    daemon: DaemonProcess, web: str, phone: Callable[..., TestPhone], pbx: LabPbx, store_path: Path
) -> None:
    """The caller called back is the same caller: the colleague's *1 warns them, as an
    agent's does (the click-to-call leg is marked an agent's leg, dialplan callwarden-callback)."""
    with Store.open(str(store_path)) as store:
        now = datetime.now(UTC)
        callback = store.add_callback(
            NewCallback(
                created=now,
                caller_number="+493012345678",
                caller_name="Caller One",
                dialed_number="100",
                language="en",
                reason=CallbackReason.HANDOVER_UNANSWERED,
                agent="agent1",
                assignee="billing",
                due=now,
                linkedid="earlier.1",
            )
        )
    colleague, caller = phone("colleague1"), phone("caller1")
    with browser() as alice:
        sign_in(alice, web, "alice")
        row = f"#callback-{callback.id}"
        wait_for(alice, row)
        click(alice, f"{row} button.call")
        ringing = colleague.next_call(15)
        ringing.answer()
        callee = caller.next_call(15)
        callee.answer()
        callee.wait_answered()
        wait_until(lambda: pbx.bridged("colleague1", "caller1"), 15, "colleague and caller talk")
        ringing.press("*1")
        made = daemon.wait_for("decision", where=lambda r: r.get("action") == "warn")
        assert (made["agent"], made["outcome"]) == ("colleague1", "approved")
        heard(callee, "warn")
        wait_until(lambda: pbx.bridged("colleague1", "caller1"), 15, "colleague and caller talk again")
        audio_flows(ringing, callee)
        ringing.hangup()


def test_a_post_without_csrf_token_is_refused_in_the_browser(web: str, store_path: Path) -> None:
    with browser() as driver:
        sign_in(driver, web, "alice")
        wait_for(driver, "#worklist")
        forged = "return fetch('/callbacks/1/claim', {method: 'POST'}).then(r => r.status)"
        assert driver.execute_script(forged) == 403
        forged_form = (
            "return fetch('/logout', {method: 'POST', headers: {'content-type': "
            "'application/x-www-form-urlencoded'}, body: 'csrftoken=forged'}).then(r => r.status)"
        )
        assert driver.execute_script(forged_form) == 403
        driver.get(f"{web}/")
        assert driver.find_elements(By.ID, "logout")  # still signed in: the forged sign-out failed


def test_wrong_passwords_lock_the_account(web: str, tmp_path: Path) -> None:
    with browser() as driver:
        for _ in range(LOCK_AFTER - 1):
            sign_in(driver, web, "bob", "not the password")
            assert "wrong" in driver.find_element(By.ID, "login-error").text
        sign_in(driver, web, "bob", "not the password")
        assert "locked" in driver.find_element(By.ID, "login-error").text
        sign_in(driver, web, "bob")  # the right password: still locked
        assert "locked" in driver.find_element(By.ID, "login-error").text
        screenshot(driver, "login-locked", tmp_path)
        driver.delete_all_cookies()
        driver.get(f"{web}/login")
        screenshot(driver, "login", tmp_path)


def test_a_german_user_gets_the_page_in_german(web: str, store_path: Path) -> None:
    add_users(store_path, ("jan", "colleague", "support", None))
    with Store.open(str(store_path)) as store:
        db.update_user(store, "jan", language="de")
    with browser() as driver:
        sign_in(driver, web, "jan")
        wait_for(driver, "#empty")
        assert "Nichts zurückzurufen" in text_of(driver, "#empty")
