"""Adding and replacing entries: validate, compare with what is stored, embed what is new,
and write under a ``WATCH`` on the version counter, so that the collection's limit and the
duplicate checks hold across replicas too. A write that lost a race is planned again against
the winner's result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import WatchError

from docqa_core.errors import Conflict
from indexing.embedding import Embedder, Vectors
from query_engine.cache import normalize_question
from query_engine.faq.model import FaqConfig, FaqEntry, FaqEntryIn, PutResult
from query_engine.faq.records import StoredEntry, unit_vector
from query_engine.faq.snapshot import FaqSnapshot
from query_engine.faq.storage import FaqEntryStorage, redis_as_dependency
from query_engine.faq.validation import validated_entries

_WRITE_ATTEMPTS = 5

# (id, entry) pairs, in the order of the request
Incoming = list[tuple[str, FaqEntryIn]]


class FaqWriter:
    """Puts entries; ``load`` reads a collection's current snapshot (and keeps it cached)."""

    def __init__(
        self,
        storage: FaqEntryStorage,
        *,
        config: FaqConfig,
        embedder: Embedder,
        load: Callable[[str], Awaitable[FaqSnapshot]],
    ) -> None:
        self._storage = storage
        self._config = config
        self._embedder = embedder
        self._load = load

    async def put(self, collection: str, entries: Sequence[FaqEntryIn]) -> PutResult:
        """Add or replace entries (by id). Re-putting an unchanged entry changes nothing."""
        incoming = validated_entries(entries, self._config)
        vectors: dict[str, Vectors] = {}  # question → vector, kept across retries
        for _ in range(_WRITE_ATTEMPTS):
            with redis_as_dependency("the FAQ store"):
                snapshot = await self._load(collection)
            changes = self._plan(snapshot, incoming)
            await self._embed_missing(changes, snapshot, vectors)
            try:
                with redis_as_dependency("the FAQ store"):
                    await self._commit(collection, changes, snapshot, vectors)
            except WatchError:
                continue  # another replica wrote meanwhile: check again against its result
            return _put_result(incoming, snapshot, changes)
        raise Conflict("the FAQ of this collection is being changed concurrently; try again")

    def _plan(self, snapshot: FaqSnapshot, incoming: Incoming) -> Incoming:
        """The entries that differ from what is stored, after the checks that need the store."""
        changes = [(i, e) for i, e in incoming if not _same_entry(snapshot.stored.get(i), e)]
        new_ids = {i for i, _ in changes if i not in snapshot.stored}
        total = len(snapshot.stored) + len(new_ids)
        if total > self._config.max_entries_per_collection:
            raise Conflict(
                f"the collection would hold {total} FAQ entries; the limit is "
                f"{self._config.max_entries_per_collection}",
                detail={"existing": len(snapshot.stored), "new": len(new_ids)},
            )
        rewritten = {i for i, _ in incoming}  # an owner rewritten here gives its question up
        for entry_id, entry in changes:
            owner = snapshot.by_normalized.get(normalize_question(entry.question))
            if owner is not None and owner != entry_id and owner not in rewritten:
                raise Conflict(
                    f"the question of entry {entry_id!r} is already the question of entry "
                    f"{owner!r}",
                    detail={"id": entry_id, "existing_id": owner},
                )
        return changes

    async def _embed_missing(
        self, changes: Incoming, snapshot: FaqSnapshot, vectors: dict[str, Vectors]
    ) -> None:
        for entry_id, entry in changes:
            if entry.question in vectors:
                continue
            current = snapshot.stored.get(entry_id)
            if (
                current is not None
                and current.vector is not None
                and (current.entry.question == entry.question)
            ):
                vectors[entry.question] = current.vector  # only the answer changed
                continue
            vectors[entry.question] = unit_vector(await self._embedder.embed_query(entry.question))

    async def _commit(
        self,
        collection: str,
        changes: Incoming,
        snapshot: FaqSnapshot,
        vectors: dict[str, Vectors],
    ) -> None:
        if not changes:
            return
        now = _now()
        records: dict[Any, str] = {}  # redis-py types hash fields as a union it will not widen
        for entry_id, entry in changes:
            current = snapshot.stored.get(entry_id)
            created = current.entry.created_at if current is not None else now
            stored = StoredEntry(
                FaqEntry(
                    id=entry_id,
                    question=entry.question,
                    answer=entry.answer,
                    normalized=normalize_question(entry.question),
                    created_at=created,
                    updated_at=now,
                    metadata=dict(entry.metadata),
                ),
                vectors[entry.question],
                self._config.model,
            )
            records[entry_id] = stored.to_json()
        await self._storage.commit(collection, snapshot.version, records)


def _same_entry(current: StoredEntry | None, entry: FaqEntryIn) -> bool:
    return (
        current is not None
        and current.vector is not None
        and current.entry.question == entry.question
        and current.entry.answer == entry.answer
        and dict(current.entry.metadata) == dict(entry.metadata)
    )


def _put_result(incoming: Incoming, snapshot: FaqSnapshot, changes: Incoming) -> PutResult:
    changed = {i for i, _ in changes}
    created = sum(1 for i in changed if i not in snapshot.stored)
    return PutResult(
        ids=[i for i, _ in incoming],
        created=created,
        updated=len(changed) - created,
        unchanged=len(incoming) - len(changed),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
