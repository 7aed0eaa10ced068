"""Command line: ``callwarden run``, ``check-config``, and the store's commands (cli/store.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from callwarden import __version__
from callwarden.cli.options import CONFIG_OPTION
from callwarden.cli.store import audit, callbacks, purge
from callwarden.config import Config, ConfigError, load_config
from callwarden.exit_codes import ExitCode
from callwarden.logs import configure_logging
from callwarden.policy.rules import Policy, load_configured_policy


def _load(config_path: Path | None) -> tuple[Config, Policy]:
    """Config and policy, validated; every error printed with its key path, then exit 78."""
    try:
        config = load_config(config_path)
        return config, load_configured_policy(config.policy.path)
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
    from callwarden.runtime.main import run as run_daemon  # noqa: PLC0415 (the daemon's imports are for `run` only)

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


main.add_command(callbacks)
main.add_command(audit)
main.add_command(purge)

# callwarden web and its users (daemon/callwarden/web/cli.py).
from callwarden.web.cli import register as register_web  # noqa: E402

register_web(main)
