"""Options every command shares."""

from __future__ import annotations

from pathlib import Path

import click

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CALLWARDEN_CONFIG",
    default=None,
    help="TOML config file (default: embedded defaults for the lab PBX). Env: CALLWARDEN_CONFIG.",
)
