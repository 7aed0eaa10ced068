"""The daemon's process: open the store, build the daemon, serve until stopped; the exit code."""

from __future__ import annotations

import asyncio

import structlog

from callwarden.config import Config
from callwarden.exit_codes import ExitCode
from callwarden.policy.rules import Policy
from callwarden.runtime.daemon import Daemon
from callwarden.store import AsyncStore, StoreError
from callwarden.store.engine import describe_location

log = structlog.get_logger("callwarden")


async def main(config: Config, policy: Policy) -> ExitCode:
    if config.policy.path is None:
        log.warning("policy_is_the_shipped_sample", hint="set [policy] path to the policy your supervisors approved")
    try:
        store = await AsyncStore.open(config.store.path)
    except StoreError as exc:
        log.error("store_open_failed", store=describe_location(config.store.path), error=str(exc))
        return ExitCode.STORE
    try:
        daemon = Daemon(config=config, policy=policy, store=store)
    except OSError as exc:  # the metrics/health port is taken or not allowed
        log.error("http_bind_failed", address=f"{config.http.host}:{config.http.port}", error=str(exc))
        await store.close()
        return ExitCode.ERROR
    return await daemon.serve()


def run(config: Config, policy: Policy) -> int:
    return int(asyncio.run(main(config, policy)))
