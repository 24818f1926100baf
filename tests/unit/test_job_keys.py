"""The job queue's Redis keys: every key used together hashes to one Redis Cluster slot (computed
with redis-py's ``key_slot``, and checked by a real one-node Redis Cluster, which rejects
cross-slot commands), and jobs left under the key names of earlier releases are adopted on a real
redis-server (the session fixture)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import redis as sync_redis
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from deploy import processes, stack
from indexing.jobs import JobStore, JobWorker
from indexing.pipeline import (
    DocumentOutcome,
    IngestionPipeline,
    PipelineConfig,
    ProgressFn,
    SourceDocument,
)
from indexing.store import ChunkStore


def slot(key: str) -> int:
    return key_slot(key.encode())


# ------------------------------------------------------------------------------ key slots


@pytest.mark.parametrize("prefix", ["docqa", "itest", "lease-1a2b3c4d", "a.b_C-9"])
def test_every_group_of_keys_used_together_hashes_to_one_slot(prefix: str) -> None:
    jobs = JobStore(cast(Redis, None), prefix)
    job, worker = uuid.uuid4().hex, "indexing-api-7d9f-1-0a1b2c3d"
    lease, processing = jobs.lease_key(worker), jobs.processing_key(worker)
    record, payload = jobs._job_key(job), jobs._payload_key(job)
    groups = {
        "_RENEW_LEASE script": [lease, jobs.workers_key],
        "_REQUEUE_IF_EXPIRED script": [lease, processing, jobs.queue_key, jobs.workers_key],
        "claim BLMOVE": [jobs.queue_key, processing],
        "release LMOVE": [processing, jobs.queue_key],
        "release MULTI": [lease, jobs.workers_key],
        "create MULTI": [payload, record, jobs.queue_key],
        "start_attempt / record MULTI": [record],
        "finish MULTI": [record, processing, payload],
        "retry_later MULTI": [record, processing, jobs.queue_key],
    }
    for name, keys in groups.items():
        assert len({slot(k) for k in keys}) == 1, name
    # and all of them together: one slot for the whole queue, whatever the job or worker
    others = [jobs._job_key(uuid.uuid4().hex), jobs.processing_key("w{1}"), jobs.lease_key("x")]
    every_key = [k for keys in groups.values() for k in keys] + others
    assert {slot(k) for k in every_key} == {slot(jobs.queue_key)}
    assert all(k.startswith(f"{prefix}:{{jobs}}:") for k in every_key)  # still under the prefix


def test_the_old_key_names_did_not_share_a_slot() -> None:
    jobs = JobStore(cast(Redis, None), "docqa")
    job = "0123456789abcdef0123456789abcdef"
    old_create = [f"{jobs.legacy_job_key(job)}:documents", jobs.legacy_job_key(job)]
    assert len({slot(k) for k in [*old_create, jobs.legacy_queue_key]}) > 1


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="braces"):
        JobStore(cast(Redis, None), "a{b}")


# ------------------------------------------------------------------ on a real Redis Cluster


@pytest.fixture(scope="module")
def cluster_url(runtime_dir: Path) -> Iterator[str]:
    """A one-node Redis Cluster owning every slot: it runs every command a plain client sends,
    but rejects (CROSSSLOT) any script, transaction or command whose keys are in two slots."""
    port = processes.free_port()
    bus_port = processes.free_port()  # by default port + 10000, which may be out of range
    while bus_port == port:
        bus_port = processes.free_port()
    data_dir = runtime_dir / "redis-cluster"
    data_dir.mkdir(parents=True, exist_ok=True)
    base = stack.redis_spec(stack.StackPaths(runtime_dir), port, name="test-redis-cluster")
    spec = processes.ProcessSpec(
        name=base.name,
        command=[
            *base.command,
            "--cluster-enabled", "yes",
            "--cluster-port", str(bus_port),
            "--cluster-config-file", str(data_dir / "nodes.conf"),
            "--dir", str(data_dir),
        ],
        log_path=runtime_dir / "test-redis-cluster.log",
        pid_path=runtime_dir / "test-redis-cluster.pid",
    )  # fmt: skip
    processes.start(spec)
    try:
        processes.wait_until_ready(spec, stack.redis_ready(port), timeout_s=30)
        client = sync_redis.Redis(port=port)
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 30
        while client.cluster("INFO")["cluster_state"] != "ok":
            assert time.monotonic() < deadline, "the one-node cluster did not come up"
            time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        processes.stop(spec.pid_path)


@pytest.fixture
async def cluster(cluster_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(cluster_url)
    yield client
    await client.aclose()


def documents(count: int) -> list[SourceDocument]:
    return [SourceDocument(f"doc-{i}", f"Document {i}.") for i in range(count)]


async def test_the_cluster_rejects_keys_in_two_slots(cluster: Redis) -> None:
    """The check below has teeth: the old names' ``create`` transaction fails here."""
    jobs = JobStore(cluster, "old")
    with pytest.raises(ResponseError, match="hash to the same slot"):
        async with cluster.pipeline(transaction=True) as pipe:
            pipe.set(f"{jobs.legacy_job_key('j')}:documents", "[]")
            pipe.rpush(jobs.legacy_queue_key, "j")
            await pipe.execute()


