"""Publishes the outbox on MQTT (aiomqtt 2.x): in order, QoS 1, at least once.

A broker outage never touches call handling: decisions only write the outbox (in the same
transaction as their records) and wake this task. While the broker is away, events wait in
the store, also across daemon restarts, and go out in order once it is back. The retained
``<prefix>/<site>/status`` topic says ``online``; the broker's Last Will says ``offline``
when the daemon dies, and a clean stop says it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import ssl
from collections.abc import AsyncIterator

import aiomqtt
import structlog

from callwarden.config import MqttConfig
from callwarden.retry import reconnect_delay
from callwarden.store import AsyncStore, StoreError, outbox

log = structlog.get_logger("callwarden.mqtt")

BATCH = 100
IDLE_RECHECK = 5.0  # seconds: poll the outbox even without a wake-up (another node may write)


class Publisher:
    def __init__(self, *, config: MqttConfig, store: AsyncStore) -> None:
        self._config = config
        self._store = store
        self._wake = asyncio.Event()
        self.connected = asyncio.Event()
        self.published = 0
        self._client: aiomqtt.Client | None = None

    @property
    def status_topic(self) -> str:
        return self._config.topic("status")

    def notify(self) -> None:
        """New events were committed: publish them now."""
        self._wake.set()

    def _make_client(self) -> aiomqtt.Client:
        config = self._config
        tls: ssl.SSLContext | None = None
        if config.tls:
            tls = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
        return aiomqtt.Client(
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password.get_secret_value() if config.password else None,
            identifier=config.client_id or f"callwarden-{config.site}",
            keepalive=config.keepalive,
            tls_context=tls,
            will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
            timeout=10,
        )

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[aiomqtt.Client]:
        async with self._make_client() as client:
            self._client = client
            try:
                yield client
            finally:
                self._client = None
                self.connected.clear()

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                async with self._session() as client:
                    await client.publish(self.status_topic, b"online", qos=1, retain=True)
                    self.connected.set()
                    attempt = 0
                    log.info("mqtt_connected", host=self._config.host, port=self._config.port)
                    async with asyncio.TaskGroup() as session:
                        session.create_task(self._drain(client), name="mqtt-drain")
                        session.create_task(self._watch(client), name="mqtt-watch")
            except* aiomqtt.MqttError as group:
                log.warning("mqtt_disconnected", error=str(group.exceptions[0]), attempt=attempt)
            except* StoreError as group:  # events stay in the outbox; try again after a pause
                log.error("mqtt_outbox_unreadable", error=str(group.exceptions[0]), attempt=attempt)
            delay = reconnect_delay(attempt, self._config.reconnect_min, self._config.reconnect_max)
            attempt += 1
            await asyncio.sleep(delay)

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        """Notice a lost broker while idle: the message iterator raises on disconnect."""
        async for _ in client.messages:
            pass  # we subscribe to nothing

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            self._wake.clear()
            batch = await self._store.run(functools.partial(outbox.pending, limit=BATCH, site=self._config.site))
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_RECHECK)
                continue
            for event in batch:
                await client.publish(self._config.topic(event.topic), event.payload.encode(), qos=1)
            # Acknowledged by the broker (PUBACK): only now are they marked. A crash before this
            # line republishes the batch; consumers deduplicate by event id.
            mark = functools.partial(outbox.mark_published, ids=[e.id for e in batch], at=dt.datetime.now(dt.UTC))
            await self._store.run(mark)
            self.published += len(batch)
            log.debug("mqtt_published", count=len(batch))

    async def stop(self) -> None:
        """Say ``offline`` (retained) before a clean shutdown."""
        client = self._client
        if client is None:
            return
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await asyncio.wait_for(client.publish(self.status_topic, b"offline", qos=1, retain=True), 1.0)
