"""callwarden web through HTTP (Starlette's TestClient) on a real SQLite store; no PBX."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from starlette.testclient import TestClient

from callwarden.cli import main
from callwarden.store import AsyncStore, Store
from callwarden.store.schema import callback_claims, outbox
from callwarden.web import db
from callwarden.web.app import create_app
from callwarden.web.live import Changes
from tests.unit.web_helpers import (
    PASSWORD,
    add_audit,
    add_callback,
    add_user,
    client_for,
    page_token,
    sign_in,
    web_config,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "callwarden.db"
    with Store.open(str(path)) as store:
        add_user(store, "alice")  # billing
        add_user(store, "anna")  # billing too
        add_user(store, "bob", team="support")
        add_user(store, "sue", role="supervisor", team=None)
    return path


def test_a_colleague_signs_in_and_sees_their_teams_callbacks_only(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        billing = add_callback(store, "billing")
        support = add_callback(store, "support", linkedid="1700000000.9")
    with client_for(web_config(db_path)) as client:
        assert sign_in(client, "bob")[0] == 303
        page = client.get("/").text
        assert f'id="callback-{support}"' in page and f'id="callback-{billing}"' not in page
        token = page_token(client)
        refused = client.post(f"/callbacks/{billing}/claim", headers={"x-csrftoken": token})
        assert refused.status_code == 404  # another team's callback is not there for bob


def test_the_caller_number_is_masked_for_colleagues_and_shown_to_supervisors(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        add_callback(store)
    with client_for(web_config(db_path)) as client:
        sign_in(client, "alice")
        page = client.get("/").text
        assert "+4930******78" in page and "+493012345678" not in page
    with client_for(web_config(db_path)) as client:
        sign_in(client, "sue")
        assert "+493012345678" in client.get("/").text


def test_overdue_callbacks_come_first_and_the_calls_history_is_shown(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        later = add_callback(store, due_hours=5, linkedid="a")
        overdue = add_callback(store, due_hours=-2, linkedid="b")
        add_audit(store, "warn", linkedid="b")
        add_audit(store, "end", linkedid="b")
    with client_for(web_config(db_path)) as client:
        sign_in(client, "alice")
        page = client.get("/").text
    assert page.index(f'id="callback-{overdue}"') < page.index(f'id="callback-{later}"')
    row = page[page.index(f'id="callback-{overdue}"') :]
    assert "overdue" in row[:200]
    assert ">warned<" in row and ">ended<" in row
    assert "2 open, 1 overdue" in page


def test_wrong_passwords_lock_the_account_even_against_the_right_one(db_path: Path) -> None:
    with client_for(web_config(db_path, max_failed_logins=3, login_attempts_per_minute=100)) as client:
        assert [sign_in(client, "alice", "wrong password!")[0] for _ in range(2)] == [401, 401]
        status, text = sign_in(client, "alice", "wrong password!")
        assert status == 403 and "locked" in text
        status, text = sign_in(client, "alice", PASSWORD)
        assert status == 403 and "locked" in text
    result = CliRunner().invoke(
        main, ["users", "enable", "alice"], env={"CALLWARDEN_CONFIG": str(_config_file(db_path))}
    )
    assert result.exit_code == 0, result.output
    with client_for(web_config(db_path)) as client:
        assert sign_in(client, "alice")[0] == 303


def _config_file(db_path: Path) -> Path:
    path = db_path.with_suffix(".toml")
    path.write_text(f'[store]\npath = "{db_path}"\n')
    return path


def test_sign_in_is_rate_limited_per_client(db_path: Path) -> None:
    with client_for(web_config(db_path, login_attempts_per_minute=2)) as client:
        codes = [sign_in(client, "nobody", "wrong password!")[0] for _ in range(3)]
    assert codes == [401, 401, 429]


def test_a_post_without_the_csrf_token_is_refused(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        callback_id = add_callback(store)
    with client_for(web_config(db_path)) as client:
        sign_in(client, "alice")
        assert client.post(f"/callbacks/{callback_id}/claim").status_code == 403
        assert client.post(f"/callbacks/{callback_id}/claim", headers={"x-csrftoken": "forged"}).status_code == 403
        forged = client.post(f"/callbacks/{callback_id}/outcome", data={"outcome": "reached", "csrftoken": "x"})
        assert forged.status_code == 403
        with Store.open(str(db_path)) as store, store.reading() as conn:
            assert conn.execute(sa.select(callback_claims)).all() == []
        assert (
            client.post(f"/callbacks/{callback_id}/claim", headers={"x-csrftoken": page_token(client)}).status_code
            == 200
        )
    with client_for(web_config(db_path)) as fresh:  # the sign-in form itself is protected too
        reply = fresh.post("/login", data={"username": "alice", "password": PASSWORD}, follow_redirects=False)
        assert reply.status_code == 403


def test_session_cookies_are_httponly_samesite_and_secure_behind_tls(db_path: Path) -> None:
    with client_for(web_config(db_path, behind_tls=True), base_url="https://callbacks.example") as client:
        client.get("/login")
        token = client.cookies.get("csrftoken")
        reply = client.post(
            "/login", data={"username": "alice", "password": PASSWORD, "csrftoken": token}, follow_redirects=False
        )
    assert reply.status_code == 303
    cookie = next(v for k, v in reply.headers.multi_items() if k == "set-cookie" and "callwarden_session" in v)
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and "secure" in cookie.lower()


def test_two_colleagues_claiming_at_once_get_one_claim(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        callback_id = add_callback(store)
    start, results = threading.Barrier(8), []
    now = datetime.now(UTC)

    def claim(name: str) -> None:
        with Store.open(str(db_path)) as store:
            start.wait()
            held = db.claim(store, callback_id, name, now)
            assert held is not None
            results.append(held.username)

    threads = [threading.Thread(target=claim, args=(f"user{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 8 and len(set(results)) == 1  # everyone sees the one winner


def test_a_claimed_callback_shows_who_works_on_it(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        callback_id = add_callback(store)
    with client_for(web_config(db_path)) as alice:
        sign_in(alice, "alice")
        assert (
            alice.post(f"/callbacks/{callback_id}/claim", headers={"x-csrftoken": page_token(alice)}).status_code == 200
        )
    with client_for(web_config(db_path)) as anna:
        sign_in(anna, "anna")
        assert "claimed by alice" in anna.get("/").text
        again = anna.post(f"/callbacks/{callback_id}/claim", headers={"x-csrftoken": page_token(anna)})
        assert again.status_code == 409 and "Someone else works on this callback" in again.text
        outcome = anna.post(
            f"/callbacks/{callback_id}/outcome", data={"outcome": "reached"}, headers={"x-csrftoken": page_token(anna)}
        )
        assert outcome.status_code == 409


def test_reached_makes_the_callback_done_with_an_audit_row_and_an_mqtt_event(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        callback_id = add_callback(store)
    config = web_config(db_path).model_copy(
        update={"mqtt": web_config(db_path).mqtt.model_copy(update={"enabled": True, "site": "lab"})}
    )
    with client_for(config) as client:
        sign_in(client, "alice")
        token = page_token(client)
        client.post(f"/callbacks/{callback_id}/claim", headers={"x-csrftoken": token})
        reply = client.post(
            f"/callbacks/{callback_id}/outcome", data={"outcome": "reached"}, headers={"x-csrftoken": token}
        )
        assert reply.status_code == 200 and 'data-status="done"' in reply.text
    with Store.open(str(db_path)) as store:
        callback = store.get_callback(callback_id)
        assert callback is not None and (callback.status.value, callback.done_by) == ("done", "alice")
        (attempt,) = [a for a in store.list_audit() if a.action == "callback_attempt"]
        assert (attempt.outcome, attempt.agent, attempt.detail["callback_id"]) == ("reached", "alice", callback_id)
        with store.reading() as conn:
            (payload,) = conn.execute(sa.select(outbox.c.payload).where(outbox.c.topic == "callbacks")).scalars()
            assert conn.execute(sa.select(callback_claims)).all() == []
    assert '"type":"callback.attempt"' in payload and '"outcome":"reached"' in payload


def test_retry_at_moves_the_due_time_and_frees_the_callback(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        callback_id = add_callback(store)
    retry = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    with client_for(web_config(db_path)) as client:
        sign_in(client, "alice")
        token = page_token(client)
        client.post(f"/callbacks/{callback_id}/claim", headers={"x-csrftoken": token})
        bad = client.post(
            f"/callbacks/{callback_id}/outcome",
            data={"outcome": "retry", "retry_at": "soon"},
            headers={"x-csrftoken": token},
        )
        assert bad.status_code == 400
        reply = client.post(
            f"/callbacks/{callback_id}/outcome",
            data={"outcome": "retry", "retry_at": retry.strftime("%Y-%m-%dT%H:%M")},
            headers={"x-csrftoken": token},
        )
        assert reply.status_code == 200 and "Claim" in reply.text
    with Store.open(str(db_path)) as store:
        callback = store.get_callback(callback_id)
        assert callback is not None and callback.status.value == "open" and callback.due == retry


def test_a_disable_or_a_new_password_ends_open_sessions(db_path: Path) -> None:
    config_file = _config_file(db_path)
    with client_for(web_config(db_path)) as client:
        sign_in(client, "alice")
        assert client.get("/", follow_redirects=False).status_code == 200
        result = CliRunner().invoke(
            main,
            ["users", "passwd", "alice", "--password-stdin", "--config", str(config_file)],
            input="another long password\n",
        )
        assert result.exit_code == 0, result.output
        assert client.get("/", follow_redirects=False).headers["location"] == "/login"
        assert sign_in(client, "alice", "another long password")[0] == 303
        CliRunner().invoke(main, ["users", "disable", "alice", "--config", str(config_file)])
        assert client.get("/", follow_redirects=False).status_code == 303
        assert sign_in(client, "alice", "another long password")[0] == 401


def test_users_add_checks_team_against_the_policy_and_never_prints_hashes(db_path: Path) -> None:
    args = ["users", "add", "carl", "--team", "sales", "--password-stdin", "--config", str(_config_file(db_path))]
    result = CliRunner().invoke(main, args, input="a long password\n")
    assert result.exit_code != 0 and "no hand-over route's team" in result.output
    args[4] = "support"
    assert CliRunner().invoke(main, args, input="a long password\n").exit_code == 0
    listed = CliRunner().invoke(main, ["users", "list", "--config", str(_config_file(db_path))]).output
    assert "carl\tcolleague\tsupport" in listed and "argon2" not in listed


def test_the_supervisors_view_is_for_supervisors_and_counts_per_day_and_agent(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        add_audit(store, "warn", agent="agent1")
        add_audit(store, "warn", agent="agent1")
        add_audit(store, "end", outcome="refused", agent="agent2")
        add_callback(store, "support", due_hours=-1)
    with client_for(web_config(db_path)) as client:
        sign_in(client, "alice")
        assert client.get("/supervisor").status_code == 403
        assert client.get("/supervisor/audit.csv").status_code == 403
    with client_for(web_config(db_path)) as client:
        sign_in(client, "sue")
        page = client.get("/supervisor").text
    today = datetime.now(UTC).strftime("%m-%d")
    assert f'data-series="Warnings" data-group="{today}" data-value="2"' in page
    assert 'data-series="Refusals" data-group="agent2" data-value="1"' in page
    assert "2026-11-lab.1" in page and "<td>support</td><td>1</td><td>1</td>" in page.replace(
        '<td><a href="/?team=support">support</a></td>', "<td>support</td>"
    )


def test_audit_search_and_csv_export_keep_spreadsheets_safe(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        add_audit(store, "warn", agent="=HYPERLINK(1)")
        add_audit(store, "end", agent="agent2")
    with client_for(web_config(db_path)) as client:
        sign_in(client, "sue")
        page = client.get("/supervisor/audit", params={"agent": "agent2"}).text
        assert "agent2" in page and "HYPERLINK" not in page
        csv_text = client.get("/supervisor/audit.csv", params={"caller": "12345678"}).text
    assert csv_text.splitlines()[0].startswith("id,at,linkedid,agent,caller_number")
    assert "'=HYPERLINK(1)" in csv_text and "+493012345678" in csv_text


def test_a_proxy_header_names_the_user_only_from_a_trusted_proxy(db_path: Path) -> None:
    config = web_config(db_path, user_header="X-Remote-User", trusted_proxies=["10.0.0.5"])
    loop = asyncio.new_event_loop()
    store = loop.run_until_complete(AsyncStore.open(str(db_path)))
    try:
        for peer, expected in (("10.0.0.5", 200), ("10.0.0.6", 303)):
            app = create_app(config, store, dial=False)
            with TestClient(app, base_url="http://127.0.0.1", client=(peer, 5000)) as client:
                reply = client.get("/", headers={"X-Remote-User": "sue"}, follow_redirects=False)
                assert reply.status_code == expected, peer
    finally:
        loop.run_until_complete(store.close())
        loop.close()


async def test_a_live_stream_moves_on_when_something_changed() -> None:
    tokens = iter([(1, 1, 0), (1, 1, 0), (2, 1, 0)])

    async def read() -> object:
        return next(tokens, (2, 1, 0))

    changes = Changes(read, poll_seconds=0.01)
    watcher = asyncio.create_task(changes.watch())
    stream = changes.stream(keepalive=5)
    try:
        assert await asyncio.wait_for(anext(stream), 2) == 1  # the daemon's new callback (polled)
        changes.notify()  # this process's own write
        assert await asyncio.wait_for(anext(stream), 2) == 2
    finally:
        watcher.cancel()
        await stream.aclose()
