"""Which worker holds which job: worker leases, the reaper that requeues the jobs of dead workers,
and the adoption of jobs left under the key names of earlier releases.

Every worker (one per indexing-api replica) holds a *lease*: a Redis key with a TTL that it
renews while it runs, and its own processing list. A job is claimed by moving its id from the
queue to the worker's processing list in one atomic ``BLMOVE``. A worker that dies stops renewing;
once its lease expires, any replica's periodic reaper moves the jobs of that worker's processing
list back to the front of the queue (a Lua script checks the lease and moves them atomically), and
another worker finishes them. Live workers' jobs are never touched, so replicas can run side by
side. Re-running a job is safe: unchanged documents are skipped and chunk ids are stable, so
nothing is duplicated.

Upgrades. Releases before the hash tag used other key names (``indexing.job_keys``); they could
not run on a Redis Cluster, so those names only exist on a single Redis. The reaper, which runs
when a worker starts and then periodically, adopts them: jobs on the old queue, in the old shared
processing list or in the processing list of an old worker whose lease expired move to the front
of the queue with their record and payload renamed, in one Lua script per list (atomic, so
replicas starting together cannot move a job twice). It keeps doing so while a rolling upgrade
still has old pods writing the old names; once none exist it costs three single-key reads per
reap. Records of jobs that old workers finished (or still run) keep their old name until they
expire; ``JobStore.get`` falls back to it, so ``GET /v1/jobs/{id}`` still answers for them.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from indexing.job_keys import JobKeys, redis_text

log = logging.getLogger(__name__)


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


class JobLeases(JobKeys):
    """The lease side of the job queue in Redis; ``indexing.jobs.JobStore`` builds on it."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        super().__init__(prefix)
        self._redis = redis

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
            worker_id = redis_text(raw)
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
            worker_id = redis_text(raw)
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
