"""Supervisor commands on the store: ``callwarden callbacks|audit|purge``.

These show caller numbers in full: they are the supervisors' tool for calling back. Output is
a table, one JSON array, or CSV with a header row. Registered in ``callwarden.cli`` (import
that module, not this one, to get the ``callwarden`` group).
"""

from __future__ import annotations

import csv
import dataclasses
import getpass
import io
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from callwarden.cli import CONFIG_OPTION
from callwarden.config import ConfigError, load_config
from callwarden.logs import configure_logging
from callwarden.policy import RetentionRules
from callwarden.records import AuditRecord, Callback, CallbackStatus
from callwarden.store import Store, StoreError
from callwarden.store.engine import database_url, describe_location, sqlite_file

DEFAULT_DB = "/var/lib/callwarden/callwarden.db"
EXIT_CONFIG = 78  # sysexits EX_CONFIG, as callwarden.app.ExitCode.CONFIG

F = TypeVar("F", bound=Callable[..., Any])

CALLBACK_FIELDS = [f.name for f in dataclasses.fields(Callback)]
CALLBACK_FIELDS.insert(0, CALLBACK_FIELDS.pop(CALLBACK_FIELDS.index("id")))
AUDIT_FIELDS = [f.name for f in dataclasses.fields(AuditRecord)]
AUDIT_FIELDS.insert(0, AUDIT_FIELDS.pop(AUDIT_FIELDS.index("id")))

# -- where the store is ---------------------------------------------------------------------------

DB_OPTION = click.option(
    "--db",
    "db",
    metavar="PATH_OR_URL",
    default=DEFAULT_DB,
    show_default=True,
    envvar="CALLWARDEN_DB",
    help="The store when the config names none ([store] path); given here (or in CALLWARDEN_DB), it wins.",
)


def store_options(f: F) -> F:
    return CONFIG_OPTION(DB_OPTION(f))


def store_location(config_path: Path | None, db: str) -> str:
    """``--db`` if given; else the config's ``[store] path``; else ``--db``'s default."""
    source = click.get_current_context().get_parameter_source("db")
    if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
        return db
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(EXIT_CONFIG)
    path = getattr(getattr(config, "store", None), "path", None)
    return str(path) if path else db


@contextmanager
def open_store(config_path: Path | None, db: str) -> Iterator[Store]:
    """The existing store (a missing SQLite file is an error here, not created)."""
    configure_logging("warning", "auto", sys.stderr)  # stdout is for the output only
    location = store_location(config_path, db)
    try:
        file = sqlite_file(database_url(location))
        if file is not None and not file.exists():
            raise click.ClickException(
                f"no store at {file} (the daemon creates it; set [store] path in the config or give --db)"
            )
        with Store.open(location) as store:
            yield store
    except StoreError as exc:
        raise click.ClickException(f"store {describe_location(location)}: {exc}") from None


# -- output ---------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PLAIN_NUMBER = re.compile(r"\+?[0-9]+")


def _printable(text: str) -> str:
    """Control characters (e.g. terminal escapes in a caller-supplied name) made visible."""
    return _CONTROL.sub("\N{REPLACEMENT CHARACTER}", text)


