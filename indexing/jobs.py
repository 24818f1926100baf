"""Ingestion jobs in Redis: a queue, a state machine, progress counts and per-document errors,
and the worker that runs them.

A job is created ``queued`` (its record, its documents as a payload and its id on the queue, in
one transaction), claimed by a worker, ``running`` for each attempt, and ends ``succeeded``,
``failed`` or ``partial``; a dependency failure puts it back on the queue for another attempt.
Every worker runs its jobs under a lease, and jobs of dead workers are requeued: see
``indexing.job_leases``; the key names (one Redis Cluster hash tag) are in ``indexing.job_keys``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from docqa_core.errors import DocqaError, InvalidRequest, JobNotFound
from indexing.ingest_metrics import timed
from indexing.job_keys import redis_text
from indexing.job_leases import JobLeases
from indexing.loaders.isolated import ParseLimits, PendingUpload, parse_upload
from indexing.pipeline import DocumentOutcome, IngestionPipeline, SourceDocument

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed", "partial"]
FINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "partial"})
MAX_ERRORS_KEPT = 200
UploadParser = Callable[[PendingUpload], Awaitable[list[SourceDocument]]]


class JobStore(JobLeases):
    """Jobs' records, payloads and the queue; leases and the reaper come from ``JobLeases``."""

    def __init__(self, redis: Redis, prefix: str, *, ttl_s: int = 7 * 24 * 3600) -> None:
        super().__init__(redis, prefix)
        self._ttl = ttl_s

    async def create(
        self,
        collection: str,
        documents: Sequence[SourceDocument],
        uploads: Sequence[PendingUpload] = (),
    ) -> str:
        """``uploads``: files the job parses itself, each in a child process (PDF, DOCX, HTML)."""
        job_id = uuid.uuid4().hex
        record = {
            "job_id": job_id,
            "collection": collection,
            "state": "queued",
            "created_at": time.time(),
            "total": len(documents) + len(uploads),
            "attempts": 0,
        }
        entries = [dataclasses.asdict(d) for d in documents]
        entries += [{"upload": upload.to_payload()} for upload in uploads]
        payload = json.dumps(entries, ensure_ascii=False)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._payload_key(job_id), payload, ex=self._ttl)
            pipe.hset(self._job_key(job_id), mapping=_encode(record))
            pipe.expire(self._job_key(job_id), self._ttl)
            pipe.rpush(self.queue_key, job_id)
            await pipe.execute()
        return job_id

    async def get(self, job_id: str) -> dict[str, Any]:
        raw = await self._redis.hgetall(self._job_key(job_id))
        if not raw:
            # a job an old release finished (or still runs): its record keeps the old name
            raw = await self._redis.hgetall(self.legacy_job_key(job_id))
        if not raw:
            raise JobNotFound.named(job_id)
        return _decode(raw)

    async def documents(self, job_id: str) -> list[SourceDocument]:
        return (await self.payload(job_id))[0]

    async def uploads(self, job_id: str) -> list[PendingUpload]:
        return (await self.payload(job_id))[1]

    async def payload(self, job_id: str) -> tuple[list[SourceDocument], list[PendingUpload]]:
        """The job's documents and the uploads it has still to parse."""
        payload = await self._redis.get(self._payload_key(job_id))
        entries = json.loads(payload) if payload is not None else []
        documents = [_document_from_dict(e) for e in entries if "upload" not in e]
        uploads = [PendingUpload.from_payload(e["upload"]) for e in entries if "upload" in e]
        return documents, uploads

    async def claim(self, worker_id: str, wait_s: int) -> str | None:
        job_id = await self._redis.blmove(
            self.queue_key, self.processing_key(worker_id), wait_s, "LEFT", "RIGHT"
        )
        return redis_text(job_id) if job_id is not None else None

    async def start_attempt(self, job_id: str) -> None:
        key = self._job_key(job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping=_encode(
                    {
                        "state": "running",
                        "started_at": time.time(),
                        "processed": 0,
                        "indexed": 0,
                        "unchanged": 0,
                        "failed": 0,
                        "chunks": 0,
                        "errors": [],
                    }
                ),
            )
            pipe.hincrby(key, "attempts", 1)
            await pipe.execute()

    async def record(self, job_id: str, outcome: DocumentOutcome) -> None:
        key = self._job_key(job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "processed", 1)
            pipe.hincrby(key, outcome.outcome, 1)
            pipe.hincrby(key, "chunks", outcome.chunks if outcome.outcome == "indexed" else 0)
            await pipe.execute()
        if outcome.error:
            job = await self.get(job_id)
            errors = list(job.get("errors") or [])
            if len(errors) < MAX_ERRORS_KEPT:
                errors.append({"doc_id": outcome.doc_id, "error": outcome.error})
                await self._redis.hset(key, "errors", json.dumps(errors, ensure_ascii=False))

    async def finish(
        self, job_id: str, state: JobState, *, worker_id: str, error: str | None = None
    ) -> None:
        fields: dict[str, Any] = {"state": state, "finished_at": time.time()}
        if error:
            fields["error"] = error
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._job_key(job_id), mapping=_encode(fields))
            pipe.lrem(self.processing_key(worker_id), 0, job_id)
            if state in FINAL_STATES:
                pipe.delete(self._payload_key(job_id))
            await pipe.execute()

    async def retry_later(self, job_id: str, error: str, *, worker_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._job_key(job_id), mapping=_encode({"state": "queued", "error": error}))
            pipe.lrem(self.processing_key(worker_id), 0, job_id)
            pipe.rpush(self.queue_key, job_id)
            await pipe.execute()


