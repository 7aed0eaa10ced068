"""A test subscriber on a real MQTT broker (the tests' Mosquitto, or the compose stack's)."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho


class Subscriber:
    """A persistent-session MQTT subscriber (paho, its own thread): nothing sent while it was
    away is lost if the broker keeps sessions."""

    def __init__(self, port: int, topic: str = "callwarden/#", client_id: str = "test-crm") -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload, m.retain))
        self.port = port
        self.received: list[tuple[str, Any]] = []
        self._returned: set[int] = set()

    def __enter__(self) -> Subscriber:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        # Only an acknowledged subscription is part of the (persistent) session.
        if not self.subscribed.wait(10):
            raise TimeoutError("the broker did not acknowledge the subscription")
        return self

    def __exit__(self, *_: object) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _pull(self, timeout: float) -> bool:
        try:
            topic, payload, _ = self.messages.get(timeout=timeout)
        except queue.Empty:
            return False
        try:
            body: Any = json.loads(payload)
        except ValueError:
            body = payload.decode()
        self.received.append((topic, body))
        return True

    def next(self, where: Callable[[str, Any], bool], timeout: float = 20) -> tuple[str, Any]:
        """The first message not returned before that matches (waiting for it if need be)."""
        deadline = time.monotonic() + timeout
        while True:
            for index, (topic, body) in enumerate(self.received):
                if index not in self._returned and where(topic, body):
                    self._returned.add(index)
                    return topic, body
            if not self._pull(max(0.0, deadline - time.monotonic())) and time.monotonic() >= deadline:
                raise TimeoutError(f"no matching MQTT message within {timeout}s; got {self.received}")

    def all(self, where: Callable[[str, Any], bool]) -> list[Any]:
        while self._pull(0.0):
            pass
        return [body for topic, body in self.received if where(topic, body)]
