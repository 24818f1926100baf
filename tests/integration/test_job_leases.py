"""Job leases on a real Redis (the Lua scripts), and real workers side by side on real Milvus:
a live worker's jobs are never taken; a dead worker's jobs are resumed by another.

Nothing here bets on the machine's speed: a lease is made to lapse by waiting until Redis has
dropped its key, and workers are kept busy for several lease periods by holding their jobs at a
commit hook until their renewals and the reaper have been seen to run, not for a guessed time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from redis.asyncio import Redis

from indexing.jobs import JobStore, JobWorker
from indexing.pipeline import CommitStage, IngestionPipeline, SourceDocument
from services.common.clients import DataClients, build_data_clients, build_pipeline
from tests.conftest import Servers
from tests.integration.conftest import indexing_settings


@pytest.fixture
async def redis(data_servers: Servers) -> AsyncIterator[Redis]:
    client = Redis.from_url(data_servers.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def jobs(redis: Redis) -> JobStore:
    return JobStore(redis, "lease-" + uuid.uuid4().hex[:8])


def documents(count: int, tag: str = "", prefix: str = "doc") -> list[SourceDocument]:
    return [
        SourceDocument(
            f"{prefix}-{i}", f"Document {i}{tag} is about topic {i * 7} and nothing else."
        )
        for i in range(count)
    ]


async def queue(jobs: JobStore, redis: Redis) -> list[str]:
    return [raw.decode() for raw in await redis.lrange(jobs.queue_key, 0, -1)]


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 120) -> None:
    """Wait for a state; the timeout only bounds a test that would otherwise hang."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.01)


async def lapse(jobs: JobStore, redis: Redis, worker_id: str) -> None:
    """The worker stops renewing, as a dead one does: its lease runs out (Redis drops the key)."""
    await redis.pexpire(jobs.lease_key(worker_id), 1)

    async def gone() -> bool:
        return not await redis.exists(jobs.lease_key(worker_id))

    await until(gone)


async def test_renewal_reports_whether_the_lease_was_held(jobs: JobStore, redis: Redis) -> None:
    assert not await jobs.renew_lease("w1", 10)  # first take
    assert await jobs.renew_lease("w1", 10)
    await lapse(jobs, redis, "w1")
    assert not await jobs.renew_lease("w1", 10)  # it had expired
    assert await jobs.renew_lease("w1", 10)


async def test_a_live_workers_jobs_stay_with_it(jobs: JobStore, redis: Redis) -> None:
    job_id = await jobs.create("c", documents(1))
    await jobs.renew_lease("live", 10)
    assert await jobs.claim("live", wait_s=1) == job_id
    assert await jobs.requeue_expired() == 0
    assert await redis.lrange(jobs.processing_key("live"), 0, -1) == [job_id.encode()]
    assert await queue(jobs, redis) == []


async def test_a_dead_workers_jobs_go_back_to_the_front_of_the_queue(
    jobs: JobStore, redis: Redis
) -> None:
    waiting = await jobs.create("c", documents(1))
    first, second = await jobs.create("c", documents(1)), await jobs.create("c", documents(1))
    await redis.lrem(jobs.queue_key, 0, waiting)  # claim `first` and `second` only
    await jobs.renew_lease("dead", 10)
    assert await jobs.claim("dead", wait_s=1) == first
    assert await jobs.claim("dead", wait_s=1) == second
    await redis.rpush(jobs.queue_key, waiting)
    assert await jobs.requeue_expired() == 0  # held: nothing moves
    await lapse(jobs, redis, "dead")
    assert await jobs.requeue_expired() == 2
    assert await queue(jobs, redis) == [first, second, waiting]
    assert not await redis.sismember(jobs.workers_key, "dead")
    assert await jobs.requeue_expired() == 0


async def test_release_and_the_legacy_processing_list(jobs: JobStore, redis: Redis) -> None:
    job_id = await jobs.create("c", documents(1))
    await jobs.renew_lease("stopping", 10)
    await jobs.claim("stopping", wait_s=1)
    assert await jobs.release("stopping") == 1
    assert await queue(jobs, redis) == [job_id]
    assert not await redis.exists(jobs.lease_key("stopping"))
    assert not await redis.sismember(jobs.workers_key, "stopping")
    # a job left by a release without leases is resumed too
    await redis.lmove(jobs.queue_key, jobs.legacy_processing_key, "LEFT", "RIGHT")
    assert await jobs.requeue_expired() == 1
    assert await queue(jobs, redis) == [job_id]


@pytest.fixture(scope="module")
async def data_clients(data_servers: Servers) -> AsyncIterator[DataClients]:
    clients = build_data_clients(indexing_settings(data_servers), can_create=True)
    yield clients
    await clients.aclose()


