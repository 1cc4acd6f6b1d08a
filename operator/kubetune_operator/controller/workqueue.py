"""One worker per FineTuneJob that needs attention: wakes coalesce, requeues wait, failures back off.

kopf's timers and daemons would need a finalizer per object (blocking deletion while the
operator is down), so time-based work (retry backoff, image-pull grace, heartbeat staleness,
deadlines, TTL) is a requeue here instead: a task waits, then reconciles. A job with nothing
pending has no worker at all, so an idle job costs no task and no API call. After a restart
kopf's initial listing wakes every job once, and each pass recomputes its own next requeue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .cache import JobKey

logger = logging.getLogger(__name__)

Reconcile = Callable[[JobKey], Awaitable[float | None]]
"""One pass for one key; returns seconds until the next pass is due, or None."""

_ERROR_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass
class _Worker:
    due: asyncio.Event = field(default_factory=asyncio.Event)
    deadline: float | None = None
    errors: int = 0
    task: asyncio.Task[None] | None = None


class ReconcileQueue:
    def __init__(self, reconcile: Reconcile, *, on_error: Callable[[JobKey, Exception], None]) -> None:
        self._reconcile = reconcile
        self._on_error = on_error
        self._workers: dict[JobKey, _Worker] = {}
        self._closed = False

    def wake(self, key: JobKey, *, after: float = 0.0) -> None:
        """Reconcile `key` now (coalesced with other wakes), or no later than `after` seconds from now."""
        if self._closed:
            return
        worker = self._workers.get(key)
        if worker is None:
            worker = self._workers[key] = _Worker()
            worker.task = asyncio.get_running_loop().create_task(self._run(key, worker), name=f"reconcile {key}")
        if after <= 0:
            worker.due.set()
        else:
            self._defer(worker, after)

    @property
    def active(self) -> int:
        return len(self._workers)

    async def close(self) -> None:
        """Stop every worker (the operator is stopping): no pass runs after this returns."""
        self._closed = True
        tasks = [worker.task for worker in self._workers.values() if worker.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()

    def _defer(self, worker: _Worker, seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        worker.deadline = deadline if worker.deadline is None else min(worker.deadline, deadline)

    async def _run(self, key: JobKey, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        while worker.due.is_set() or worker.deadline is not None:
            if not worker.due.is_set() and worker.deadline is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.due.wait(), max(0.0, worker.deadline - loop.time()))
            worker.due.clear()
            worker.deadline = None
            try:
                next_pass = await self._reconcile(key)
            except Exception as error:  # one job's failure must not stop the others
                self._on_error(key, error)
                next_pass = _ERROR_BACKOFF[min(worker.errors, len(_ERROR_BACKOFF) - 1)]
                worker.errors += 1
            else:
                worker.errors = 0
            if next_pass is not None:
                self._defer(worker, next_pass)
        # No await between the loop's last check and here: a wake cannot slip in and be lost.
        del self._workers[key]
