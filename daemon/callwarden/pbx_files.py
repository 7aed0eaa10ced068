"""Checks of the files the PBX side needs: the hotkey features and the announcements.

The daemon does not read them at run time (Asterisk does); ``check-config`` and start-up
check them when ``[pbx]`` names them, so a broken deployment is caught before a caller is.
"""

from __future__ import annotations

import re
from pathlib import Path

from callwarden.state.events import Hotkey

FEATURE_PREFIX = "callwarden_"
FEATURE_LINE = re.compile(r"^\s*(?P<name>[A-Za-z0-9_]+)\s*=>\s*(?P<digits>[^,\s]+)\s*,")
DTMF = re.compile(r"^[0-9*#A-D]{1,11}$")
PROMPTS = (
    "warn",
    "end",
    "handover",
    "handover-unanswered",
    "callback-later",
    "timeout",
    "enter-number",
    "confirm-number",
    "confirm-options",
    "number-saved",
    "no-number",
    "agent-refused",
    "agent-end-refused",
    "agent-end-too-soon",
)
SOUND_FORMATS = ("wav", "gsm", "ulaw", "alaw", "sln", "slin", "g722", "wav16", "sln16", "g729")


def feature_names() -> dict[str, Hotkey]:
    return {f"{FEATURE_PREFIX}{h.value}": h for h in Hotkey}


def check_features(text: str) -> list[str]:
    """Problems in a features snippet (the ``[applicationmap]`` lines): every hotkey defined
    once, with a DTMF sequence, and no sequence a prefix of another (Asterisk would never
    wait for the longer one)."""
    problems: list[str] = []
    wanted = feature_names()
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        match = FEATURE_LINE.match(raw.split(";", 1)[0])
        if match is None:
            continue
        name, digits = match["name"], match["digits"]
        if not name.startswith(FEATURE_PREFIX):
            continue
        if name not in wanted:
            problems.append(f"line {number}: unknown hotkey {name!r} (known: {', '.join(sorted(wanted))})")
            continue
        if name in found:
            problems.append(f"line {number}: {name} is defined twice")
            continue
        if not DTMF.match(digits):
            problems.append(f"line {number}: {name}: {digits!r} is not a DTMF sequence (0-9 * # A-D)")
            continue
        found[name] = digits
    problems += [f"{name} is missing" for name in sorted(set(wanted) - set(found))]
    items = sorted(found.items())
    for i, (name, digits) in enumerate(items):
        for other, other_digits in items[i + 1 :]:
            if digits.startswith(other_digits) or other_digits.startswith(digits):
                problems.append(f"{name} ({digits}) overlaps {other} ({other_digits})")
    return problems


def check_prompts(sounds_dir: Path, languages: list[str]) -> list[str]:
    """Every announcement readable in every language: <sounds_dir>/<lang>/callwarden/<name>.<format>."""
    problems = []
    for language in languages:
        directory = sounds_dir / language / "callwarden"
        for name in PROMPTS:
            candidates = [directory / f"{name}.{ext}" for ext in SOUND_FORMATS]
            if not any(_readable(path) for path in candidates):
                problems.append(f"{language}/callwarden/{name}: no readable file ({'|'.join(SOUND_FORMATS)})")
    return problems


def _readable(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return bool(handle.read(1))
    except OSError:
        return False
