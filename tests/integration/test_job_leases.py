"""Job leases on a real Redis (the Lua scripts), and real workers side by side on real Milvus:
a live worker's jobs are never taken; a dead worker's jobs are resumed by another."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from indexing.jobs import JobStore, JobWorker
from indexing.pipeline import IngestionPipeline, SourceDocument
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


def documents(count: int, tag: str = "") -> list[SourceDocument]:
    return [
        SourceDocument(f"doc-{i}", f"Document {i}{tag} is about topic {i * 7} and nothing else.")
        for i in range(count)
    ]


async def queue(jobs: JobStore, redis: Redis) -> list[str]:
    return [raw.decode() for raw in await redis.lrange(jobs.queue_key, 0, -1)]


async def test_renewal_reports_whether_the_lease_was_held(jobs: JobStore) -> None:
    assert not await jobs.renew_lease("w1", 0.2)  # first take
    assert await jobs.renew_lease("w1", 0.2)
    await asyncio.sleep(0.3)
    assert not await jobs.renew_lease("w1", 0.2)  # it had expired


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
    await jobs.renew_lease("dead", 0.2)
    assert await jobs.claim("dead", wait_s=1) == first
    assert await jobs.claim("dead", wait_s=1) == second
    await redis.rpush(jobs.queue_key, waiting)
    await asyncio.sleep(0.3)
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
    async with asyncio.timeout(timeout_s):
        while True:
            states = [(await jobs.get(j))["state"] for j in job_ids]
            if all(s in {"succeeded", "failed", "partial"} for s in states):
                return
            await asyncio.sleep(0.1)


async def test_two_live_workers_never_take_each_others_jobs(
    jobs: JobStore, data_clients: DataClients, data_servers: Servers, collection: str
) -> None:
    pipeline = pipeline_of(data_clients, data_servers)
    # each job takes several lease periods, so only renewals keep it with its worker
    long_tag = " and of the lease test, which needs documents long enough to embed slowly" * 8
    job_ids = [
        await jobs.create(collection, documents(8, f" of job {n}{long_tag}")) for n in range(4)
    ]
    first = JobWorker(jobs, pipeline, concurrency=1, lease_ttl_s=0.6, worker_id="first")
    second = JobWorker(jobs, pipeline, concurrency=1, lease_ttl_s=0.6, worker_id="second")
    running = [asyncio.create_task(first.run())]
    await asyncio.sleep(0.3)  # `first` holds a job when `second` starts (and reaps at once)
    running.append(asyncio.create_task(second.run()))
    try:
        await wait_until_final(jobs, job_ids)
    finally:
        first.stop()
        second.stop()
        await asyncio.gather(*running)
    records = [await jobs.get(j) for j in job_ids]
    assert [r["state"] for r in records] == ["succeeded"] * 4
    assert [r["attempts"] for r in records] == [1] * 4, "a job ran twice"
    assert [r["indexed"] for r in records] == [8] * 4  # each job replaced the documents
    started = sorted(r["started_at"] for r in records)
    assert started[1] - started[0] < 1.0, "the second worker did not run alongside the first"


async def test_a_dead_workers_job_is_finished_by_another(
    jobs: JobStore, redis: Redis, data_clients: DataClients, data_servers: Servers, collection: str
) -> None:
    job_id = await jobs.create(collection, documents(5))
    await jobs.renew_lease("dead", 0.5)
    assert await jobs.claim("dead", wait_s=1) == job_id
    await jobs.start_attempt(job_id)  # it died mid-job
    survivor = JobWorker(
        jobs, pipeline_of(data_clients, data_servers), lease_ttl_s=0.5, worker_id="survivor"
    )
    task = asyncio.create_task(survivor.run())
    try:
        await wait_until_final(jobs, [job_id])
    finally:
        survivor.stop()
        await task
    record = await jobs.get(job_id)
    assert (record["state"], record["attempts"], record["indexed"]) == ("succeeded", 2, 5)
    assert await redis.llen(jobs.processing_key("dead")) == 0
