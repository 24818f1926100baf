"""Ingestion jobs in Redis: a queue, a state machine, progress counts and per-document errors.

Every worker (one per indexing-api replica) holds a *lease*: a Redis key with a TTL that it
renews while it runs, and its own processing list. A job is claimed by moving its id from the
queue to the worker's processing list in one atomic ``BLMOVE``. A worker that dies stops renewing;
once its lease expires, any replica's periodic reaper moves the jobs of that worker's processing
list back to the front of the queue (a Lua script checks the lease and moves them atomically), and
another worker finishes them. Live workers' jobs are never touched, so replicas can run side by
side. Re-running a job is safe: unchanged documents are skipped and chunk ids are stable, so
nothing is duplicated.

Key names. Every job-queue key carries the Redis Cluster hash tag ``{jobs}`` after the prefix:
``docqa:{jobs}:queue``, ``:workers``, ``:processing:<worker>``, ``:lease:<worker>``,
``:job:<id>`` and ``:job:<id>:documents``. On a Redis Cluster every key of one Lua script, one
MULTI transaction or one ``BLMOVE``/``LMOVE`` must hash to the same slot, and here they are used
together in every combination (a job's record and payload are written in the transaction that
pushes it on the queue; finishing one touches its record, payload and a processing list; the
scripts take a lease, a processing list, the queue and the workers set), so all of them share
one tag. The cost: the whole job queue lives in one slot, on one shard. That is fine: it is small
metadata (ids, a hash per job, payloads that are deleted when a job ends), and the vector data is
in Milvus. Keys still start with the prefix (ACL key patterns such as ``~docqa:*`` keep working).

Upgrades. Releases before the hash tag used ``docqa:jobs:queue``, ``docqa:jobs:processing[:<w>]``,
``docqa:jobs:lease:<w>``, ``docqa:jobs:workers`` and ``docqa:job:<id>[:documents]``; they could
not run on a Redis Cluster, so those names only exist on a single Redis. The reaper, which runs
when a worker starts and then periodically, adopts them: jobs on the old queue, in the old shared
processing list or in the processing list of an old worker whose lease expired move to the front
of the queue with their record and payload renamed, in one Lua script per list (atomic, so
replicas starting together cannot move a job twice). It keeps doing so while a rolling upgrade
still has old pods writing the old names; once none exist it costs three single-key reads per
reap. Records of jobs that old workers finished (or still run) keep their old name until they
expire; ``get`` falls back to it, so ``GET /v1/jobs/{id}`` still answers for them.
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
from collections.abc import Sequence
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from docqa_core.errors import DocqaError, JobNotFound
from indexing.pipeline import DocumentOutcome, IngestionPipeline, SourceDocument

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed", "partial"]
FINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "partial"})
MAX_ERRORS_KEPT = 200


# KEYS: lease, workers set. ARGV: worker id, TTL in ms. Returns 1 if the lease was still held.
_RENEW_LEASE = """
local held = redis.call('GET', KEYS[1]) == ARGV[1]
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
if held then return 1 else return 0 end
"""

# KEYS: lease, processing list, queue, workers set. ARGV: worker id. Returns the jobs moved.
_REQUEUE_IF_EXPIRED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local moved = 0
while redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT') do moved = moved + 1 end
redis.call('SREM', KEYS[4], ARGV[1])
return moved
"""

# Jobs left under the key names of releases before the hash tag; only ever run on a single Redis
# (see the module docstring), as job records are renamed by names built here, not passed in KEYS.
# KEYS: an old-name list, the queue[, the old worker's lease, the old workers set].
# ARGV: old job-key prefix, new job-key prefix[, worker id]. With a lease, nothing moves while it
# is held. Every job id goes to the front of the queue (order kept) with its record and payload
# renamed, unless the new name exists already. Returns the jobs moved.
_ADOPT_LEGACY_JOBS = """
if #KEYS == 4 and redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local moved = 0
while true do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not id then break end
  for _, suffix in ipairs({'', ':documents'}) do
    local old, new = ARGV[1] .. id .. suffix, ARGV[2] .. id .. suffix
    if redis.call('EXISTS', old) == 1 and redis.call('EXISTS', new) == 0 then
      redis.call('RENAME', old, new)
    end
  end
  moved = moved + 1
end
if #KEYS == 4 then redis.call('SREM', KEYS[4], ARGV[3]) end
return moved
"""