CLAIM_GRACE_S = 5.0  # how long past its own wait a claim may take before it is abandoned


class JobWorker:
    """Runs queued jobs with bounded concurrency inside the indexing service, under a lease."""

    def __init__(
        self,
        jobs: JobStore,
        pipeline: IngestionPipeline,
        *,
        concurrency: int = 2,
        max_attempts: int = 5,
        retry_delay_s: float = 2.0,
        lease_ttl_s: float = 30.0,
        worker_id: str | None = None,
        parse: UploadParser | None = None,
    ) -> None:
        self._jobs = jobs
        self._parse: UploadParser = parse or _default_parser
        self._pipeline = pipeline
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._retry_delay_s = retry_delay_s
        self._lease_ttl_s = lease_ttl_s
        self.worker_id = worker_id or new_worker_id()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Finish the jobs in hand, claim no more. (Cancelling a blocked ``BLMOVE`` is not
        reliable: redis-py turns the cancellation into a ``TimeoutError``.)"""
        self._stopping.set()

    async def run(self) -> None:
        """Take the lease, then claim jobs until stopped. The lease is renewed until every job in
        hand has ended, so a slow last job is not taken over by another replica."""
        await self._take_lease()
        keep_lease = asyncio.create_task(self._keep_lease(), name="job-lease")
        try:
            await asyncio.gather(
                self._reap_periodically(), *(self._loop() for _ in range(self._concurrency))
            )
        finally:
            keep_lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_lease

    async def release(self) -> None:
        """After ``run`` ended (or was cancelled): hand jobs cut short back to the queue."""
        try:
            moved = await self._jobs.release(self.worker_id)
        except (RedisError, OSError) as exc:
            log.warning("could not release the job lease", extra={"error": str(exc)})
            return
        if moved:
            log.info("jobs cut short were put back on the queue", extra={"jobs": moved})

    async def _take_lease(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._jobs.renew_lease(self.worker_id, self._lease_ttl_s)
                return
            except (RedisError, OSError) as exc:
                log.warning("job queue unreachable", extra={"error": str(exc)})
                await asyncio.sleep(self._retry_delay_s)

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ttl_s / 3)
            try:
                held = await self._jobs.renew_lease(self.worker_id, self._lease_ttl_s)
            except (RedisError, OSError) as exc:
                log.warning("could not renew the job lease", extra={"error": str(exc)})
                continue
            if not held:
                # our jobs were requeued: another worker may run them too (harmlessly: re-runs
                # are idempotent); renewing at a third of the TTL makes this rare
                log.warning("job lease had expired", extra={"worker_id": self.worker_id})

    async def _reap_periodically(self) -> None:
        while not self._stopping.is_set():
            try:
                moved = await self._jobs.requeue_expired()
            except (RedisError, OSError) as exc:
                log.warning("job queue unreachable", extra={"error": str(exc)})
                moved = 0
            if moved:
                log.info("requeued jobs of expired workers", extra={"jobs": moved})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._lease_ttl_s / 2)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                # Redis answers a 1 s BLMOVE within 1 s; a claim still waiting long after that
                # hangs on a dead connection and would keep stop() from ever returning (seen
                # once in CI): give up on it (TimeoutError is an OSError) and claim afresh
                job_id = await asyncio.wait_for(
                    self._jobs.claim(self.worker_id, wait_s=1), timeout=1 + CLAIM_GRACE_S
                )
            except (RedisError, OSError) as exc:
                log.warning("job queue unreachable", extra={"error": str(exc)})
                await asyncio.sleep(self._retry_delay_s)
                continue
            if job_id is None:
                continue
            try:
                await self.run_job(job_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # a bug in one job must not stop the worker: fail the job, keep serving the queue
                log.exception("job crashed", extra={"job_id": job_id})
                await self._finish(job_id, "failed", error=f"internal error: {exc}")

    async def run_job(self, job_id: str) -> None:
        try:
            job = await self._jobs.get(job_id)
        except JobNotFound:
            await self._finish(job_id, "failed", error="job record expired")
            return
        attempts = int(job.get("attempts", 0))
        if attempts >= self._max_attempts:
            # started that often without ending: it kills its worker (e.g. out of memory)
            await self._finish(
                job_id, "failed", error=f"gave up after {attempts} interrupted attempts"
            )
            return
        await self._jobs.start_attempt(job_id)
        documents, uploads = await self._jobs.documents(job_id), await self._jobs.uploads(job_id)
        try:
            parsed, failures = await self._parse_uploads(job_id, uploads)
            outcomes = await self._pipeline.ingest(
                job["collection"],
                [*documents, *parsed],
                on_document=lambda outcome: self._jobs.record(job_id, outcome),
            )
        except (DocqaError, RedisError, OSError) as exc:
            await self._after_failure(job_id, attempts + 1, exc)
            return
        await self._finish(job_id, final_state([*failures, *outcomes]))

    async def _parse_uploads(
        self, job_id: str, uploads: Sequence[PendingUpload]
    ) -> tuple[list[SourceDocument], list[DocumentOutcome]]:
        """Parse each upload in its own child process (awaited: the lease keeps being renewed);
        one that cannot be parsed fails that document only."""
        parsed: list[SourceDocument] = []
        failures: list[DocumentOutcome] = []
        metrics = self._pipeline.metrics
        for upload in uploads:
            try:
                with timed(metrics, "parse"):
                    parsed.extend(await self._parse(upload))
            except InvalidRequest as exc:
                failure = DocumentOutcome(upload.doc_id, "failed", error=exc.message)
                failures.append(failure)
                metrics.count_document("failed", failed_at="parse")
                await self._jobs.record(job_id, failure)
        return parsed, failures

    async def _finish(self, job_id: str, state: JobState, *, error: str | None = None) -> None:
        await self._jobs.finish(job_id, state, worker_id=self.worker_id, error=error)

    async def _after_failure(self, job_id: str, attempts: int, exc: Exception) -> None:
        message = getattr(exc, "message", None) or str(exc)
        if isinstance(exc, DocqaError) and exc.http_status < 500:
            await self._finish(job_id, "failed", error=message)
        elif attempts >= self._max_attempts:
            await self._finish(
                job_id, "failed", error=f"gave up after {attempts} attempts: {message}"
            )
        else:
            log.warning("job will be retried", extra={"job_id": job_id, "error": message})
            await asyncio.sleep(self._retry_delay_s)
            await self._jobs.retry_later(job_id, message, worker_id=self.worker_id)


async def _default_parser(upload: PendingUpload) -> list[SourceDocument]:
    return await parse_upload(upload, ParseLimits())


def new_worker_id() -> str:
    """Host (the pod name on Kubernetes), pid and a random part: unique even across restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def final_state(outcomes: Sequence[DocumentOutcome]) -> JobState:
    failed = sum(1 for o in outcomes if o.outcome == "failed")
    if failed == 0:
        return "succeeded"
    return "failed" if failed == len(outcomes) else "partial"


def _document_from_dict(data: dict[str, Any]) -> SourceDocument:
    page_starts = data.get("page_starts")
    return SourceDocument(**{**data, "page_starts": tuple(page_starts) if page_starts else None})


def _encode(mapping: dict[str, Any]) -> dict[Any, Any]:
    """JSON per field, so numbers, lists and strings all come back as they went in."""
    return {k: json.dumps(v, ensure_ascii=False) for k, v in mapping.items()}


def _decode(raw: dict[Any, Any]) -> dict[str, Any]:
    return {redis_text(k): json.loads(redis_text(v)) for k, v in raw.items()}
