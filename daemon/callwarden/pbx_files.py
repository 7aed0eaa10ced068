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


# -- the PBX's own in-call codes (features.conf): a hotkey must not collide with one ---------------

CODE_LINE = re.compile(r"^\s*(?P<name>[A-Za-z0-9_-]+)\s*=>?\s*(?P<digits>[^,\s;]+)")
INCLUDE_LINE = re.compile(r'^\s*#(?:include|tryinclude)\s+"?(?P<path>[^"\s]+)"?')
SECTION_LINE = re.compile(r"^\s*\[(?P<section>[^\]]+)\]")
# [general] keys that are in-call DTMF codes (during an attended transfer; FreePBX sets them).
GENERAL_CODES = frozenset({"atxferabort", "atxfercomplete", "atxferthreeway", "atxferswap", "pickupexten"})
MAX_INCLUDES = 32


def pbx_codes(path: Path) -> tuple[dict[str, str], list[str]]:
    """The in-call DTMF codes a features.conf defines, with the files it ``#include``s (relative
    to its own directory, as Asterisk reads them): ``{"featuremap/atxfer": "*2",
    "applicationmap/callwarden_warn": "*1", ...}``, and what could not be read."""
    reader = _CodeReader(path.parent)
    reader.read(path, "general")
    return reader.codes, reader.problems


class _CodeReader:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.codes: dict[str, str] = {}
        self.problems: list[str] = []
        self._files = 0

    def read(self, path: Path, section: str) -> str:
        """Reads one file in ``section`` (an include continues its parent's section); returns
        the section it ends in."""
        self._files += 1
        if self._files > MAX_INCLUDES:
            self.problems.append(f"{path}: more than {MAX_INCLUDES} included files")
            return section
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            self.problems.append(f"cannot read {path}: {exc.strerror}")
            return section
        for raw in text.splitlines():
            if (include := INCLUDE_LINE.match(raw)) is not None:
                target = Path(include["path"])
                section = self.read(target if target.is_absolute() else self.base / target, section)
                continue
            line = raw.split(";", 1)[0]
            if (header := SECTION_LINE.match(line)) is not None:
                section = header["section"].strip().lower()
                continue
            match = CODE_LINE.match(line)
            if match is None or not DTMF.match(match["digits"]):
                continue
            name = match["name"]
            if section in ("featuremap", "applicationmap") or (section == "general" and name.lower() in GENERAL_CODES):
                self.codes[f"{section}/{name}"] = match["digits"]
        return section


def check_collisions(codes: dict[str, str]) -> list[str]:
    """Our hotkeys (``applicationmap/callwarden_*``) against every other in-call code: the same
    sequence, or one a prefix of the other (Asterisk acts on the shorter one and never sees the
    longer), is a collision."""
    ours = {k.split("/", 1)[1]: v for k, v in codes.items() if k.startswith(f"applicationmap/{FEATURE_PREFIX}")}
    theirs = {k: v for k, v in codes.items() if not k.startswith(f"applicationmap/{FEATURE_PREFIX}")}
    problems = []
    for name, digits in sorted(ours.items()):
        for other, other_digits in sorted(theirs.items()):
            if digits.startswith(other_digits) or other_digits.startswith(digits):
                problems.append(f"{name} ({digits}) collides with the PBX's {other} ({other_digits})")
    return problems
