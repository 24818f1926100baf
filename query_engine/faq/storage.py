"""The FAQ's entries in Redis: one hash per collection (``{prefix}:faq:{collection}``: entry
id → JSON record) and its version counter (``{prefix}:faq_version:{collection}``), which every
write increments and announces. Key names come from :mod:`docqa_core.redis_keys`.

Only reading and writing lives here; what to write is decided in ``writes.py`` and what is
kept in process in ``matcher.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from docqa_core.errors import DependencyUnavailable
from docqa_core.redis_keys import faq_entries_key, faq_version_key
from indexing.embedding import Embedder
from indexing.index_version import drop_faq, queue_bump
from query_engine.cache import REDIS_ERRORS
from query_engine.faq.model import FaqConfig, FaqEntry, FaqEntryNotFound
from query_engine.faq.records import StoredEntry
from query_engine.faq.snapshot import FaqSnapshot
from query_engine.versions import VersionWatcher


class FaqEntryStorage:
    """Reads and writes one process's view of every collection's FAQ in Redis.

    The embedder is only asked for its dimension: a stored vector of another size is dropped
    (the entry then matches exactly only)."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        config: FaqConfig,
        embedder: Embedder,
        versions: VersionWatcher | None = None,
    ) -> None:
        self._redis = redis
        self._versions = versions
        self._prefix = prefix
        self._config = config
        self._embedder = embedder

    def entries_key(self, collection: str) -> str:
        return faq_entries_key(self._prefix, collection)

    def version_key(self, collection: str) -> str:
        return faq_version_key(self._prefix, collection)

    # -- reading -------------------------------------------------------------------------------

    async def current_version(self, collection: str) -> int:
        """From this replica's trusted copy when it has one (no round trip on the hot path)."""
        key = self.version_key(collection)

        async def read() -> int:
            raw = await self._redis.get(key)
            return int(raw) if raw is not None else 0

        if self._versions is None:
            return await read()
        return await self._versions.read_through(key, read)

    async def load(self, collection: str) -> FaqSnapshot:
        """Every entry of ``collection`` and the version they are of, read in one MULTI."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self.version_key(collection))
            pipe.hgetall(self.entries_key(collection))
            raw_version, raw_entries = await pipe.execute()
        version = int(raw_version) if raw_version is not None else 0
        # ~0.1 s of parsing for a few thousand entries: off the event loop
        return await asyncio.to_thread(self._build, version, list(raw_entries.values()))

    async def get(self, collection: str, entry_id: str) -> FaqEntry:
        with redis_as_dependency("the FAQ store"):
            raw = await self._redis.hget(self.entries_key(collection), entry_id)
        if raw is None:
            raise _not_found(collection, entry_id)
        return self._parse(raw).entry

    def _build(self, version: int, raw_entries: list[bytes]) -> FaqSnapshot:
        stored = [self._parse(raw) for raw in raw_entries]
        return FaqSnapshot.build(version, stored, self._embedder.dim)

    def _parse(self, raw: bytes | str) -> StoredEntry:
        return StoredEntry.from_json(raw, model=self._config.model, dim=self._embedder.dim)

    # -- writing -------------------------------------------------------------------------------

    async def commit(self, collection: str, version: int, records: dict[Any, str]) -> None:
        """Write ``records`` (entry id → JSON) if the FAQ is still at ``version``; raises
        ``WatchError`` when another replica wrote meanwhile."""
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.watch(self.version_key(collection))
            raw_version = await pipe.get(self.version_key(collection))
            if (int(raw_version) if raw_version is not None else 0) != version:
                raise WatchError("the FAQ changed since it was read")
            pipe.multi()
            pipe.hset(self.entries_key(collection), mapping=records)
            queue_bump(pipe, self._prefix, self.version_key(collection))
            await pipe.execute()

    async def delete(self, collection: str, entry_id: str) -> None:
        with redis_as_dependency("the FAQ store"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self.entries_key(collection), entry_id)
                queue_bump(pipe, self._prefix, self.version_key(collection))
                removed, _, _ = await pipe.execute()
        if not removed:
            raise _not_found(collection, entry_id)

    async def delete_all(self, collection: str) -> int:
        """Remove every entry of ``collection``; returns how many there were."""
        with redis_as_dependency("the FAQ store"):
            return await drop_faq(self._redis, self._prefix, collection)


@contextlib.contextmanager
def redis_as_dependency(what: str) -> Iterator[None]:
    """Turn a Redis failure in an admin call into a 503 that names Redis."""
    try:
        yield
    except WatchError:
        raise  # not a failure: the optimistic write is retried
    except REDIS_ERRORS as exc:
        raise DependencyUnavailable(
            "redis", f"{what} is unavailable: Redis cannot be reached"
        ) from exc


def _not_found(collection: str, entry_id: str) -> FaqEntryNotFound:
    return FaqEntryNotFound(
        f"no FAQ entry {entry_id!r} in collection {collection!r}",
        detail={"collection": collection, "id": entry_id},
    )
