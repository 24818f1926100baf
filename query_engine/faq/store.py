"""``FaqStore``: the FAQ as the rest of the code sees it, one per process (built in the query
service's lifespan). It checks the admin calls' arguments and hands each call to the piece
that does it: matching to :class:`~query_engine.faq.matcher.FaqMatcher`, puts to
:class:`~query_engine.faq.writes.FaqWriter`, reads and deletes to
:class:`~query_engine.faq.storage.FaqEntryStorage`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from docqa_core.errors import InvalidRequest
from indexing.embedding import Embedder, Vectors
from indexing.schema import validate_collection_name
from query_engine.faq.matcher import FaqMatcher
from query_engine.faq.model import FaqConfig, FaqEntry, FaqEntryIn, FaqMatch, FaqPage, PutResult
from query_engine.faq.storage import FaqEntryStorage, redis_as_dependency
from query_engine.faq.validation import validate_id
from query_engine.faq.writes import FaqWriter
from query_engine.versions import VersionWatcher


class FaqStore:
    """The FAQ of every collection. One per process; built in the query service's lifespan."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        config: FaqConfig,
        embedder: Embedder,
        versions: VersionWatcher | None = None,
    ) -> None:
        self._config = config
        self._storage = FaqEntryStorage(
            redis, prefix=prefix, config=config, embedder=embedder, versions=versions
        )
        self._matcher = FaqMatcher(self._storage, config=config, embedder=embedder)
        self._writer = FaqWriter(
            self._storage, config=config, embedder=embedder, load=self._matcher.load
        )

    @property
    def config(self) -> FaqConfig:
        return self._config

    def entries_key(self, collection: str) -> str:
        return self._storage.entries_key(collection)

    def version_key(self, collection: str) -> str:
        return self._storage.version_key(collection)

    # -- matching (every question) -------------------------------------------------------------

    async def match(
        self, collection: str, question: str, question_vector: Vectors | None = None
    ) -> FaqMatch | None:
        """The entry that answers ``question``, or None; see :meth:`FaqMatcher.match`."""
        return await self._matcher.match(collection, question, question_vector)

    async def lookup(self, collection: str, question: str) -> dict[str, Any] | None:
        """:meth:`match` as the plain dict the answerer's ``FaqLookup`` seam expects."""
        found = await self.match(collection, question)
        return found.as_dict() if found is not None else None

    # -- administration ------------------------------------------------------------------------

    async def put(self, collection: str, entries: Sequence[FaqEntryIn]) -> PutResult:
        """Add or replace entries (by id). Re-putting an unchanged entry changes nothing."""
        validate_collection_name(collection)
        return await self._writer.put(collection, entries)

    async def list_entries(self, collection: str, *, limit: int = 100, offset: int = 0) -> FaqPage:
        validate_collection_name(collection)
        if limit < 1 or offset < 0:
            raise InvalidRequest("limit must be at least 1 and offset at least 0")
        with redis_as_dependency("the FAQ store"):
            snapshot = await self._matcher.snapshot(collection)
        ordered = sorted(
            (s.entry for s in snapshot.stored.values()), key=lambda e: (e.created_at, e.id)
        )
        return FaqPage(total=len(ordered), entries=ordered[offset : offset + limit])

    async def get(self, collection: str, entry_id: str) -> FaqEntry:
        validate_collection_name(collection)
        validate_id(entry_id)
        return await self._storage.get(collection, entry_id)

    async def delete(self, collection: str, entry_id: str) -> None:
        validate_collection_name(collection)
        validate_id(entry_id)
        await self._storage.delete(collection, entry_id)

    async def delete_all(self, collection: str) -> int:
        """Remove every entry of ``collection``; returns how many there were."""
        validate_collection_name(collection)
        count = await self._storage.delete_all(collection)
        self._matcher.forget(collection)
        return count
