from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner, Result

from callwarden.cli import main
from callwarden.cli.output import AUDIT_FIELDS, CALLBACK_FIELDS
from callwarden.records import AuditEntry, CallbackReason, CallbackStatus, Incident, NewCallback
from callwarden.store import Store

NUMBER = "+493012345678"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # the CLI points structlog at the runner's (closed) stderr


def new_callback(**kw: object) -> NewCallback:
    values: dict[str, object] = {
        "created": NOW - timedelta(hours=1),
        "caller_number": NUMBER,
        "caller_name": "Erika Mustermann",
        "dialed_number": "100",
        "language": "de",
        "reason": CallbackReason.END,
        "agent": "agent1",
        "assignee": "team-billing",
        "due": NOW + timedelta(hours=23),
        "linkedid": "1700000000.1",
    } | kw
    return NewCallback(**values)  # type: ignore[arg-type]


def audit_entry(**kw: object) -> AuditEntry:
    values: dict[str, object] = {
        "at": NOW - timedelta(minutes=30),
        "linkedid": "1700000000.1",
        "agent": "agent1",
        "caller_number": NUMBER,
        "action": "end",
        "outcome": "approved",
        "reason": "warned_before",
        "policy_version": "2025-03-01",
        "detail": {"warnings": 1, "agent_channel": "PJSIP/agent1-00000001"},
    } | kw
    return AuditEntry(**values)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "callwarden.db"
    with Store.open(str(path)) as store:
        store.add_callback(new_callback())  # id 1, open
        done = store.add_callback(new_callback(created=NOW - timedelta(hours=2), caller_name="Max"))  # id 2
        store.mark_done(done.id, "alice", NOW - timedelta(minutes=10))
        store.add_callback(
            new_callback(caller_number=None, caller_name=None, reason=CallbackReason.WITHHELD, linkedid="1700000000.9")
        )  # id 3, open, newest
        store.add_audit(audit_entry())
        store.add_audit(audit_entry(at=NOW - timedelta(minutes=20), action="hangup_done", outcome="done", detail={}))
        store.add_audit(audit_entry(at=NOW - timedelta(days=3), linkedid="1699990000.5", action="warn"))
    return path


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# -- callbacks ------------------------------------------------------------------------------------


def test_callbacks_list_table_shows_open_callbacks_with_full_numbers(db: Path) -> None:
    result = cli("callbacks", "list", "--db", str(db))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "id",
        "created",
        "(UTC)",
        "caller",
        "number",
        "name",
        "reason",
        "assignee",
        "due",
        "(UTC)",
        "status",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["3", "1"]  # open only, newest first
    assert NUMBER in result.stdout and "withheld" in result.stdout and "Erika Mustermann" in result.stdout
    everything = cli("callbacks", "list", "--db", str(db), "--status", "all").stdout
    assert [line.split()[0] for line in everything.splitlines()[1:]] == ["3", "1", "2"]


def test_callbacks_list_json_is_one_array(db: Path) -> None:
    result = cli("callbacks", "list", "--db", str(db), "--status", "done", "--json")
    assert result.exit_code == 0
    (item,) = json.loads(result.stdout)
    assert list(item) == CALLBACK_FIELDS
    assert item["id"] == 2 and item["caller_number"] == NUMBER and item["status"] == "done"
    assert item["done_by"] == "alice" and item["note"] is None
    assert datetime.fromisoformat(item["done_at"]) == NOW - timedelta(minutes=10)
    assert datetime.fromisoformat(item["created"]).tzinfo is not None


def test_callbacks_list_csv_has_a_header_row(db: Path) -> None:
    result = cli("callbacks", "list", "--db", str(db), "--csv")
    assert result.stdout.splitlines()[0] == ",".join(CALLBACK_FIELDS)
    rows = csv_rows(result.stdout)
    assert [r["id"] for r in rows] == ["3", "1"]
    assert rows[0]["caller_number"] == "" and rows[1]["caller_number"] == NUMBER
    assert datetime.fromisoformat(rows[1]["due"]) == NOW + timedelta(hours=23)


def test_callbacks_export_defaults_to_csv_of_all(db: Path) -> None:
    rows = csv_rows(cli("callbacks", "export", "--db", str(db)).stdout)
    assert [r["id"] for r in rows] == ["3", "1", "2"]
    assert [
        r["id"] for r in json.loads(cli("callbacks", "export", "--db", str(db), "--json", "--status", "open").stdout)
    ] == [3, 1]


def test_callbacks_show(db: Path) -> None:
    text = cli("callbacks", "show", "1", "--db", str(db)).stdout
    assert "caller_number" in text and NUMBER in text and "team-billing" in text
    item = json.loads(cli("callbacks", "show", "3", "--db", str(db), "--json").stdout)
    assert item["id"] == 3 and item["caller_number"] is None and item["reason"] == "withheld"


def test_unknown_callback_id_exits_non_zero(db: Path) -> None:
    for args in (["show", "99"], ["done", "99"]):
        result = cli("callbacks", *args, "--db", str(db))
        assert result.exit_code != 0
        assert "no callback with id 99" in result.output


