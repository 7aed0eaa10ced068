"""Prometheus metrics and the health endpoint, served on a loopback address.

The HTTP side is the stdlib's WSGI server on its own thread with prometheus-client's WSGI app:
it only reads a health snapshot that the event loop replaces (never shares mutable state).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, make_wsgi_app

log = structlog.get_logger("callwarden.http")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
ANNOUNCE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.hotkeys = Counter("callwarden_hotkeys", "Hotkey presses", ["action"], registry=r)
        self.hotkeys_rejected = Counter(
            "callwarden_hotkeys_rejected", "Hotkey events refused by the trust rule", ["reason"], registry=r
        )
        self.hotkey_lookups = Counter(
            "callwarden_hotkey_channel_lookups",
            "Presses naming a channel the daemon had lost track of, looked up in Asterisk",
            ["outcome"],
            registry=r,
        )
        self.frames_tampered = Counter(
            "callwarden_ami_frames_tampered", "AMI events with repeated identity headers, ignored", registry=r
        )
        self.decisions = Counter("callwarden_decisions", "Decisions", ["action", "outcome"], registry=r)
        self.hotkey_to_action = Histogram(
            "callwarden_hotkey_to_action_seconds",
            "Hotkey event read -> its AMI action answered",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.hotkey_to_announcement = Histogram(
            "callwarden_hotkey_to_announcement_seconds",
            "Hotkey event read -> the PBX reports the announcement started",
            buckets=ANNOUNCE_BUCKETS,
            registry=r,
        )
        self.ami_reconnects = Counter(
            "callwarden_ami_reconnects", "AMI sessions lost (each followed by a reconnect attempt)", registry=r
        )
        self.ami_logged_in = Gauge("callwarden_ami_logged_in", "1 while logged in to AMI", registry=r)
        self.mqtt_connected = Gauge("callwarden_mqtt_connected", "1 while connected to the broker", registry=r)
        self.outbox_depth = Gauge("callwarden_outbox_depth", "Events waiting to be published", registry=r)
        self.tracked_calls = Gauge("callwarden_tracked_calls", "Calls the daemon tracks", registry=r)
        self.tasks = Gauge("callwarden_asyncio_tasks", "asyncio tasks alive (leak check)", registry=r)
        self.ha_active = Gauge("callwarden_ha_active", "1 while this node is the active one (ha), else 0", registry=r)
        self.ha_generation = Gauge("callwarden_ha_generation", "Fencing generation of the last term", registry=r)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_open_fds, ...


@dataclass(frozen=True)
class Health:
    ami: str = "down"  # logged_in | down
    store: str = "unknown"  # ok | failing: <error> | unknown
    mqtt: str = "disabled"  # connected | disconnected | disabled
    outbox_depth: int = 0
    max_outbox_depth: int = 1000
    role: str = "active"  # active | standby (ha); a standby is healthy too
    node: str = ""
    generation: int | None = None

    @property
    def ok(self) -> bool:
        if self.ami != "logged_in" or self.store != "ok":
            return False
        return not (self.mqtt == "disconnected" and self.outbox_depth > self.max_outbox_depth)

    def document(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "failing", **asdict(self)}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


StartResponse = Callable[[str, list[tuple[str, str]]], object]


class RoleView(Protocol):
    """The node's role (runtime/ha.py), read without a round trip."""

    @property
    def role(self) -> str: ...

    @property
    def generation(self) -> int | None: ...


class HttpServer:
    """``/metrics`` and ``/healthz`` on their own thread."""

    def __init__(self, *, host: str, port: int, metrics: Metrics, role: RoleView | None = None) -> None:
        """``role``: /healthz reads it at each request (the snapshot's role would be the last
        health round's, or "active" before the first: a standby must never say so)."""
        self.health = Health()
        self._role = role
        self._metrics_app = make_wsgi_app(metrics.registry)
        self._server: WSGIServer = make_server(host, port, self._app, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="callwarden-http", daemon=True)
        self.address = f"{host}:{self._server.server_port}"

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            health = self.health  # one read of an immutable snapshot
            if self._role is not None:
                health = replace(health, role=self._role.role, generation=self._role.generation)
            body = json.dumps(health.document()).encode()
            status = "200 OK" if health.ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    def start(self) -> None:
        self._thread.start()
        log.info("http_listening", address=self.address, paths=["/metrics", "/healthz"])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
