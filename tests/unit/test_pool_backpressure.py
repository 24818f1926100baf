"""Backpressure: a bounded FIFO queue in front of the pool, then 429 with Retry-After."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from docqa_core.errors import DependencyUnavailable, RateLimited
from query_engine.llm.admission import QueueFull, QueueTimeout, WaitQueue
from query_engine.llm.pool import Route
from tests.unit._pool_fakes import FakeCluster, chat_body, fake_servers, started_pool, wait_for

ROUTE = Route(model="m")


class Slots:
    """A stand-in for the pool's slot bookkeeping: ``free`` slots, handed out by ``pick``."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.abandoned: list[int] = []
        self.taken = 0

    def pick(self) -> int | None:
        if self.free <= 0:
            return None
        self.free -= 1
        self.taken += 1
        return self.taken


async def test_queue_serves_waiters_first_come_first_served() -> None:
    slots, queue = Slots(1), WaitQueue[int](max_size=5)
    assert await queue.admit(slots.pick, timeout_s=1, abandon=slots.abandoned.append) == 1
    order: list[str] = []

    async def wait(name: str) -> None:
        await queue.admit(slots.pick, timeout_s=5, abandon=slots.abandoned.append)
        order.append(name)

    waiters = [asyncio.create_task(wait(name)) for name in ("a", "b", "c")]
    await wait_for(lambda: len(queue) == 3)
    for _ in range(3):
        slots.free += 1
        queue.wake()
        await asyncio.sleep(0)
    await asyncio.gather(*waiters)
    assert order == ["a", "b", "c"] and len(queue) == 0


async def test_full_queue_refuses_and_long_waits_time_out() -> None:
    slots, queue = Slots(0), WaitQueue[int](max_size=1)
    waiter = asyncio.create_task(queue.admit(slots.pick, timeout_s=5, abandon=print))
    await wait_for(lambda: len(queue) == 1)
    with pytest.raises(QueueFull):
        await queue.admit(slots.pick, timeout_s=5, abandon=print)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    with pytest.raises(QueueTimeout):
        await queue.admit(slots.pick, timeout_s=0.05, abandon=print)
    assert len(queue) == 0
    with pytest.raises(QueueFull):  # no queueing at all when the wait may not last
        await queue.admit(slots.pick, timeout_s=0, abandon=print)


async def test_a_retry_jumps_the_queue_and_its_bound() -> None:
    slots, queue = Slots(0), WaitQueue[int](max_size=1)
    first = asyncio.create_task(queue.admit(slots.pick, timeout_s=5, abandon=print))
    await wait_for(lambda: len(queue) == 1)
    retry = asyncio.create_task(queue.admit(slots.pick, timeout_s=5, abandon=print, priority=True))
    await wait_for(lambda: len(queue) == 2)
    slots.free = 1
    queue.wake()
    assert await retry == 1
    assert not first.done()
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)


async def test_a_slot_given_to_a_waiter_that_left_is_handed_back() -> None:
    slots, queue = Slots(0), WaitQueue[int](max_size=2)
    waiter = asyncio.create_task(
        queue.admit(slots.pick, timeout_s=5, abandon=slots.abandoned.append)
    )
    await wait_for(lambda: len(queue) == 1)
    slots.free = 1
    queue.wake()  # the slot is taken for the waiter...
    waiter.cancel()  # ...which is cancelled before it runs again
    await asyncio.gather(waiter, return_exceptions=True)
    assert slots.abandoned == [1] and len(queue) == 0


async def test_saturated_pool_answers_rate_limited_with_retry_after() -> None:
    servers = fake_servers(2)
    gate = asyncio.Event()
    for server in servers:
        server.gate = gate
    pool = await started_pool(FakeCluster(*servers), max_in_flight=1, queue_size=1)
    rejected_before = (
        REGISTRY.get_sample_value("docqa_llm_rejected_total", {"reason": "queue_full"}) or 0.0
    )
    try:
        running = [asyncio.create_task(pool.chat(chat_body(), ROUTE)) for _ in range(2)]
        await wait_for(lambda: sum(s.held for s in servers) == 2)  # both endpoints at max
        queued = asyncio.create_task(pool.chat(chat_body(), ROUTE))
        await wait_for(lambda: pool.queued == 1)
        assert REGISTRY.get_sample_value("docqa_llm_queue_depth") == 1
        with pytest.raises(RateLimited) as caught:
            await pool.chat(chat_body(), ROUTE)
        assert caught.value.retry_after_s >= 1
        assert caught.value.detail == {"reason": "queue_full", "queued": 1}
        rejected = REGISTRY.get_sample_value("docqa_llm_rejected_total", {"reason": "queue_full"})
        assert rejected == rejected_before + 1
        gate.set()  # slots free up: the queued request runs, nothing else failed
        await asyncio.gather(*running, queued)
        assert pool.queued == 0 and REGISTRY.get_sample_value("docqa_llm_queue_depth") == 0
    finally:
        gate.set()
        await pool.aclose()


async def test_queued_request_times_out_as_rate_limited() -> None:
    (server,) = fake_servers(1)
    server.gate = asyncio.Event()
    pool = await started_pool(FakeCluster(server), max_in_flight=1, queue_timeout_s=0.1)
    try:
        holder = asyncio.create_task(pool.chat(chat_body(), ROUTE))
        await wait_for(lambda: server.held == 1)
        with pytest.raises(RateLimited) as caught:
            await pool.chat(chat_body(), ROUTE)
        assert caught.value.detail["reason"] == "queue_timeout"
        server.gate.set()
        await holder
    finally:
        server.gate.set()
        await pool.aclose()


async def test_no_healthy_endpoint_fails_fast_instead_of_queueing() -> None:
    servers = fake_servers(2)
    for server in servers:
        server.up = False
    pool = await started_pool(FakeCluster(*servers), health_interval_s=60)
    try:
        with pytest.raises(DependencyUnavailable, match="no LLM server is healthy"):
            await pool.chat(chat_body(), ROUTE)
        assert pool.queued == 0
        with pytest.raises(RuntimeError, match="no LLM endpoint is healthy"):
            await pool.check_ready()
        servers[1].up = True
        await asyncio.sleep(0.25)  # the breaker's cooldown; the next probe is a minute away
        await pool.check_ready()  # so this one probes again before failing: it is back
        assert {s.url: s.state for s in pool.snapshot()}[servers[1].url] == "closed"
    finally:
        await pool.aclose()
