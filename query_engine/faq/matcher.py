"""Matching a question against a collection's FAQ, on every question, without reading the
entries from Redis each time.

The process keeps one :class:`~query_engine.faq.snapshot.FaqSnapshot` per collection (least
recently used dropped) and reuses it while the collection's version counter is unchanged: one
``GET`` per question, or none while this replica holds a trusted copy of the counter
(``query_engine.versions``). A question matches an entry when its normalized form is the same,
or else when its embedding is at least ``similarity_threshold`` close and both name the same
numbers.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from indexing.embedding import Embedder, Vectors
from query_engine.cache import REDIS_ERRORS, SingleFlight, normalize_question, warn_throttled
from query_engine.faq.model import FaqConfig, FaqEntry, FaqMatch, MatchKind
from query_engine.faq.snapshot import FaqSnapshot
from query_engine.faq.storage import FaqEntryStorage

log = logging.getLogger(__name__)


class FaqMatcher:
    """The in-process side of the FAQ: cached snapshots per collection, and matching."""

    def __init__(self, storage: FaqEntryStorage, *, config: FaqConfig, embedder: Embedder) -> None:
        self._storage = storage
        self._config = config
        self._embedder = embedder
        self._snapshots: OrderedDict[str, FaqSnapshot] = OrderedDict()
        self._loads = SingleFlight[FaqSnapshot]()

    async def match(
        self, collection: str, question: str, question_vector: Vectors | None = None
    ) -> FaqMatch | None:
        """The entry that answers ``question``, or None. Never raises for Redis trouble.

        Without ``question_vector`` the question is embedded only when the collection has
        entries and none matches exactly; give the store the embedder retrieval uses (the
        cached one), so that on a miss retrieval finds the vector already made."""
        if not self._config.enabled:
            return None
        try:
            snapshot = await self.snapshot(collection)
        except REDIS_ERRORS as exc:
            warn_throttled("FAQ lookup skipped", exc, log)
            return None
        if not snapshot.stored:
            return None
        normalized = normalize_question(question)
        exact_id = snapshot.by_normalized.get(normalized)
        if exact_id is not None:
            return _match_of(snapshot.stored[exact_id].entry, 1.0, "exact")
        if not snapshot.vector_ids:
            return None
        if question_vector is None:
            question_vector = await self._embedder.embed_query(question)
        found = snapshot.best_similar(
            question_vector, self._config.similarity_threshold, normalized
        )
        if found is None:
            return None
        entry_id, score = found
        return _match_of(snapshot.stored[entry_id].entry, score, "similar")

    async def snapshot(self, collection: str) -> FaqSnapshot:
        """The cached snapshot if the FAQ's version still matches, else a fresh one."""
        version = await self._storage.current_version(collection)
        cached = self._snapshots.get(collection)
        if cached is not None and cached.version == version:
            self._snapshots.move_to_end(collection)
            return cached
        # concurrent questions after a change share one load
        return await self._loads.do(collection, lambda: self.load(collection))

    async def load(self, collection: str) -> FaqSnapshot:
        """A fresh snapshot from Redis, kept for the questions that follow."""
        snapshot = await self._storage.load(collection)
        self._remember(collection, snapshot)
        return snapshot

    def forget(self, collection: str) -> None:
        self._snapshots.pop(collection, None)

    def _remember(self, collection: str, snapshot: FaqSnapshot) -> None:
        self._snapshots[collection] = snapshot
        self._snapshots.move_to_end(collection)
        while len(self._snapshots) > self._config.cached_collections:
            self._snapshots.popitem(last=False)


def _match_of(entry: FaqEntry, score: float, kind: MatchKind) -> FaqMatch:
    return FaqMatch(
        id=entry.id,
        question=entry.question,
        answer=entry.answer,
        score=score,
        match=kind,
        metadata=entry.metadata,
    )
