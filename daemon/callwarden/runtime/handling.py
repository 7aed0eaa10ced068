"""The call-handling parts wired together: call state, the per-call book, the executor, the
flow and its recovery. The daemon builds them here, and so do the in-process scenario tests
(with a fake AMI), so both run the same wiring."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from callwarden.effects.executor import Ami as ExecutorAmi
from callwarden.effects.executor import Executor
from callwarden.effects.executor import Store as ExecutorStore
from callwarden.effects.follow_ups import FollowUps
from callwarden.effects.follow_ups import Store as FollowUpsStore
from callwarden.effects.outbox_events import Outbox
from callwarden.metrics import Metrics
from callwarden.policy.rules import Policy
from callwarden.runtime.flow import CallFlow
from callwarden.runtime.recovery import Ami as RecoveryAmi
from callwarden.runtime.recovery import Recovery
from callwarden.runtime.recovery import Store as RecoveryStore
from callwarden.runtime.tasks import TaskSet
from callwarden.state.book import CallBook
from callwarden.state.tracker import CallTracker


class Ami(ExecutorAmi, RecoveryAmi, Protocol):
    """What call handling needs of the AMI client."""


class Store(ExecutorStore, FollowUpsStore, RecoveryStore, Protocol):
    """What call handling needs of the store."""


@dataclass(frozen=True, slots=True)
class CallHandling:
    tracker: CallTracker
    book: CallBook
    tasks: TaskSet
    executor: Executor
    follow_ups: FollowUps
    recovery: Recovery
    flow: CallFlow

    def begin_term(self) -> Coroutine[Any, Any, None]:
        """A new term as the active node (ha), called in the same step as the lease's grant:
        what was kept while standby is dropped (the other node decided meanwhile), the calls'
        events are held from now on, and the coroutine returned reads their memory and the
        agents' ends back from the audit trail (a warning the old active gave counts)."""
        self.book.reset()
        restoring = self.recovery.begin_restore_memory()

        async def restore() -> None:
            await restoring
            await self.recovery.restore_ends()

        return restore()


def call_handling(
    *,
    ami: Ami,
    store: Store,
    tracker: CallTracker,
    metrics: Metrics,
    policy: Callable[[], Policy],
    country_code: str,
    outbox: Outbox | None = None,
    may_act: Callable[[], bool] = lambda: True,
    site: str = "",
    on_paused: Callable[[], None] = lambda: None,
) -> CallHandling:
    """``may_act``: this node is the active one (ha); the flow and the executor check it.
    ``site``, ``on_paused``: the recovery pauses' (:class:`callwarden.effects.follow_ups.FollowUps`)."""
    book, tasks = CallBook(), TaskSet()
    executor = Executor(ami=ami, store=store, outbox=outbox, is_current=tracker.is_current, may_act=may_act)
    follow_ups = FollowUps(
        executor=executor,
        ami=ami,
        store=store,
        outbox=outbox,
        is_current=tracker.is_current,
        may_act=may_act,
        site=site,
        on_paused=on_paused,
    )
    recovery = Recovery(ami=ami, tracker=tracker, book=book, store=store, metrics=metrics)
    flow = CallFlow(
        tracker=tracker,
        book=book,
        executor=executor,
        follow_ups=follow_ups,
        store=store,
        tasks=tasks,
        metrics=metrics,
        policy=policy,
        country_code=country_code,
        recover_press=recovery.recover_press,
        may_act=may_act,
    )
    recovery.attach(feed=flow.feed, route=flow.route)
    return CallHandling(tracker, book, tasks, executor, follow_ups, recovery, flow)
