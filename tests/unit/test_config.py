from __future__ import annotations

from pathlib import Path

import pytest

from callwarden.config import Config, ConfigError, load_config, parse_config


def test_embedded_defaults_point_at_the_lab_pbx() -> None:
    config = load_config(None)
    assert (config.ami.host, config.ami.port, config.ami.username) == ("127.0.0.1", 15038, "callwarden")


def test_sample_config_is_valid() -> None:
    sample = Path(__file__).resolve().parents[2] / "config" / "callwarden.toml"
    assert load_config(sample) == Config()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"ami": {"port": 99999}}, "ami.port: Input should be less than or equal to 65535 (got 99999)"),
        ({"ami": {"port": "x"}}, "ami.port: Input should be a valid integer, unable to parse string as an integer"),
        ({"ami": {"hots": "pbx"}}, "ami.hots: unknown key"),
        ({"amii": {}}, "amii: unknown key"),
        ({"ami": {"username": "a b"}}, "ami.username: String should match pattern"),
        ({"ami": {"reconnect_min": 5, "reconnect_max": 1}}, "ami: Value error, reconnect_max must be >= reconnect_min"),
        ({"log": {"format": "xml"}}, "log.format: Input should be 'auto', 'json' or 'console'"),
        ({"ami": "yes"}, "ami: Input should be a valid dictionary"),
    ],
)
def test_bad_config_names_the_key(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert any(error.startswith(expected) for error in info.value.errors), info.value.errors


def test_all_errors_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"ami": {"port": 0, "secret": 5}, "log": {"level": "loud"}})
    keys = sorted(error.split(":")[0] for error in info.value.errors)
    assert keys == ["ami.port", "ami.secret", "log.level"]


def test_unreadable_and_invalid_toml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[ami\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_secret_is_not_rendered() -> None:
    config = parse_config({"ami": {"secret": "hunter2"}})
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.model_dump())
    assert config.ami.secret.get_secret_value() == "hunter2"
