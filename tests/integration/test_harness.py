"""The harness's own real parts work (they are what every other test stands on)."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from tests.integration.harness import LabPbx, Mosquitto

pytestmark = pytest.mark.integration


def test_lab_pbx_runs_the_projects_config(pbx: LabPbx) -> None:
    endpoints = pbx.cli("pjsip show endpoints")
    for name in ("caller1", "caller2", "agent1", "agent2", "colleague1", "colleague2"):
        assert name in endpoints
    features = pbx.cli("features show")
    assert "callwarden_warn" in features and "*1" in features
    assert "callwarden-hotkey" in pbx.cli("dialplan show callwarden-hotkey")


def test_mosquitto_delivers_a_message(mosquitto: Mosquitto) -> None:
    async def roundtrip() -> bytes:
        async with aiomqtt.Client("127.0.0.1", port=mosquitto.port) as client:
            await client.subscribe("callwarden/test", qos=1)
            await client.publish("callwarden/test", b"hello", qos=1)
            async for message in client.messages:
                return bytes(message.payload)  # type: ignore[arg-type]
        raise AssertionError("no message")

    assert asyncio.run(asyncio.wait_for(roundtrip(), 10)) == b"hello"
