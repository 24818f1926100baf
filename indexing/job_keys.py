"""The Redis key names of the ingestion job queue: today's, under one Redis Cluster hash tag, and
those of releases before the tag, which are only read to adopt what they left behind.

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

Old names. Releases before the hash tag used ``docqa:jobs:queue``,
``docqa:jobs:processing[:<w>]``, ``docqa:jobs:lease:<w>``, ``docqa:jobs:workers`` and
``docqa:job:<id>[:documents]``; they could not run on a Redis Cluster, so those names only exist
on a single Redis (how they are adopted: ``indexing.job_leases``).
"""

from __future__ import annotations

from typing import Any


class JobKeys:
    """Every key name of the job queue under one prefix."""

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"key prefix {prefix!r} must not contain braces (hash tags)")
        self._prefix = prefix
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


def redis_text(value: Any) -> str:
    """A job id, worker id or hash field as Redis returns it (bytes, or str when the client
    decodes responses)."""
    return value.decode() if isinstance(value, bytes) else str(value)
