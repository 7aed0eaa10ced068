"""Command line: ``callwarden run`` and ``callwarden check-config``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from callwarden import __version__
from callwarden.app import ExitCode
from callwarden.app import run as run_daemon
from callwarden.config import Config, ConfigError, load_config
from callwarden.logs import configure_logging

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CALLWARDEN_CONFIG",
    default=None,
    help="TOML config file (default: embedded defaults for the lab PBX). Env: CALLWARDEN_CONFIG.",
)


def _load(config_path: Path | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(ExitCode.CONFIG)


@click.group()
@click.version_option(__version__, prog_name="callwarden")
def main() -> None:
    """Callwarden: warn, end or hand over abusive calls with one key press on Asterisk."""


@main.command()
@CONFIG_OPTION
def run(config_path: Path | None) -> None:
    """Run the daemon: connect to Asterisk's AMI and act on the agents' hotkeys."""
    config = _load(config_path)  # validated before any socket opens
    configure_logging(config.log.level, config.log.format)
    sys.exit(run_daemon(config))


@main.command("check-config")
@CONFIG_OPTION
def check_config(config_path: Path | None) -> None:
    """Validate the config; print every error with its key path."""
    _load(config_path)
    click.echo(f"{config_path or 'embedded defaults'}: OK")
