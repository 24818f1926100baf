"""Admission control for the CPU work of a question: retrieval (query embedding, BM25, the
vector search) and the extractive answer (sentence analysis and embedding).

Without it the query service accepts every uncached question and runs them all at once: on the
load benchmark (``bench/load.py``), past what two cores can retrieve, new questions waited 30 to
60 s and the clients gave up while the server kept working on answers no one would read. Here at
most ``max_active`` such stages run at once per process; up to ``max_queued`` more wait their
turn in arrival order, each for at most ``max_wait_s``; beyond either bound the question gets a
503 ``overloaded`` with ``Retry-After`` at once, which a client or a load balancer can act on.
Cached answers and FAQ hits never come here, so they stay fast under any load, and the LLM's
own waiting is not held here either (the pool bounds that).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from docqa_core.errors import DependencyUnavailable

SHED = Counter(
    "docqa_query_shed_total", "Questions refused with 503 overloaded, by why", ["reason"]
)
WAITING = Gauge("docqa_query_admission_waiting", "Retrieval/extraction stages waiting to start")
ACTIVE = Gauge("docqa_query_admission_active", "Retrieval/extraction stages running")
WAIT_SECONDS = Histogram(
    "docqa_query_admission_wait_seconds",
    "Time a stage waited for its turn",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)


class Overloaded(DependencyUnavailable):
    """503: this replica has as much retrieval work as it can do in time; retry shortly."""

    code = "overloaded"

    def __init__(self, reason: str, *, retry_after_s: float) -> None:
        super().__init__(
            "query_capacity",
            f"the server is at capacity ({reason}): retry shortly",
            detail={"reason": reason},
            retry_after_s=retry_after_s,
        )


@dataclass(frozen=True)
class AdmissionConfig:
    max_active: int = 4
    max_queued: int = 32
    max_wait_s: float = 5.0
    retry_after_s: float = 1.0


class WorkAdmission:
    """A counting semaphore with two FIFO queues that refuses instead of queueing without end.

    A stage of a question already admitted (the extraction after its retrieval) goes ahead of
    new questions: finishing started work first keeps its latency to one wait, not two.
    """

    def __init__(self, config: AdmissionConfig) -> None:
        self.config = config
        self._active = 0
        self._admitted: deque[asyncio.Future[None]] = deque()
        self._new: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for f in (*self._admitted, *self._new) if not f.done())

    @contextlib.asynccontextmanager
    async def slot(self, *, shed: bool = True) -> AsyncIterator[None]:
        """Run the body when a slot is free. ``shed=False`` is for a stage whose question was
        already admitted: it waits (ahead of new questions) and is never refused, so work
        already done is not thrown away."""
        started = time.perf_counter()
        await self._acquire(shed)
        WAIT_SECONDS.observe(time.perf_counter() - started)
        ACTIVE.inc()
        try:
            yield
        finally:
            ACTIVE.dec()
            self._release()

    async def _acquire(self, shed: bool) -> None:
        if self._active < self.config.max_active and not self.waiting:
            self._active += 1
            return
        if shed and self.waiting >= self.config.max_queued:
            SHED.labels("queue_full").inc()
            raise Overloaded("queue full", retry_after_s=self.config.retry_after_s)
        try:
            await self._wait(self._new if shed else self._admitted, shed)
        except TimeoutError:
            SHED.labels("waited_too_long").inc()
            raise Overloaded(
                f"no slot within {self.config.max_wait_s:g} s",
                retry_after_s=self.config.retry_after_s,
            ) from None

    async def _wait(self, queue: deque[asyncio.Future[None]], shed: bool) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(turn)
        WAITING.inc()
        try:
            async with asyncio.timeout(self.config.max_wait_s if shed else None):
                await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._release()  # the slot came as we gave up: pass it on
            else:
                turn.cancel()  # skipped by _release
            raise
        finally:
            WAITING.dec()

    def _release(self) -> None:
        """Hand the slot to the next waiter (admitted stages first), or free it."""
        for queue in (self._admitted, self._new):
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)  # the slot moves on: _active is unchanged
                    return
        self._active -= 1


def unlimited() -> WorkAdmission:
    """For engines built outside a service (tests, benchmarks): never refuses in practice."""
    return WorkAdmission(AdmissionConfig(max_active=1_000_000, max_queued=1_000_000))
