"""How the store's records are printed: a table, one JSON array, or CSV with a header row.

Caller-supplied text (a name with terminal escapes) is made visible, and CSV cells a spreadsheet
would run as a formula are defused.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

import click

from callwarden.records import AuditRecord, Callback

F = TypeVar("F", bound=Callable[..., Any])

CALLBACK_FIELDS = [f.name for f in dataclasses.fields(Callback)]
CALLBACK_FIELDS.insert(0, CALLBACK_FIELDS.pop(CALLBACK_FIELDS.index("id")))
AUDIT_FIELDS = [f.name for f in dataclasses.fields(AuditRecord)]
AUDIT_FIELDS.insert(0, AUDIT_FIELDS.pop(AUDIT_FIELDS.index("id")))

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PLAIN_NUMBER = re.compile(r"\+?[0-9]+")


def printable(text: str) -> str:
    """Control characters (e.g. terminal escapes in a caller-supplied name) made visible."""
    return _CONTROL.sub("\N{REPLACEMENT CHARACTER}", text)


def csv_cell(value: object) -> str:
    """Text for a CSV cell; what a spreadsheet would run as a formula gets a leading apostrophe."""
    cell = "" if value is None else printable(text(value))
    if cell[:1] in ("=", "+", "-", "@") and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def text(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def jsonable(record: Callback | AuditRecord, fields: Sequence[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in fields:
        value = getattr(record, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def short_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[printable(str(cell)) if cell not in (None, "") else "-" for cell in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def emit(records: Sequence[Callback | AuditRecord], fields: Sequence[str], fmt: str) -> None:
    """Write ``records`` as one JSON array or as CSV with a header row."""
    if fmt == "json":
        click.echo(json.dumps([jsonable(r, fields) for r in records], indent=2))
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    writer.writerows([csv_cell(getattr(r, name)) for name in fields] for r in records)
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
