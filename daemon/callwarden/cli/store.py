"""Supervisor commands on the store: ``callwarden callbacks|audit|purge``.

These show caller numbers in full: they are the supervisors' tool for calling back. Output is
a table, one JSON array, or CSV with a header row. Registered in ``callwarden.cli``.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
from click.core import ParameterSource

from callwarden.cli.options import CONFIG_OPTION
from callwarden.cli.output import (
    AUDIT_FIELDS,
    CALLBACK_FIELDS,
    F,
    emit,
    format_options,
    jsonable,
    printable,
    short_time,
    table,
    text,
)
from callwarden.config import ConfigError, load_config
from callwarden.exit_codes import ExitCode
from callwarden.logs import configure_logging
from callwarden.policy.rules import RetentionRules, load_configured_policy
from callwarden.records import CallbackStatus
from callwarden.store import Store, StoreError
from callwarden.store.engine import database_url, describe_location, sqlite_file

DEFAULT_DB = "/var/lib/callwarden/callwarden.db"


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
        sys.exit(ExitCode.CONFIG)
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
            short_time(c.created),
            c.caller_number or "withheld",
            c.caller_name,
            c.reason.value,
            c.assignee,
            short_time(c.due),
            c.status.value,
        ]
        for c in found
    ]
    click.echo(table(headers, rows) if rows else f"no {'' if status == 'all' else status + ' '}callbacks")


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
        click.echo(json.dumps(jsonable(callback, CALLBACK_FIELDS), indent=2))
        return
    width = max(map(len, CALLBACK_FIELDS))
    for name in CALLBACK_FIELDS:
        value = getattr(callback, name)
        click.echo(f"{name.ljust(width)}  {printable(text(value)) if value is not None else '-'}")


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
            f"callback {callback_id} was already done by {callback.done_by} at {short_time(callback.done_at)} UTC"
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
        [a.id, short_time(a.at), a.linkedid, a.agent, a.caller_number, a.action, a.outcome, a.reason, a.policy_version]
        for a in found
    ]
    click.echo(table(headers, rows) if rows else "no audit entries")


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
    try:
        return load_configured_policy(load_config(config_path).policy.path).retention
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(ExitCode.CONFIG)  # as every command: a bad configuration is EX_CONFIG


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
