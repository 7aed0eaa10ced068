"""Click-to-call: AMI Originate with the page's own AMI user (write class ``originate`` only).

The colleague's phone rings first; when they answer, their channel runs the dialplan context
``callwarden-callback`` (dialplan/extensions_callwarden.conf), which dials the caller. The
number reaches AMI only as checked E.164 digits, the phone only as a checked dial target, and
the whole action passes ``check_action`` (``AmiClient.prepare``) before it is sent.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from callwarden.ami.client import AmiClient, AmiError
from callwarden.config import AmiConfig, Config
from callwarden.logs import mask_number
from callwarden.web.users import PHONE

log = structlog.get_logger("callwarden.web.dialer")

E164 = re.compile(r"^\+[1-9][0-9]{3,14}$")
# Asterisk's OriginateResponse reasons (AST_CONTROL_*): what the colleague's phone did.
REASONS = {"0": "failed", "1": "hung up", "3": "no answer", "5": "busy", "8": "congestion"}


class DialError(ValueError):
    """A value that must not reach AMI, or a call that cannot be placed; ``key`` for the page."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(detail or key)
        self.key = key


def originate_action(
    *, phone: str, number: str, context: str, ring_seconds: int, callback_id: int, channel_id: str
) -> dict[str, str]:
    """The Originate action; ``DialError`` unless every value is what it must be."""
    if not PHONE.match(phone):
        raise DialError("error.no_phone", f"phone {phone!r} is not a dial target")
    if not E164.match(number):
        raise DialError("error.no_number", "the number is not E.164")
    if not re.fullmatch(r"[0-9a-f-]{36}", channel_id):
        raise DialError("error.forbidden", "channel id is not a UUID")
    return {
        "Action": "Originate",
        "Channel": phone,
        "Context": context,
        "Exten": number[1:],  # E.164 digits: the dialplan dials "+" and these
        "Priority": "1",
        "Timeout": str(ring_seconds * 1000),
        "CallerID": f"Callback <{number}>",
        "Async": "true",
        "ChannelId": channel_id,
        "Variable": f"CALLWARDEN_CALLBACK_ID={int(callback_id)}",
    }


@dataclass
class CallState:
    callback_id: int
    username: str
    channel_id: str  # the colleague's channel's uniqueid: the call's linkedid
    state: str  # ringing | answered | failed
    reason: str = ""
    started: float = 0.0


def web_ami_config(config: Config) -> AmiConfig:
    """The daemon's [ami] host and port with the page's own user; an action is answered once
    the colleague's phone answered or gave up, so it may take the ring time."""
    web = config.web.ami
    return config.ami.model_copy(
        update={
            "username": web.username,
            "secret": web.secret,
            "events": "call",
            "action_timeout": float(min(120, web.ring_seconds + 10)),
            "hotkey_token": None,
        }
    )


class Dialer:
    """One AMI session for the page; the calls it placed, by callback id."""

    def __init__(self, config: Config, on_change: Callable[[], None]) -> None:
        self._config = config
        self._on_change = on_change
        self.client = AmiClient(config=web_ami_config(config), on_event=lambda _frame: None, read_events=())
        self.calls: dict[int, CallState] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        await self.client.run()

    def call(self, *, callback_id: int, username: str, phone: str | None, number: str | None) -> CallState:
        """Ring the colleague's phone now; the state follows in ``calls``."""
        if phone is None:
            raise DialError("error.no_phone")
        if number is None:
            raise DialError("error.no_number")
        channel_id = str(uuid.uuid4())
        web = self._config.web.ami
        action = originate_action(
            phone=phone,
            number=number,
            context=web.context,
            ring_seconds=web.ring_seconds,
            callback_id=callback_id,
            channel_id=channel_id,
        )
        if not self.client.logged_in.is_set():
            raise DialError("error.pbx_down")
        prepared = self.client.prepare(action)
        state = CallState(callback_id, username, channel_id, "ringing", started=time.monotonic())
        self.calls[callback_id] = state
        task = asyncio.create_task(self._follow(prepared, state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("callback_call_started", callback_id=callback_id, by=username, caller_number=mask_number(number))
        return state

    async def _follow(self, action: Mapping[str, str], state: CallState) -> None:
        try:
            reply: Any = await self.client.send_action(action)
        except (AmiError, TimeoutError, OSError) as exc:
            state.state, state.reason = "failed", str(exc) or type(exc).__name__
        else:
            last = reply[-1] if isinstance(reply, list) else reply
            if last.get("Response") == "Success":
                state.state = "answered"
            else:
                state.state = "failed"
                state.reason = REASONS.get(str(last.get("Reason", "")), str(last.get("Message", "")) or "failed")
        log.info("callback_call_state", callback_id=state.callback_id, state=state.state, reason=state.reason)
        self._on_change()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.client.close()