def test_callbacks_done(db: Path) -> None:
    result = cli("callbacks", "done", "1", "--db", str(db), "--by", "bob")
    assert result.exit_code == 0 and "callback 1 done by bob" in result.stdout
    again = cli("callbacks", "done", "1", "--db", str(db), "--by", "carol")
    assert again.exit_code == 0 and "already done by bob" in again.stdout
    with Store.open(str(db)) as store:
        callback = store.get_callback(1)
    assert callback is not None and callback.status is CallbackStatus.DONE and callback.done_by == "bob"


# -- audit ----------------------------------------------------------------------------------------


def test_audit_list_table_and_filters(db: Path) -> None:
    table = cli("audit", "list", "--db", str(db)).stdout.splitlines()
    assert [line.split()[0] for line in table[1:]] == ["3", "1", "2"]  # oldest first
    by_call = cli("audit", "list", "--db", str(db), "--linkedid", "1700000000.1", "--json").stdout
    assert [a["action"] for a in json.loads(by_call)] == ["end", "hangup_done"]
    since = (NOW - timedelta(minutes=20)).isoformat()
    assert [a["id"] for a in json.loads(cli("audit", "list", "--db", str(db), "--since", since, "--json").stdout)] == [
        2
    ]
    day = (NOW - timedelta(days=1)).date().isoformat()  # a date alone: midnight UTC
    assert len(json.loads(cli("audit", "list", "--db", str(db), "--since", day, "--json").stdout)) == 2


def test_audit_json_and_csv(db: Path) -> None:
    items = json.loads(cli("audit", "export", "--db", str(db), "--json").stdout)
    assert list(items[1]) == AUDIT_FIELDS
    assert items[1]["detail"] == {"warnings": 1, "agent_channel": "PJSIP/agent1-00000001"}
    rows = csv_rows(cli("audit", "export", "--db", str(db)).stdout)
    assert [r["id"] for r in rows] == ["3", "1", "2"]
    assert json.loads(rows[1]["detail"]) == items[1]["detail"] and rows[1]["caller_number"] == NUMBER
    assert csv_rows(cli("audit", "list", "--db", str(db), "--csv", "--linkedid", "nope").stdout) == []


def test_bad_since_is_a_usage_error(db: Path) -> None:
    result = cli("audit", "list", "--db", str(db), "--since", "yesterday")
    assert result.exit_code == 2 and "ISO 8601" in result.output


# -- purge ----------------------------------------------------------------------------------------


def test_purge(db: Path) -> None:
    with Store.open(str(db)) as store:
        store.add_callback(new_callback(created=NOW - timedelta(days=91)))
        store.add_incident(Incident(caller_number=NUMBER, at=NOW - timedelta(days=91), linkedid="l", kind="end"))
        store.add_audit(audit_entry(at=NOW - timedelta(days=366)))
    result = cli("purge", "--db", str(db))
    assert result.exit_code == 0
    assert result.stdout.strip() == "deleted 1 callbacks, 1 incidents, 1 audit entries"
    result = cli("purge", "--db", str(db), "--audit-days", "2", "--callback-days", "1")
    assert result.stdout.strip() == "deleted 0 callbacks, 0 incidents, 1 audit entries"
    assert cli("purge", "--db", str(db), "--audit-days", "0").exit_code == 2


# -- where the store is ---------------------------------------------------------------------------


def test_missing_store_is_an_error_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "callwarden.db"
    result = cli("callbacks", "list", "--db", str(missing))
    assert result.exit_code != 0 and "no store at" in result.output
    assert not missing.parent.exists()


def test_store_path_from_the_config_and_db_wins(db: Path, tmp_path: Path) -> None:
    config = tmp_path / "callwarden.toml"
    config.write_text(f'[store]\npath = "{db}"\n')
    assert [r["id"] for r in json.loads(cli("callbacks", "list", "--config", str(config), "--json").stdout)] == [3, 1]
    other = tmp_path / "other.db"
    Store.open(str(other)).close()
    result = cli("callbacks", "list", "--config", str(config), "--db", str(other), "--json")
    assert json.loads(result.stdout) == []


def test_bad_config_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[store]\npaht = 1\n")
    result = cli("audit", "list", "--config", str(config))
    assert result.exit_code == 78 and "store.paht: unknown key" in result.output


# -- what callers control cannot attack the supervisor's terminal or spreadsheet ------------------


def test_hostile_caller_names_are_defused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Store.open(str(path)) as store:
        store.add_callback(new_callback(caller_name='=HYPERLINK("http://evil")', note="\x1b[2J\x1b]0;pwned\x07"))
    rows = csv_rows(cli("callbacks", "export", "--db", str(path)).stdout)
    assert rows[0]["caller_name"].startswith("'=HYPERLINK") and rows[0]["caller_number"] == NUMBER
    assert "\x1b" not in rows[0]["note"]
    for args in (["callbacks", "show", "1"], ["callbacks", "list", "--json"], ["callbacks", "export"]):
        assert "\x1b" not in cli(*args, "--db", str(path)).stdout
