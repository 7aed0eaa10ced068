"""Command line: ``callwarden run`` and ``callwarden check-config``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from callwarden import __version__
from callwarden.app import ExitCode, load_configured_policy
from callwarden.app import run as run_daemon
from callwarden.config import Config, ConfigError, load_config
from callwarden.logs import configure_logging
from callwarden.policy import Policy

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CALLWARDEN_CONFIG",
    default=None,
    help="TOML config file (default: embedded defaults for the lab PBX). Env: CALLWARDEN_CONFIG.",
)


def _load(config_path: Path | None) -> tuple[Config, Policy]:
    """Config and policy, validated; every error printed with its key path, then exit 78."""
    try:
        config = load_config(config_path)
        return config, load_configured_policy(config)
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
    config, policy = _load(config_path)  # validated before any socket opens
    configure_logging(config.log.level, config.log.format)
    sys.exit(run_daemon(config, policy))


@main.command("check-config")
@CONFIG_OPTION
def check_config(config_path: Path | None) -> None:
    """Validate the config and the policy it names; print every error with its key path."""
    config, policy = _load(config_path)
    click.echo(f"config {config_path or '(embedded defaults)'}: OK")
    click.echo(
        f"policy {config.policy.path or '(shipped sample)'}: OK, version {policy.version}, "
        f"approved by {policy.policy.approved_by} on {policy.policy.approved_on}"
    )


# The store's commands (supervisors): cli_store imports CONFIG_OPTION from here.
from callwarden.cli_store import audit, callbacks, purge  # noqa: E402

main.add_command(callbacks)
main.add_command(audit)
main.add_command(purge)

# callwarden web and its users (daemon/callwarden/web/cli.py).
from callwarden.web.cli import register as register_web  # noqa: E402

register_web(main)
