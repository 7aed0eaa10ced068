from __future__ import annotations

from pathlib import Path

import pytest

from callwarden.config import ConfigError, parse_config
from callwarden.pbx_files import PROMPTS, check_features, check_prompts

REPO = Path(__file__).resolve().parents[2]
FEATURES = (REPO / "dialplan" / "features_callwarden.conf").read_text()


def test_shipped_features_and_prompts_are_complete() -> None:
    assert check_features(FEATURES) == []
    assert check_prompts(REPO / "prompts", ["en", "de"]) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("*2,self", "*1,self"), "callwarden_end (*1) overlaps callwarden_warn (*1)"),
        (("*2,self", "*12,self"), "callwarden_end (*12) overlaps callwarden_warn (*1)"),
        (("callwarden_timeout", "callwarden_pause"), "unknown hotkey 'callwarden_pause'"),
        (("*5,self", "*x,self"), "callwarden_timeout: '*x' is not a DTMF sequence"),
    ],
)
def test_bad_features_are_named(change: tuple[str, str], problem: str) -> None:
    problems = check_features(FEATURES.replace(*change))
    assert any(problem in p for p in problems), problems


def test_missing_and_duplicate_features() -> None:
    lines = [line for line in FEATURES.splitlines() if not line.startswith("callwarden_handover")]
    assert "callwarden_handover is missing" in check_features("\n".join(lines))
    warn = next(line for line in FEATURES.splitlines() if line.startswith("callwarden_warn"))
    assert any("defined twice" in p for p in check_features(FEATURES + "\n" + warn))


def test_unreadable_or_missing_prompts_are_named(tmp_path: Path) -> None:
    target = tmp_path / "en" / "callwarden"
    target.mkdir(parents=True)
    for source in (REPO / "prompts" / "en" / "callwarden").iterdir():
        (target / source.name).write_bytes(source.read_bytes())
    (target / "warn.wav").unlink()
    (target / "end.wav").write_bytes(b"")  # empty: not playable
    problems = check_prompts(tmp_path, ["en", "de"])
    assert "en/callwarden/warn: no readable file" in " ".join(problems)
    assert "en/callwarden/end: no readable file" in " ".join(problems)
    assert sum("de/callwarden/" in p for p in problems) == len(PROMPTS)  # all of German missing


def test_config_names_the_pbx_key(tmp_path: Path) -> None:
    bad = tmp_path / "features.conf"
    bad.write_text(FEATURES.replace("*2,self", "*1,self"))
    with pytest.raises(ConfigError) as info:
        parse_config({"pbx": {"features_file": str(bad), "sounds_dir": str(tmp_path)}})
    keys = [error.split(":")[0] for error in info.value.errors]
    assert "pbx.features_file" in keys
    with pytest.raises(ConfigError, match="pbx: Value error, sounds_dir: en/callwarden/warn"):
        parse_config({"pbx": {"sounds_dir": str(tmp_path)}})
