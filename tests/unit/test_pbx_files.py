from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from callwarden.config import ConfigError, parse_config
from callwarden.pbx_files import PROMPTS, check_collisions, check_features, check_prompts, pbx_codes

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


# -- issue 10: our hotkeys against the PBX's own in-call codes (FreePBX) --------------------------

FREEPBX = Path(__file__).parent / "fixtures" / "freepbx"


def freepbx_etc(tmp_path: Path, features: str) -> Path:
    """A FreePBX-shaped /etc/asterisk whose features_applicationmap_custom.conf includes
    ``callwarden/<features>``."""
    etc = tmp_path / "asterisk"
    shutil.copytree(FREEPBX, etc)
    (etc / "callwarden").mkdir()
    shutil.copy(REPO / "dialplan" / features, etc / "callwarden" / features)
    (etc / "features_applicationmap_custom.conf").write_text(f"#include callwarden/{features}\n")
    return etc / "features.conf"


def test_freepbx_codes_are_read_through_the_includes(tmp_path: Path) -> None:
    codes, problems = pbx_codes(freepbx_etc(tmp_path, "features_callwarden_freepbx.conf"))
    assert problems == []
    assert codes["featuremap/atxfer"] == "*2" and codes["featuremap/blindxfer"] == "##"
    assert codes["general/atxferswap"] == "*6" and "general/featuredigittimeout" not in codes
    assert codes["applicationmap/callwarden_warn"] == "*71"


def test_the_freepbx_key_set_collides_with_nothing(tmp_path: Path) -> None:
    codes, _ = pbx_codes(freepbx_etc(tmp_path, "features_callwarden_freepbx.conf"))
    assert check_collisions(codes) == []


def test_the_default_key_set_collides_with_freepbx(tmp_path: Path) -> None:
    codes, _ = pbx_codes(freepbx_etc(tmp_path, "features_callwarden.conf"))
    problems = check_collisions(codes)
    assert "callwarden_warn (*1) collides with the PBX's featuremap/automixmon (*1)" in problems
    assert "callwarden_end (*2) collides with the PBX's featuremap/atxfer (*2)" in problems
    assert "callwarden_timeout (*5) collides with the PBX's general/atxferthreeway (*5)" in problems


def test_check_config_names_the_collision(tmp_path: Path) -> None:
    features_conf = freepbx_etc(tmp_path, "features_callwarden.conf")
    with pytest.raises(ConfigError) as raised:
        parse_config({"pbx": {"features_conf": str(features_conf)}})
    assert "pbx.features_conf" in str(raised.value)
    assert "callwarden_end (*2) collides with the PBX's featuremap/atxfer (*2)" in str(raised.value)
    parse_config({"pbx": {"features_conf": str(freepbx_etc(tmp_path / "ok", "features_callwarden_freepbx.conf"))}})


def test_a_features_conf_without_our_hotkeys_is_named(tmp_path: Path) -> None:
    features_conf = freepbx_etc(tmp_path, "features_callwarden.conf")
    (features_conf.parent / "features_applicationmap_custom.conf").write_text("")
    with pytest.raises(ConfigError, match="defines no callwarden_ hotkeys"):
        parse_config({"pbx": {"features_conf": str(features_conf)}})