def pipeline_of(clients: DataClients, data_servers: Servers) -> IngestionPipeline:
    return build_pipeline(clients, indexing_settings(data_servers))


async def wait_until_final(jobs: JobStore, job_ids: list[str], timeout_s: float = 240) -> None:
    async def final() -> bool:
        states = [(await jobs.get(j))["state"] for j in job_ids]
        return all(s in {"succeeded", "failed", "partial"} for s in states)

    await until(final, timeout_s)


class WatchedJobStore(JobStore):
    """The real store, counting each worker's lease renewals, the reaper's runs and the jobs it
    requeued."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        super().__init__(redis, prefix)
        self.renewals: Counter[str] = Counter()
        self.reaps = 0
        self.requeued = 0

    async def renew_lease(self, worker_id: str, ttl_s: float) -> bool:
        held = await super().renew_lease(worker_id, ttl_s)
        self.renewals[worker_id] += 1
        return held

    async def requeue_expired(self) -> int:
        moved = await super().requeue_expired()
        self.reaps += 1
        self.requeued += moved
        return moved


class HeldCommits:
    """A commit hook that holds every job before its commit until ``release`` is set: the jobs
    in hand stay in hand for as long as the test needs, on a fast machine or a slow one."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, stage: CommitStage, collection: str, doc_ids: Sequence[str]) -> None:
        if stage == "written":
            await self.release.wait()


# renewed every 2 s: only an event loop stalled for 4 s loses it (a 3 s lease was lost once with
# load 12 on 2 cores, a renewal coming 2 s late)
LEASE_S = 6.0


async def test_two_live_workers_never_take_each_others_jobs(
    redis: Redis, data_clients: DataClients, data_servers: Servers, collection: str
) -> None:
    jobs = WatchedJobStore(redis, "lease-" + uuid.uuid4().hex[:8])
    pipeline = pipeline_of(data_clients, data_servers)
    hold = HeldCommits()
    pipeline.commit_hook = hold
    job_ids = [
        await jobs.create(collection, documents(4, f" of job {n}", prefix=f"job{n}"))
        for n in range(4)
    ]
    first = JobWorker(jobs, pipeline, concurrency=1, lease_ttl_s=LEASE_S, worker_id="first")
    second = JobWorker(jobs, pipeline, concurrency=1, lease_ttl_s=LEASE_S, worker_id="second")

    async def holding(*workers: str) -> bool:
        return all([await redis.llen(jobs.processing_key(w)) == 1 for w in workers])

    running = [asyncio.create_task(first.run())]
    try:
        await until(lambda: holding("first"))
        running.append(asyncio.create_task(second.run()))  # it reaps at once, and finds `first`
        await until(lambda: holding("first", "second"))  # side by side, a job each
        # both stay busy through more than a lease period: only their renewals keep their jobs
        renewed, reaped = dict(jobs.renewals), jobs.reaps

        async def lease_periods_passed() -> bool:
            return jobs.reaps >= reaped + 3 and all(
                jobs.renewals[w] >= renewed[w] + 4 for w in ("first", "second")
            )

        await until(lease_periods_passed)
        assert await holding("first", "second")
        hold.release.set()
        await wait_until_final(jobs, job_ids)
    finally:
        hold.release.set()
        first.stop()
        second.stop()
        await asyncio.gather(*running)
    records = [await jobs.get(j) for j in job_ids]
    assert [r["state"] for r in records] == ["succeeded"] * 4
    assert [r["attempts"] for r in records] == [1] * 4, "a job ran twice"
    assert [r["indexed"] for r in records] == [4] * 4
    assert jobs.requeued == 0, "a live worker's job was requeued"


async def test_a_dead_workers_job_is_finished_by_another(
    jobs: JobStore, redis: Redis, data_clients: DataClients, data_servers: Servers, collection: str
) -> None:
    job_id = await jobs.create(collection, documents(5))
    await jobs.renew_lease("dead", LEASE_S)
    assert await jobs.claim("dead", wait_s=1) == job_id
    await jobs.start_attempt(job_id)  # it died mid-job
    await lapse(jobs, redis, "dead")
    survivor = JobWorker(
        jobs, pipeline_of(data_clients, data_servers), lease_ttl_s=LEASE_S, worker_id="survivor"
    )
    task = asyncio.create_task(survivor.run())  # its reaper runs at once
    try:
        await wait_until_final(jobs, [job_id])
    finally:
        survivor.stop()
        await task
    record = await jobs.get(job_id)
    assert (record["state"], record["attempts"], record["indexed"]) == ("succeeded", 2, 5)
    assert await redis.llen(jobs.processing_key("dead")) == 0