class JobStore:
    def __init__(self, redis: Redis, prefix: str, *, ttl_s: int = 7 * 24 * 3600) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"key prefix {prefix!r} must not contain braces (hash tags)")
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_s
        self._keys = f"{prefix}:{{jobs}}"  # the hash tag: see the module docstring

    def _job_key(self, job_id: str) -> str:
        return f"{self._keys}:job:{job_id}"

    def _payload_key(self, job_id: str) -> str:
        return f"{self._job_key(job_id)}:documents"

    @property
    def queue_key(self) -> str:
        return f"{self._keys}:queue"

    @property
    def workers_key(self) -> str:
        """The set of worker ids that may hold jobs (live, or dead and not yet reaped)."""
        return f"{self._keys}:workers"

    def processing_key(self, worker_id: str) -> str:
        return f"{self._keys}:processing:{worker_id}"

    def lease_key(self, worker_id: str) -> str:
        return f"{self._keys}:lease:{worker_id}"

    # Key names of releases before the hash tag, only read to adopt what they left behind.

    def legacy_job_key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}"

    @property
    def legacy_queue_key(self) -> str:
        return f"{self._prefix}:jobs:queue"

    @property
    def legacy_workers_key(self) -> str:
        return f"{self._prefix}:jobs:workers"

    @property
    def legacy_processing_key(self) -> str:
        """The one shared processing list of releases before leases; drained by the reaper."""
        return f"{self._prefix}:jobs:processing"

    def legacy_worker_processing_key(self, worker_id: str) -> str:
        return f"{self._prefix}:jobs:processing:{worker_id}"

    def legacy_lease_key(self, worker_id: str) -> str:
        return f"{self._prefix}:jobs:lease:{worker_id}"

    async def create(self, collection: str, documents: Sequence[SourceDocument]) -> str:
        job_id = uuid.uuid4().hex
        record = {
            "job_id": job_id,
            "collection": collection,
            "state": "queued",
            "created_at": time.time(),
            "total": len(documents),
            "attempts": 0,
        }
        payload = json.dumps([dataclasses.asdict(d) for d in documents], ensure_ascii=False)
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
            raise JobNotFound(f"job {job_id!r} does not exist (or has expired)")
        return _decode(raw)

    async def documents(self, job_id: str) -> list[SourceDocument]:
        payload = await self._redis.get(self._payload_key(job_id))
        if payload is None:
            return []
        return [_document_from_dict(d) for d in json.loads(payload)]

    async def claim(self, worker_id: str, wait_s: int) -> str | None:
        job_id = await self._redis.blmove(
            self.queue_key, self.processing_key(worker_id), wait_s, "LEFT", "RIGHT"
        )
        return _text(job_id) if job_id is not None else None

    async def renew_lease(self, worker_id: str, ttl_s: float) -> bool:
        """Take or extend the worker's lease; False if it was not held (first call, or lost)."""
        held = await self._redis.eval(
            _RENEW_LEASE,
            2,
            self.lease_key(worker_id),
            self.workers_key,
            worker_id,
            str(max(1, int(ttl_s * 1000))),
        )
        return bool(held)

    async def requeue_expired(self) -> int:
        """Jobs of workers whose lease expired go back to the front of the queue. Safe to run
        from every replica at once: each worker's check-and-move is one atomic script."""
        moved = 0
        for raw in await self._redis.smembers(self.workers_key):
            worker_id = _text(raw)
            moved += int(
                await self._redis.eval(
                    _REQUEUE_IF_EXPIRED,
                    4,
                    self.lease_key(worker_id),
                    self.processing_key(worker_id),
                    self.queue_key,
                    self.workers_key,
                    worker_id,
                )
            )
        return moved + await self.adopt_legacy_jobs()

    async def adopt_legacy_jobs(self) -> int:
        """Jobs left under the old key names (see the module docstring) join the queue, with
        their records and payloads renamed. Idempotent and safe from every replica at once: each
        list moves in one atomic script. Only single-key commands run unless old keys exist, so
        this is harmless on a Redis Cluster, where they never do."""
        old_job, new_job = self.legacy_job_key(""), self._job_key("")
        moved = 0
        for raw in await self._redis.smembers(self.legacy_workers_key):
            worker_id = _text(raw)
            keys = (
                self.legacy_worker_processing_key(worker_id),
                self.queue_key,
                self.legacy_lease_key(worker_id),
                self.legacy_workers_key,
            )
            moved += int(
                await self._redis.eval(_ADOPT_LEGACY_JOBS, 4, *keys, old_job, new_job, worker_id)
            )
        for old_list in (self.legacy_queue_key, self.legacy_processing_key):
            if await self._redis.exists(old_list):
                moved += int(
                    await self._redis.eval(
                        _ADOPT_LEGACY_JOBS, 2, old_list, self.queue_key, old_job, new_job
                    )
                )
        if moved:
            log.info("adopted jobs left under old key names", extra={"jobs": moved})
        return moved

    async def release(self, worker_id: str) -> int:
        """A worker that stops: jobs it cut short go back to the queue now (not after its lease
        expires), and the lease and registration are dropped."""
        moved = 0
        while await self._redis.lmove(
            self.processing_key(worker_id), self.queue_key, "RIGHT", "LEFT"
        ):
            moved += 1
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.lease_key(worker_id))
            pipe.srem(self.workers_key, worker_id)
            await pipe.execute()
        return moved

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
    ) -> None:
        self._jobs = jobs
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
                job_id = await self._jobs.claim(self.worker_id, wait_s=1)
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
        documents = await self._jobs.documents(job_id)
        try:
            outcomes = await self._pipeline.ingest(
                job["collection"],
                documents,
                on_document=lambda outcome: self._jobs.record(job_id, outcome),
            )
        except (DocqaError, RedisError, OSError) as exc:
            await self._after_failure(job_id, attempts + 1, exc)
            return
        await self._finish(job_id, final_state(outcomes))

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
    return {_text(k): json.loads(_text(v)) for k, v in raw.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
