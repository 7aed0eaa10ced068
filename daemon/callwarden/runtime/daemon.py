"""The composition root: builds the daemon's parts and runs them in named phases (startup,
main loop, shutdown). Signals only set flags. Every long-lived task runs in one supervising
TaskGroup, so an exception in any of them ends the daemon loudly instead of vanishing in a
stray Task; per-call tasks (:class:`TaskSet`) record their own failures.

The parts: AMI client -> :class:`CallFlow` (state -> decision -> executor), :class:`Recovery`
(lost channels, memory), :class:`Terms` (after each login and each HA term), :class:`Upkeep`
(flags, purge, health), :class:`PauseKeeper` (the recovery pauses' ends).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import secrets
import signal

import structlog

from callwarden.ami.client import AmiClient, AmiError, AmiLoginRefusedError
from callwarden.config import Config, ConfigError
from callwarden.effects.mqtt import Publisher
from callwarden.effects.outbox_events import Outbox
from callwarden.exit_codes import ExitCode
from callwarden.metrics import HttpServer, Metrics
from callwarden.numbers import to_e164
from callwarden.policy.rules import Policy, load_configured_policy
from callwarden.runtime.ha import AlwaysActive, Role
from callwarden.runtime.handling import call_handling
from callwarden.runtime.pauses import PauseKeeper
from callwarden.runtime.terms import Terms
from callwarden.runtime.upkeep import Upkeep
from callwarden.state.tracker import CallTracker
from callwarden.store import AsyncStore

log = structlog.get_logger("callwarden")

INFLIGHT_GRACE = 0.5  # seconds for actions under way to finish on SIGTERM
SHUTDOWN_GRACE = 1.0  # seconds to say goodbye to the broker and AMI: exit stays under 2 s


class _Stop(Exception):
    """Raised inside the TaskGroup to end the main loop."""


class Daemon:
    def __init__(self, *, config: Config, policy: Policy, store: AsyncStore) -> None:
        self.config, self.policy, self.store = config, policy, store
        token = config.ami.hotkey_token
        self.hotkey_token = token.get_secret_value() if token else secrets.token_urlsafe(24)
        country = config.callbacks.default_country_code
        self.tracker = CallTracker(
            hotkey_token=self.hotkey_token, normalize_number=functools.partial(to_e164, country_code=country)
        )
        self.metrics = Metrics()
        self.role: Role | AlwaysActive = AlwaysActive()
        if config.ha.enabled:
            self.role = Role(
                config=config.ha,
                store_url=config.store.path,
                site=config.mqtt.site,
                metrics=self.metrics,
                take_over=lambda: self.terms.take_over(),  # noqa: PLW0108 (self.terms is built below)
            )
        self.publisher = None
        if config.mqtt.enabled:
            ha = config.ha.enabled
            self.publisher = Publisher(
                config=config.mqtt,
                store=store,
                node=config.ha.node if ha else "",
                is_active=self.role.is_active,
                wait_active=self.role.wait_active if ha else None,
            )
        outbox = Outbox(site=config.mqtt.site, wake=self.publisher.notify) if self.publisher else None
        self.ami = AmiClient(
            config=config.ami,
            on_event=lambda frame: self.flow.feed(frame),  # noqa: PLW0108 (self.flow is built below)
            on_login=lambda: self.terms.on_login(),  # noqa: PLW0108 (self.terms is built below)
            read_events=self.tracker.subscribed,  # what the flow reads: the rest is dropped unparsed
        )
        parts = call_handling(
            ami=self.ami,
            store=store,
            tracker=self.tracker,
            metrics=self.metrics,
            policy=lambda: self.policy,
            country_code=country,
            outbox=outbox,
            may_act=self.role.is_active,
            site=config.mqtt.site,
            on_paused=lambda: self.pauses.wake(),  # noqa: PLW0108 (self.pauses is built below)
        )
        self.handling = parts
        self.book, self.tasks, self.executor = parts.book, parts.tasks, parts.executor
        self.recovery, self.flow = parts.recovery, parts.flow
        http = config.http
        self.http = (
            HttpServer(host=http.host, port=http.port, metrics=self.metrics, role=self.role) if http.enabled else None
        )
        self.upkeep = Upkeep(
            config=config,
            policy=lambda: self.policy,
            store=store,
            executor=self.executor,
            ami=self.ami,
            tracker=self.tracker,
            metrics=self.metrics,
            publisher=self.publisher,
            http=self.http,
            role=self.role,
        )
        self.pauses = PauseKeeper(
            store=store,
            follow_ups=parts.follow_ups,
            ami=self.ami,
            site=config.mqtt.site,
            policy_version=lambda: self.policy.version,
            role=self.role,
        )
        self.terms = Terms(
            hotkey_token=self.hotkey_token,
            ami=self.ami,
            handling=parts,
            executor=self.executor,
            upkeep=self.upkeep,
            pauses=self.pauses,
            role=self.role,
        )
        self.stop_requested = asyncio.Event()

    def reload_policy(self) -> None:
        try:
            policy = load_configured_policy(self.config.policy.path)
        except ConfigError as exc:
            path = str(self.config.policy.path)
            log.error("policy_reload_rejected", path=path, errors=exc.errors, kept_version=self.policy.version)
            return
        log.info("policy_reloaded", old_version=self.policy.version, version=policy.version)
        self.policy = policy
        if self.ami.logged_in.is_set():  # the repeat-caller rules may have changed
            self.tasks.spawn(self.upkeep.sync_flags(), "policy-sync")

    # -- lifecycle ------------------------------------------------------------------------------

    async def serve(self) -> ExitCode:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload_policy)
        log.info(
            "startup",
            ami=f"{self.config.ami.host}:{self.config.ami.port}",
            policy_version=self.policy.version,
            policy_approved_by=self.policy.policy.approved_by,
        )
        code = ExitCode.OK
        if self.http is not None:
            self.http.start()
        if isinstance(self.role, Role):
            await self.role.first_try()
        if self.role.is_active():  # a standby reads them when its term starts
            await self.recovery.restore_ends()
        # Start-up objects (modules, config, policy) never die: keep them out of every future
        # full collection, which would otherwise scan them on the hotkey's path.
        gc.collect()
        gc.freeze()
        try:
            async with asyncio.TaskGroup() as group:
                self.tasks.attach(group)
                if isinstance(self.role, Role):
                    group.create_task(self.role.run(), name="lease")
                group.create_task(self.ami.run(), name="ami")
                group.create_task(self.upkeep.purge_daily(), name="purge")
                group.create_task(self.upkeep.watch_health(), name="health")
                group.create_task(self.pauses.run(), name="pauses")
                if self.publisher is not None:
                    group.create_task(self.publisher.run(), name="mqtt")
                group.create_task(self._wait_for_stop(), name="stop")
        except* _Stop:
            pass
        except* AmiLoginRefusedError as group_error:
            log.error("ami_login_refused", error=str(group_error.exceptions[0]))
            code = ExitCode.AMI_LOGIN_REFUSED
        finally:
            self.tasks.attach(None)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if self.http is not None:
                self.http.stop()
            await self.store.close()
        log.info("shutdown_complete", exit_code=int(code))
        return code

    def request_stop(self, sig: signal.Signals | None = None) -> None:
        log.info("stop_requested", signal=sig.name if sig else None)
        self.stop_requested.set()

    async def _wait_for_stop(self) -> None:
        await self.stop_requested.wait()
        log.info("shutdown", inflight=len(self.tasks))
        await self.tasks.drain(INFLIGHT_GRACE)  # actions under way finish (bounded); the rest is cancelled
        if isinstance(self.role, Role):
            await self.role.release()  # the standby need not wait for the lease to lapse
        try:
            async with asyncio.timeout(SHUTDOWN_GRACE):
                if self.publisher is not None:
                    await self.publisher.stop()
                await self.ami.close()
        except (TimeoutError, AmiError):
            log.warning("shutdown_timeout", phase="close")
        raise _Stop
