"""The harness's own real parts work (they are what every other test stands on)."""

from __future__ import annotations

import asyncio
import gc
import threading

import aiomqtt
import pytest
from pyVoIP.VoIP import VoIPCall

from tests.integration.harness import LabPbx, Mosquitto
from tests.sip.phone import TestPhone

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


def test_test_phone_forgets_a_call_without_freezing_on_its_ports_lock() -> None:
    """pyVoIP's port cleanup dropped a call's last reference while holding its ports lock, and
    the call's ``__del__`` waited for that lock on the same thread forever (tests/sip/phone.py).
    Here the cleanup runs in a thread of its own: it must come back, and the call whose answer
    callback has ended must still be known (its BYE must still end it)."""
    phone = TestPhone("agent1", rtp_base=29000).phone  # not started: no socket, no PBX
    ended_callback = threading.Thread(target=lambda: None)
    ended_callback.start()
    ended_callback.join()
    call = object.__new__(VoIPCall)
    call.phone = phone
    call.assignedPorts = {}
    phone.calls["call-1"] = call
    phone.threads.append(ended_callback)  # type: ignore[arg-type]
    phone.threadLookup[ended_callback] = "call-1"  # type: ignore[index]
    del call
    gc.collect()

    cleanup = threading.Thread(target=phone.release_ports, daemon=True)
    cleanup.start()
    cleanup.join(5)
    assert not cleanup.is_alive(), "release_ports froze on its own lock"
    assert "call-1" in phone.calls  # forgotten only when it ends
    assert phone.threads == []
