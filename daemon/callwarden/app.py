"""Daemon lifecycle in named phases: startup, main loop, shutdown.

Signals only set the stop flag. Every long-lived task runs in one supervising TaskGroup, so
an exception in any of them ends the daemon loudly instead of vanishing in a stray Task.
"""

from __future__ import annotations

import asyncio
import signal
from enum import IntEnum

import structlog

from callwarden.ami.client import AmiClient, AmiLoginRefusedError
from callwarden.ami.framing import Frame
from callwarden.calls import CallTracker, DomainEvent, HotkeyPressed, UnknownHotkey
from callwarden.config import Config
from callwarden.logs import mask_number

log = structlog.get_logger("callwarden")

SHUTDOWN_GRACE = 1.5  # seconds: SIGTERM to exit stays well under 2 s


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    AMI_LOGIN_REFUSED = 77  # sysexits EX_NOPERM
    CONFIG = 78  # sysexits EX_CONFIG


class _Stop(Exception):
    """Raised inside the TaskGroup to end the main loop."""


class Daemon:
    def __init__(self, *, config: Config) -> None:
        self.config = config
        self.tracker = CallTracker()
        self.ami = AmiClient(config=config.ami, on_event=self.on_ami_event)
        self.stop_requested = asyncio.Event()

    # -- the flow: AMI event -> call state -> domain events -> (later: policy -> commands) ----

    def on_ami_event(self, event: Frame) -> None:
        for domain_event in self.tracker.handle(event):
            self.on_domain_event(domain_event)

    def on_domain_event(self, event: DomainEvent) -> None:
        match event:
            case HotkeyPressed():
                log.info(
                    "hotkey_pressed",
                    hotkey=event.hotkey.value,
                    agent=event.agent_endpoint,
                    agent_channel=event.agent_channel,
                    caller_channel=event.caller_channel,
                    caller_number=mask_number(event.caller_number),
                    linkedid=event.linkedid,
                )
            case UnknownHotkey():
                log.warning(
                    "hotkey_unknown", name=event.name, agent_channel=event.agent_channel, linkedid=event.linkedid
                )

    # -- lifecycle ------------------------------------------------------------------------------

    async def serve(self) -> ExitCode:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        log.info("startup", ami=f"{self.config.ami.host}:{self.config.ami.port}")
        code = ExitCode.OK
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.ami.run(), name="ami")
                tasks.create_task(self._wait_for_stop(), name="stop")
        except* _Stop:
            pass
        except* AmiLoginRefusedError as group:
            log.error("ami_login_refused", error=str(group.exceptions[0]))
            code = ExitCode.AMI_LOGIN_REFUSED
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("shutdown_complete", exit_code=int(code))
        return code

    def request_stop(self, sig: signal.Signals | None = None) -> None:
        log.info("stop_requested", signal=sig.name if sig else None)
        self.stop_requested.set()

    async def _wait_for_stop(self) -> None:
        await self.stop_requested.wait()
        log.info("shutdown")
        try:
            await asyncio.wait_for(self.ami.close(), SHUTDOWN_GRACE)
        except TimeoutError:
            log.warning("shutdown_timeout", phase="ami_close")
        raise _Stop


def run(config: Config) -> int:
    return int(asyncio.run(Daemon(config=config).serve()))
