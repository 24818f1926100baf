"""The job worker's lease, reaper and attempt logic, against fakes of our own seams (the job store
and the pipeline). The Redis side of leases (the Lua scripts) is tested on a real Redis in
tests/integration/test_job_leases.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from indexing.jobs import JobState, JobStore, JobWorker, new_worker_id
from indexing.loaders import PendingUpload
from indexing.pipeline import (
    DocumentOutcome,
    IngestionPipeline,
    PipelineConfig,
    ProgressFn,
    SourceDocument,
)
from indexing.store import ChunkStore


class FakeJobStore(JobStore):
    def __init__(self, jobs: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(cast(Redis, None), "fake")
        self.queue = list(jobs or {})
        self.records = jobs or {}
        self.held: dict[str, list[str]] = {}
        self.renewals: list[str] = []
        self.reaps = 0
        self.released: list[str] = []
        self.finished: dict[str, tuple[JobState, str | None]] = {}
        self.fail_renewals = 0

    async def claim(self, worker_id: str, wait_s: int) -> str | None:
        if not self.queue:
            await asyncio.sleep(0.01)
            return None
        job_id = self.queue.pop(0)
        self.held.setdefault(worker_id, []).append(job_id)
        return job_id

    async def renew_lease(self, worker_id: str, ttl_s: float) -> bool:
        if self.fail_renewals:
            self.fail_renewals -= 1
            raise RedisConnectionError("redis is down")
        held = worker_id in self.renewals
        self.renewals.append(worker_id)
        return held

    async def requeue_expired(self) -> int:
        self.reaps += 1
        return 0

    async def release(self, worker_id: str) -> int:
        self.released.append(worker_id)
        cut_short = self.held.pop(worker_id, [])
        self.queue[:0] = cut_short
        return len(cut_short)

    async def get(self, job_id: str) -> dict[str, Any]:
        return self.records[job_id]

    async def start_attempt(self, job_id: str) -> None:
        self.records[job_id]["attempts"] = self.records[job_id].get("attempts", 0) + 1

    async def uploads(self, job_id: str) -> list[PendingUpload]:
        return []

    async def documents(self, job_id: str) -> list[SourceDocument]:
        return [SourceDocument("d1", "text")]

    async def record(self, job_id: str, outcome: DocumentOutcome) -> None:
        return None

    async def finish(
        self, job_id: str, state: JobState, *, worker_id: str, error: str | None = None
    ) -> None:
        self.held[worker_id].remove(job_id)
        self.finished[job_id] = (state, error)


class FakePipeline(IngestionPipeline):
    """Ingests instantly, or waits for ``release`` when ``hold`` is set."""

    def __init__(self, *, hold: bool = False) -> None:
        super().__init__(
            store=cast(ChunkStore, None),
            embedder=cast(Any, None),
            redis=cast(Redis, None),
            config=PipelineConfig(),
        )
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.runs = 0

    async def ingest(
        self,
        collection: str,
        documents: Sequence[SourceDocument],
        *,
        on_document: ProgressFn | None = None,
        flush: bool = True,
    ) -> list[DocumentOutcome]:
        self.runs += 1
        self.started.set()
        await self.release.wait()
        return [DocumentOutcome(d.doc_id, "indexed", chunks=1) for d in documents]


def job(attempts: int = 0) -> dict[str, Any]:
    return {"collection": "c", "attempts": attempts}


async def until(condition: Any, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_worker_takes_its_lease_renews_it_and_reaps_periodically() -> None:
    store = FakeJobStore({"j1": job()})
    worker = JobWorker(store, FakePipeline(), lease_ttl_s=0.15, worker_id="w1")
    task = asyncio.create_task(worker.run())
    await until(lambda: "j1" in store.finished and len(store.renewals) >= 3 and store.reaps >= 3)
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert store.finished["j1"] == ("succeeded", None)
    assert set(store.renewals) == {"w1"}


async def test_lease_is_kept_until_the_last_job_in_hand_ends() -> None:
    store = FakeJobStore({"j1": job()})
    pipeline = FakePipeline(hold=True)
    worker = JobWorker(store, pipeline, lease_ttl_s=0.15, worker_id="w1")
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(pipeline.started.wait(), 5)
    worker.stop()
    renewed_at_stop = len(store.renewals)
    # renewals go on after stop() while the job is in hand: another replica must not take it
    await until(lambda: len(store.renewals) >= renewed_at_stop + 3, timeout_s=60)
    assert not task.done()
    pipeline.release.set()
    await asyncio.wait_for(task, 5)
    assert store.finished["j1"] == ("succeeded", None)


async def test_release_hands_jobs_cut_short_back_to_the_queue() -> None:
    store = FakeJobStore({"j1": job()})
    pipeline = FakePipeline(hold=True)
    worker = JobWorker(store, pipeline, lease_ttl_s=10, worker_id="w1")
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(pipeline.started.wait(), 5)
    worker.stop()
    task.cancel()  # the shutdown grace ran out
    await asyncio.gather(task, return_exceptions=True)
    await worker.release()
    assert store.released == ["w1"]
    assert store.queue == ["j1"] and "j1" not in store.finished


async def test_a_job_interrupted_too_often_fails_without_running() -> None:
    store = FakeJobStore({"j1": job(attempts=3)})
    pipeline = FakePipeline()
    worker = JobWorker(store, pipeline, max_attempts=3, lease_ttl_s=10, worker_id="w1")
    task = asyncio.create_task(worker.run())
    await until(lambda: "j1" in store.finished)
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert pipeline.runs == 0
    state, error = store.finished["j1"]
    assert state == "failed" and error == "gave up after 3 interrupted attempts"


async def test_lease_renewal_survives_redis_errors() -> None:
    store = FakeJobStore()
    store.fail_renewals = 2
    worker = JobWorker(store, FakePipeline(), lease_ttl_s=0.3, retry_delay_s=0.01, worker_id="w1")
    task = asyncio.create_task(worker.run())
    await until(lambda: len(store.renewals) >= 2)
    worker.stop()
    await asyncio.wait_for(task, 5)


def test_worker_ids_are_unique_per_worker() -> None:
    assert new_worker_id() != new_worker_id()


class HungClaimStore(FakeJobStore):
    """A queue whose claim never returns: a BLMOVE on a connection that went silent."""

    def __init__(self) -> None:
        super().__init__()
        self.claiming = asyncio.Event()

    async def claim(self, worker_id: str, wait_s: int) -> str | None:
        self.claiming.set()
        await asyncio.Event().wait()
        return None


async def test_stop_returns_even_when_a_claim_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("indexing.jobs.CLAIM_GRACE_S", 0.05)
    store = HungClaimStore()
    worker = JobWorker(store, FakePipeline(), lease_ttl_s=0.3, retry_delay_s=0.01, worker_id="w1")
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(store.claiming.wait(), 60)  # the claim is waiting
    worker.stop()
    await asyncio.wait_for(task, 5)  # hung forever before the claim had a deadline