def _csv_cell(value: object) -> str:
    """Text for a CSV cell; what a spreadsheet would run as a formula gets a leading apostrophe."""
    text = "" if value is None else _printable(_text(value))
    if text[:1] in ("=", "+", "-", "@") and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def _text(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _jsonable(record: Callback | AuditRecord, fields: Sequence[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in fields:
        value = getattr(record, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _short_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_printable(str(cell)) if cell not in (None, "") else "-" for cell in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def emit(records: Sequence[Callback | AuditRecord], fields: Sequence[str], fmt: str) -> None:
    """Write ``records`` as one JSON array or as CSV with a header row."""
    if fmt == "json":
        click.echo(json.dumps([_jsonable(r, fields) for r in records], indent=2))
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    writer.writerows([_csv_cell(getattr(r, name)) for name in fields] for r in records)
    click.echo(buffer.getvalue(), nl=False)


FORMATS = {"table": "Output a table", "json": "Output one JSON array", "csv": "Output CSV with a header row"}


def format_options(*formats: str, default: str) -> Callable[[F], F]:
    """Mutually exclusive ``--table``/``--json``/``--csv`` flags setting ``fmt``."""

    def decorate(f: F) -> F:
        for fmt in reversed(formats):
            if fmt == default:  # (default=False on the others would make click pick the last one)
                f = click.option(f"--{fmt}", "fmt", flag_value=fmt, default=True, help=f"{FORMATS[fmt]} (default).")(f)
            else:
                f = click.option(f"--{fmt}", "fmt", flag_value=fmt, help=f"{FORMATS[fmt]}.")(f)
        return f

    return decorate


def _since(_ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """``2024-05-01`` or ``2024-05-01T08:00[+02:00]``; without an offset it is UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or date-time", param=param) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


SINCE_OPTION = click.option(
    "--since", metavar="ISO-DATE", callback=_since, help="From this time on (UTC unless it has an offset)."
)


STATUS_CHOICE = click.Choice(["open", "done", "all"])


def _status(value: str) -> CallbackStatus | None:
    return None if value == "all" else CallbackStatus(value)


# -- callwarden callbacks -------------------------------------------------------------------------


@click.group("callbacks")
def callbacks() -> None:
    """Callbacks the agents recorded (full caller numbers: the supervisors' tool)."""


@callbacks.command("list")
@store_options
@click.option("--status", type=STATUS_CHOICE, default="open", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N, newest first.")
@format_options("table", "json", "csv", default="table")
def callbacks_list(config_path: Path | None, db: str, status: str, limit: int | None, fmt: str) -> None:
    """List callbacks, newest first."""
    with open_store(config_path, db) as store:
        found = store.list_callbacks(_status(status), limit)
    if fmt != "table":
        emit(found, CALLBACK_FIELDS, fmt)
        return
    headers = ["id", "created (UTC)", "caller number", "name", "reason", "assignee", "due (UTC)", "status"]
    rows = [
        [
            c.id,
            _short_time(c.created),
            c.caller_number or "withheld",
            c.caller_name,
            c.reason.value,
            c.assignee,
            _short_time(c.due),
            c.status.value,
        ]
        for c in found
    ]
    click.echo(_table(headers, rows) if rows else f"no {'' if status == 'all' else status + ' '}callbacks")


@callbacks.command("show")
@store_options
@click.argument("callback_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Output one JSON object.")
def callbacks_show(config_path: Path | None, db: str, callback_id: int, as_json: bool) -> None:
    """Show one callback with every field."""
    with open_store(config_path, db) as store:
        callback = store.get_callback(callback_id)
    if callback is None:
        raise click.ClickException(f"no callback with id {callback_id}")
    if as_json:
        click.echo(json.dumps(_jsonable(callback, CALLBACK_FIELDS), indent=2))
        return
    width = max(map(len, CALLBACK_FIELDS))
    for name in CALLBACK_FIELDS:
        value = getattr(callback, name)
        click.echo(f"{name.ljust(width)}  {_printable(_text(value)) if value is not None else '-'}")


@callbacks.command("done")
@store_options
@click.argument("callback_id", metavar="ID", type=int)
@click.option("--by", default=None, help="Who called back (default: your login name).")
def callbacks_done(config_path: Path | None, db: str, callback_id: int, by: str | None) -> None:
    """Mark a callback done."""
    who, now = by or _login_name(), datetime.now(UTC)
    with open_store(config_path, db) as store:
        callback = store.mark_done(callback_id, who, now)
    if callback is None:
        raise click.ClickException(f"no callback with id {callback_id}")
    if callback.done_at != now:
        click.echo(
            f"callback {callback_id} was already done by {callback.done_by} at {_short_time(callback.done_at)} UTC"
        )
    else:
        click.echo(f"callback {callback_id} done by {who}")


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


@callbacks.command("export")
@store_options
@click.option("--status", type=STATUS_CHOICE, default="all", show_default=True)
@format_options("json", "csv", default="csv")
def callbacks_export(config_path: Path | None, db: str, status: str, fmt: str) -> None:
    """Write callbacks to stdout (CSV by default), newest first, every field."""
    with open_store(config_path, db) as store:
        emit(store.list_callbacks(_status(status)), CALLBACK_FIELDS, fmt)


# -- callwarden audit -----------------------------------------------------------------------------


@click.group("audit")
def audit() -> None:
    """The audit trail: every hotkey decision and action step."""


@audit.command("list")
@store_options
@click.option("--linkedid", default=None, help="Only this call.")
@SINCE_OPTION
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N, the oldest.")
@format_options("table", "json", "csv", default="table")
def audit_list(
    *, config_path: Path | None, db: str, linkedid: str | None, since: datetime | None, limit: int | None, fmt: str
) -> None:
    """List audit entries, oldest first (table without the details: see --json)."""
    with open_store(config_path, db) as store:
        found = store.list_audit(linkedid=linkedid, since=since, limit=limit)
    if fmt != "table":
        emit(found, AUDIT_FIELDS, fmt)
        return
    headers = ["id", "at (UTC)", "linkedid", "agent", "caller number", "action", "outcome", "reason", "policy"]
    rows = [
        [a.id, _short_time(a.at), a.linkedid, a.agent, a.caller_number, a.action, a.outcome, a.reason, a.policy_version]
        for a in found
    ]
    click.echo(_table(headers, rows) if rows else "no audit entries")


@audit.command("export")
@store_options
@click.option("--linkedid", default=None, help="Only this call.")
@SINCE_OPTION
@format_options("json", "csv", default="csv")
def audit_export(config_path: Path | None, db: str, linkedid: str | None, since: datetime | None, fmt: str) -> None:
    """Write the audit trail to stdout (CSV by default), oldest first, with details."""
    with open_store(config_path, db) as store:
        emit(store.list_audit(linkedid=linkedid, since=since), AUDIT_FIELDS, fmt)


# -- callwarden purge -----------------------------------------------------------------------------

DAYS = click.IntRange(min=1)


def _policy_retention(config_path: Path | None) -> RetentionRules:
    from callwarden.app import load_configured_policy  # noqa: PLC0415 (the CLI loads the daemon lazily)

    try:
        return load_configured_policy(load_config(config_path)).retention
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(78)  # as every command: a bad configuration is EX_CONFIG


@click.command("purge")
@store_options
@click.option("--callback-days", type=DAYS, default=None, help="Keep callbacks (default: the policy's retention).")
@click.option("--incident-days", type=DAYS, default=None, help="Keep incidents (default: the policy's).")
@click.option("--audit-days", type=DAYS, default=None, help="Keep audit entries (default: the policy's).")
def purge(
    config_path: Path | None, db: str, callback_days: int | None, incident_days: int | None, audit_days: int | None
) -> None:
    """Delete what is older than its retention (the policy's, as the daemon does daily)."""
    retention = _policy_retention(config_path)
    callback_days = callback_days or retention.callback_days
    incident_days = incident_days or retention.incident_days
    audit_days = audit_days or retention.audit_days
    with open_store(config_path, db) as store:
        counts = store.purge(
            datetime.now(UTC), callback_days=callback_days, incident_days=incident_days, audit_days=audit_days
        )
    click.echo(
        f"deleted {counts['callbacks']} callbacks, {counts['incidents']} incidents, {counts['audit']} audit entries"
    )
