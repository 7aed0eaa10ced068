"""``callwarden web`` (the page's process) and ``callwarden users add|passwd|disable|enable|list``.

Registered into the ``callwarden`` group by ``callwarden.cli`` (``register``).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from callwarden.config import Config, ConfigError, load_config
from callwarden.logs import configure_logging
from callwarden.store import AsyncStore, Store, StoreError
from callwarden.store.engine import describe_location
from callwarden.web import db
from callwarden.web.config import ROLES
from callwarden.web.users import (
    UserError,
    check_language,
    check_password,
    check_phone,
    check_role,
    check_team,
    check_username,
    hash_password,
)

EXIT_CONFIG = 78  # sysexits EX_CONFIG, as the daemon's

CONFIG = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CALLWARDEN_CONFIG",
    default=None,
    help="TOML config file (default: embedded defaults for the lab PBX). Env: CALLWARDEN_CONFIG.",
)


def _config(config_path: Path | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(EXIT_CONFIG)


@click.command("web")
@CONFIG
def web(config_path: Path | None) -> None:
    """Serve the callback page (work list, click-to-call, supervisors' view); see docs/web.md."""
    import uvicorn  # noqa: PLC0415 (only this command needs the server)

    from callwarden.web.app import create_app  # noqa: PLC0415

    config = _config(config_path)
    configure_logging(config.log.level, config.log.format)
    try:
        from callwarden.web.app import policy_info  # noqa: PLC0415

        policy_info(config)  # the policy is valid before the port opens
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(EXIT_CONFIG)

    async def serve() -> None:
        async with await AsyncStore.open(config.store.path) as store:
            app = create_app(config, store)
            server = uvicorn.Server(
                uvicorn.Config(
                    app,
                    host=config.web.host,
                    port=config.web.port,
                    proxy_headers=False,  # done inside the app, with [web] trusted_proxies
                    server_header=False,
                    access_log=False,
                    log_config=None,
                    timeout_graceful_shutdown=3,
                )
            )
            await server.serve()

    try:
        asyncio.run(serve())
    except StoreError as exc:
        raise click.ClickException(f"store {describe_location(config.store.path)}: {exc}") from None


# -- users ----------------------------------------------------------------------------------------


@click.group("users")
def users() -> None:
    """The web page's users (argon2 password hashes in the store)."""


def _with_store(config: Config, fn: Any) -> Any:
    configure_logging("warning", "auto", sys.stderr)
    try:
        with Store.open(config.store.path) as store:
            return fn(store)
    except StoreError as exc:
        raise click.ClickException(f"store {describe_location(config.store.path)}: {exc}") from None
    except UserError as exc:
        raise click.ClickException(str(exc)) from None


def _teams(config: Config) -> frozenset[str]:
    from callwarden.web.app import policy_info  # noqa: PLC0415

    try:
        return policy_info(config).teams
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(EXIT_CONFIG)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        return check_password(password)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None


STDIN = click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")


@users.command("add")
@CONFIG
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="colleague", show_default=True)
@click.option("--team", default=None, help="A hand-over route's team in the policy (whose callbacks they work).")
@click.option("--phone", default=None, help="Their own phone as a dial target, e.g. PJSIP/colleague1 (click-to-call).")
@click.option("--language", type=click.Choice(["en", "de"]), default="en", show_default=True)
@STDIN
def users_add(  # noqa: PLR0917 (click passes the options positionally)
    config_path: Path | None,
    username: str,
    role: str,
    team: str | None,
    phone: str | None,
    language: str,
    password_stdin: bool,
) -> None:
    """Add a user; the password is asked for (or read with --password-stdin)."""
    config = _config(config_path)
    try:
        values: dict[str, Any] = {
            "username": check_username(username),
            "role": check_role(role),
            "team": check_team(team, _teams(config)),
            "phone": check_phone(phone),
            "language": check_language(language),
        }
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    if values["role"] == "colleague" and values["team"] is None:
        raise click.ClickException("a colleague needs --team (whose callbacks they work)")
    values |= {"password_hash": hash_password(_password(password_stdin)), "created": datetime.now(UTC)}
    user = _with_store(config, lambda store: db.add_user(store, values=values))
    click.echo(f"user {user.username} added ({user.role}{', team ' + user.team if user.team else ''})")


@users.command("passwd")
@CONFIG
@click.argument("username")
@STDIN
def users_passwd(config_path: Path | None, username: str, password_stdin: bool) -> None:
    """Set a new password (ends the user's sessions, lifts a lockout)."""
    config = _config(config_path)
    new_hash = hash_password(_password(password_stdin))
    _with_store(
        config,
        lambda store: db.update_user(store, username, password_hash=new_hash, failed_logins=0, locked_until=None),
    )
    click.echo(f"password of {username} changed")


@users.command("disable")
@CONFIG
@click.argument("username")
def users_disable(config_path: Path | None, username: str) -> None:
    """Disable a user: no sign-in, and their open sessions end at once."""
    _with_store(_config(config_path), lambda store: db.update_user(store, username, disabled=True))
    click.echo(f"user {username} disabled")


@users.command("enable")
@CONFIG
@click.argument("username")
def users_enable(config_path: Path | None, username: str) -> None:
    """Enable a disabled or locked-out user again."""
    _with_store(
        _config(config_path),
        lambda store: db.update_user(store, username, disabled=False, failed_logins=0, locked_until=None),
    )
    click.echo(f"user {username} enabled")


@users.command("list")
@CONFIG
def users_list(config_path: Path | None) -> None:
    """List users (never their hashes)."""
    found = _with_store(_config(config_path), db.list_users)
    now = datetime.now(UTC)
    for user in found:
        state = "disabled" if user.disabled else "locked" if user.locked(now) else "active"
        click.echo(f"{user.username}\t{user.role}\t{user.team or '-'}\t{user.phone or '-'}\t{user.language}\t{state}")


def register(group: click.Group) -> None:
    group.add_command(web)
    group.add_command(users)
