"""The daemon's housekeeping: the repeat-caller flags after a login, the daily purge (GDPR
retention), and the health snapshot behind /healthz and the gauges."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Callable

import structlog

from callwarden.ami.client import AmiClient
from callwarden.config import Config
from callwarden.effects.executor import Executor
from callwarden.effects.mqtt import Publisher
from callwarden.metrics import Health, HttpServer, Metrics
from callwarden.policy.repeat_callers import sync_commands
from callwarden.policy.rules import Policy
from callwarden.state.tracker import CallTracker
from callwarden.store import AsyncStore, StoreError, outbox

log = structlog.get_logger("callwarden")

PURGE_INTERVAL = 24 * 3600
HEALTH_INTERVAL = 1.0  # seconds between health snapshots
STORE_CHECK_EVERY = 10  # health snapshots between real store writes


class Upkeep:
    def __init__(
        self,
        *,
        config: Config,
        policy: Callable[[], Policy],
        store: AsyncStore,
        executor: Executor,
        ami: AmiClient,
        tracker: CallTracker,
        metrics: Metrics,
        publisher: Publisher | None,
        http: HttpServer | None,
    ) -> None:
        self._config = config
        self._policy = policy
        self._store = store
        self._executor = executor
        self._ami = ami
        self._tracker = tracker
        self._metrics = metrics
        self._publisher = publisher
        self._http = http

    async def sync_flags(self) -> None:
        """Publish the repeat-caller flags (and their display prefix) the dialplan reads."""
        rules = self._policy().repeat_callers
        now = dt.datetime.now(dt.UTC)
        flagged: list[str] = []
        if rules.enabled:
            since = now - dt.timedelta(days=rules.window_days)
            numbers = await self._store.numbers_with_incidents(since)
            flagged = [n for n in numbers if await self._store.count_incidents(n, since) >= rules.min_incidents]
        error = await self._executor.send(sync_commands(rules, flagged, now))
        if error:
            log.warning("repeat_caller_flags_failed", error=error)
        log.info("repeat_callers_synced", flagged=len(flagged))

    async def purge(self) -> dict[str, int]:
        retention = self._policy().retention
        counts = await self._store.purge(
            dt.datetime.now(dt.UTC),
            callback_days=retention.callback_days,
            incident_days=retention.incident_days,
            audit_days=retention.audit_days,
        )
        log.info("purged", **counts)
        return counts

    async def purge_daily(self) -> None:
        while True:
            try:
                await self.purge()
                await self._store.run(lambda store: outbox.purge_published(store, dt.datetime.now(dt.UTC)))
            except StoreError as exc:  # retried tomorrow; /healthz shows a store that fails
                log.error("purge_failed", error=str(exc))
            await asyncio.sleep(PURGE_INTERVAL)

    async def watch_health(self) -> None:
        """Refresh the health snapshot and the gauges; a real store write every few rounds."""
        store_state, rounds, last_reconnects = "unknown", 0, 0
        while True:
            if rounds % STORE_CHECK_EVERY == 0:
                try:
                    await self._store.check_writable()
                    store_state = "ok"
                except StoreError as exc:
                    store_state = f"failing: {exc}"
            rounds += 1
            try:
                depth_of_site = functools.partial(outbox.depth, site=self._config.mqtt.site)
                depth = await self._store.run(depth_of_site) if self._publisher is not None else 0
            except StoreError as exc:
                store_state, depth = f"failing: {exc}", -1
            ami_up = self._ami.logged_in.is_set()
            mqtt = "disabled"
            if self._publisher is not None:
                mqtt = "connected" if self._publisher.connected.is_set() else "disconnected"
            self._metrics.ami_logged_in.set(1 if ami_up else 0)
            self._metrics.mqtt_connected.set(1 if mqtt == "connected" else 0)
            self._metrics.outbox_depth.set(depth)
            self._metrics.tracked_calls.set(len(self._tracker.calls))
            self._metrics.tasks.set(len(asyncio.all_tasks()))
            if self._ami.reconnects > last_reconnects:
                self._metrics.ami_reconnects.inc(self._ami.reconnects - last_reconnects)
                last_reconnects = self._ami.reconnects
            if self._http is not None:
                self._http.health = Health(
                    ami="logged_in" if ami_up else "down",
                    store=store_state,
                    mqtt=mqtt,
                    outbox_depth=depth,
                    max_outbox_depth=self._config.http.max_outbox_depth,
                )
            await asyncio.sleep(HEALTH_INTERVAL)