async def test_every_job_store_command_runs_on_a_redis_cluster(cluster: Redis) -> None:
    jobs = JobStore(cluster, "cl-" + uuid.uuid4().hex[:8])
    first, second = await jobs.create("c", documents(2)), await jobs.create("c", documents(1))
    assert not await jobs.renew_lease("live", 10)
    assert await jobs.renew_lease("live", 10)
    assert await jobs.claim("live", wait_s=1) == first
    await jobs.start_attempt(first)
    await jobs.record(first, DocumentOutcome("doc-0", "indexed", chunks=3))
    await jobs.record(first, DocumentOutcome("doc-1", "failed", error="unreadable"))
    assert [d.doc_id for d in await jobs.documents(first)] == ["doc-0", "doc-1"]
    await jobs.finish(first, "partial", worker_id="live")
    record = await jobs.get(first)
    assert (record["state"], record["indexed"], record["failed"]) == ("partial", 1, 1)
    assert record["errors"] == [{"doc_id": "doc-1", "error": "unreadable"}]

    assert await jobs.claim("live", wait_s=1) == second
    await jobs.retry_later(second, "milvus is down", worker_id="live")
    await jobs.renew_lease("dead", 0.1)
    assert await jobs.claim("dead", wait_s=1) == second
    await asyncio.sleep(0.2)
    assert await jobs.requeue_expired() == 1  # and the old-name checks are harmless here
    assert await jobs.claim("live", wait_s=1) == second
    assert await jobs.release("live") == 1
    assert await cluster.lrange(jobs.queue_key, 0, -1) == [second.encode()]


# ------------------------------------------------------------- upgrades from the old names


@pytest.fixture
async def redis(redis_server: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server)
    yield client
    await client.aclose()


@pytest.fixture
def jobs(redis: Redis) -> JobStore:
    return JobStore(redis, "upgrade-" + uuid.uuid4().hex[:8])


async def queue(redis: Redis, jobs: JobStore) -> list[str]:
    return [cast(bytes, raw).decode() for raw in await redis.lrange(jobs.queue_key, 0, -1)]


async def plant_old_job(redis: Redis, jobs: JobStore, job_id: str, *, attempts: int = 0) -> None:
    """A job record and payload as releases before the hash tag wrote them."""
    record = {"job_id": job_id, "collection": "c", "state": "queued", "total": 1}
    record["attempts"] = attempts
    await redis.set(
        f"{jobs.legacy_job_key(job_id)}:documents",
        json.dumps([{"doc_id": f"doc-of-{job_id}", "text": "Text."}]),
        ex=3600,
    )
    await redis.hset(
        jobs.legacy_job_key(job_id), mapping={k: json.dumps(v) for k, v in record.items()}
    )
    await redis.expire(jobs.legacy_job_key(job_id), 3600)


async def plant_old_deployment(redis: Redis, jobs: JobStore) -> None:
    """queued: on the old queue; dead: held by an old worker without a lease; shared: in the
    processing list of releases before leases; live: held by an old worker that still runs;
    done: finished by an old worker."""
    for job_id in ("queued", "dead", "shared", "live"):
        await plant_old_job(redis, jobs, job_id, attempts=int(job_id == "dead"))
    await redis.rpush(jobs.legacy_queue_key, "queued")
    await redis.rpush(jobs.legacy_worker_processing_key("old-dead"), "dead")
    await redis.rpush(jobs.legacy_processing_key, "shared")
    await redis.rpush(jobs.legacy_worker_processing_key("old-live"), "live")
    await redis.set(jobs.legacy_lease_key("old-live"), "old-live", px=10_000)
    await redis.sadd(jobs.legacy_workers_key, "old-dead", "old-live")
    await redis.hset(
        jobs.legacy_job_key("done"),
        mapping={"job_id": '"done"', "collection": '"c"', "state": '"succeeded"', "total": "1"},
    )


async def test_the_reaper_adopts_jobs_left_under_the_old_names(
    redis: Redis, jobs: JobStore
) -> None:
    await plant_old_deployment(redis, jobs)
    assert await jobs.requeue_expired() == 3
    assert set(await queue(redis, jobs)) == {"queued", "dead", "shared"}
    for job_id in ("queued", "dead", "shared"):
        # records and payloads moved with their ids, and keep their TTL
        assert not await redis.exists(jobs.legacy_job_key(job_id))
        assert 0 < await redis.ttl(jobs._job_key(job_id)) <= 3600
        assert (await jobs.get(job_id))["collection"] == "c"
        assert [d.doc_id for d in await jobs.documents(job_id)] == [f"doc-of-{job_id}"]
    # a live old worker keeps its job; its record and a finished one stay readable
    assert await redis.lrange(jobs.legacy_worker_processing_key("old-live"), 0, -1) == [b"live"]
    assert await redis.smembers(jobs.legacy_workers_key) == {b"old-live"}
    assert (await jobs.get("live"))["state"] == "queued"
    assert (await jobs.get("done"))["state"] == "succeeded"
    assert await jobs.requeue_expired() == 0  # once
    # when the old worker dies, its job is adopted too
    await redis.delete(jobs.legacy_lease_key("old-live"))
    assert await jobs.requeue_expired() == 1
    assert await redis.lindex(jobs.queue_key, 0) == b"live"
    assert not await redis.exists(jobs.legacy_workers_key)


async def test_replicas_starting_together_adopt_each_job_once(redis: Redis, jobs: JobStore) -> None:
    await plant_old_deployment(redis, jobs)
    replicas = [JobStore(redis, jobs._prefix) for _ in range(6)]
    moved = await asyncio.gather(*(r.requeue_expired() for r in replicas))
    assert sum(moved) == 3
    assert sorted(await queue(redis, jobs)) == ["dead", "queued", "shared"]


class InstantPipeline(IngestionPipeline):
    def __init__(self) -> None:
        super().__init__(
            store=cast(ChunkStore, None),
            embedder=cast(Any, None),
            redis=cast(Redis, None),
            config=PipelineConfig(),
        )
        self.ingested: list[str] = []

    async def ingest(
        self,
        collection: str,
        documents: Sequence[SourceDocument],
        *,
        on_document: ProgressFn | None = None,
        flush: bool = True,
    ) -> list[DocumentOutcome]:
        self.ingested += [d.doc_id for d in documents]
        return [DocumentOutcome(d.doc_id, "indexed", chunks=1) for d in documents]


async def test_a_new_worker_runs_the_jobs_an_old_release_left(redis: Redis, jobs: JobStore) -> None:
    await plant_old_deployment(redis, jobs)
    pipeline = InstantPipeline()
    worker = JobWorker(jobs, pipeline, lease_ttl_s=10, worker_id="new")
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            while True:
                states = [(await jobs.get(j))["state"] for j in ("queued", "dead", "shared")]
                if states == ["succeeded"] * 3:
                    break
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
    assert sorted(pipeline.ingested) == ["doc-of-dead", "doc-of-queued", "doc-of-shared"]
    for job_id, attempts in (("queued", 1), ("dead", 2), ("shared", 1)):
        record = await jobs.get(job_id)
        assert (record["state"], record["attempts"], record["collection"]) == (
            "succeeded",
            attempts,
            "c",
        )
        assert not await redis.exists(jobs._payload_key(job_id))  # deleted when it ended
    assert (await jobs.get("live"))["state"] == "queued"  # still the old live worker's
