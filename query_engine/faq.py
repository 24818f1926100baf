"""The FAQ: curated question → answer entries per collection, checked before retrieval.

Entries live in Redis, one hash per collection (``{prefix}:faq:{collection}``: entry id → JSON
with the question, the answer, the question's normalized form and its e5 *query* embedding), so
every replica sees the same list. A question matches an entry when its normalized form is the
same (NFKC, case-folded, single spaces, no trailing ``?``/``？``/``.``), or else when its embedding
is at least ``similarity_threshold`` close to the entry's question and both name the same numbers.

Matching runs on every question, so it never reads the entries from Redis per question: each
process keeps a snapshot per collection (a dict of normalized questions and one numpy matrix of
unit vectors) and compares it with a version counter (``{prefix}:faq_version:{collection}``,
incremented by every write on any replica): one ``GET``, or none while this replica holds a
trusted copy of the counter (``query_engine.versions``; every write announces its bump). Writes
go through a
``WATCH`` on that counter, so limits and duplicate checks hold across replicas too.

Redis is not needed to answer questions: when it is down :meth:`FaqStore.match` logs and returns
None, and the question goes to retrieval. The admin calls raise ``DependencyUnavailable``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import WatchError

from docqa_core.errors import (
    Conflict,
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
)
from docqa_core.redis_keys import faq_entries_key, faq_version_key
from indexing.embedding import Embedder, Vectors
from indexing.index_version import drop_faq, queue_bump
from indexing.schema import validate_collection_name
from query_engine.cache import REDIS_ERRORS, SingleFlight, normalize_question, warn_throttled
from query_engine.versions import VersionWatcher

log = logging.getLogger(__name__)

MatchKind = Literal["exact", "similar"]

_ENTRY_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MAX_METADATA_CHARS = 4096
_WRITE_ATTEMPTS = 5


class FaqEntryNotFound(NotFound):
    code = "faq_entry_not_found"


@dataclass(frozen=True)
class FaqConfig:
    enabled: bool = True
    similarity_threshold: float = 0.97
    max_entries_per_collection: int = 5000
    max_entries_per_request: int = 500
    max_question_chars: int = 2000
    max_answer_chars: int = 8000
    model: str = "multilingual-e5-small"  # vectors of another model are not compared
    cached_collections: int = 256  # snapshots kept in process (least recently used dropped)


@dataclass(frozen=True)
class FaqEntryIn:
    """One entry as an admin sends it; ``id`` defaults to a hash of the normalized question."""

    question: str
    answer: str
    id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FaqEntry:
    id: str
    question: str
    answer: str
    normalized: str
    created_at: str
    updated_at: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """What the admin API shows: everything but the vector."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class FaqMatch:
    id: str
    question: str  # the curated question that matched, not the one asked
    answer: str
    score: float  # 1.0 for an exact match, else the cosine similarity
    match: MatchKind
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "score": round(self.score, 4),
            "match": self.match,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class FaqPage:
    total: int
    entries: list[FaqEntry]


@dataclass(frozen=True)
class PutResult:
    ids: list[str]  # in the order of the request
    created: int
    updated: int
    unchanged: int


def entry_id_for(normalized_question: str) -> str:
    """The default id: the same question always gets the same id, so a re-put is idempotent."""
    return hashlib.blake2b(
        normalized_question.encode(), digest_size=12, person=b"docqa-faq"
    ).hexdigest()


def numbers_in(text: str) -> tuple[str, ...]:
    """The numbers a question names: "3일 출장" and "5일 출장" embed almost alike, yet differ."""
    return tuple(sorted(n.replace(",", "") for n in _NUMBER.findall(text)))


@dataclass
class _Stored:
    """An entry with its vector, as kept in Redis."""

    entry: FaqEntry
    vector: Vectors | None  # None when embedded by another model: exact matches only
    model: str

    def to_json(self) -> str:
        record = {
            "id": self.entry.id,
            "question": self.entry.question,
            "answer": self.entry.answer,
            "normalized": self.entry.normalized,
            "created_at": self.entry.created_at,
            "updated_at": self.entry.updated_at,
            "metadata": dict(self.entry.metadata),
            "model": self.model,
            # float32 bytes in base64: a quarter of the size of a JSON list, and exact
            "vector": _encode_vector(self.vector),
        }
        return json.dumps(record, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: bytes | str, *, model: str, dim: int) -> _Stored:
        record = json.loads(raw)
        entry = FaqEntry(
            id=record["id"],
            question=record["question"],
            answer=record["answer"],
            normalized=record.get("normalized") or normalize_question(record["question"]),
            created_at=record.get("created_at", ""),
            updated_at=record.get("updated_at", ""),
            metadata=record.get("metadata") or {},
        )
        vector = _decode_vector(record.get("vector"), dim)
        stored_model = str(record.get("model", ""))
        return cls(entry, vector if stored_model == model else None, stored_model)


def _encode_vector(vector: Vectors | None) -> str | None:
    if vector is None:
        return None
    return base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode()


def _decode_vector(encoded: str | None, dim: int) -> Vectors | None:
    if not encoded:
        return None
    vector = np.frombuffer(base64.b64decode(encoded), dtype=np.float32)
    return vector if vector.shape == (dim,) else None


def _unit(vector: Vectors) -> Vectors:
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


@dataclass
class _Snapshot:
    """One collection's entries as of one version, arranged for matching."""

    version: int
    stored: dict[str, _Stored]
    by_normalized: dict[str, str] = field(default_factory=dict)
    vector_ids: list[str] = field(default_factory=list)
    matrix: Vectors = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    numbers: list[tuple[str, ...]] = field(default_factory=list)

    @classmethod
    def build(cls, version: int, stored: Iterable[_Stored], dim: int) -> _Snapshot:
        # oldest first, so that if two ids ever share a question the newest one wins
        ordered = sorted(stored, key=lambda s: (s.entry.updated_at, s.entry.id))
        snapshot = cls(version=version, stored={s.entry.id: s for s in ordered})
        rows: list[Vectors] = []
        for item in ordered:
            normalized = normalize_question(item.entry.question)
            snapshot.by_normalized[normalized] = item.entry.id
            if item.vector is not None:
                snapshot.vector_ids.append(item.entry.id)
                snapshot.numbers.append(numbers_in(normalized))
                rows.append(item.vector)
        if rows:
            matrix = np.vstack(rows)
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            snapshot.matrix = matrix / np.maximum(norms, 1e-12)
        else:
            snapshot.matrix = np.zeros((0, dim), dtype=np.float32)
        return snapshot

    def best_similar(
        self, vector: Vectors, threshold: float, normalized: str
    ) -> tuple[str, float] | None:
        if not self.vector_ids:
            return None
        scores = self.matrix @ _unit(vector)
        candidates = np.flatnonzero(scores >= threshold)
        asked_numbers = numbers_in(normalized)
        for index in candidates[np.argsort(-scores[candidates])]:
            if self.numbers[index] == asked_numbers:
                return self.vector_ids[index], float(scores[index])
        return None


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
        self._redis = redis
        self._versions = versions
        self._prefix = prefix
        self._config = config
        self._embedder = embedder
        self._snapshots: OrderedDict[str, _Snapshot] = OrderedDict()
        self._loads = SingleFlight[_Snapshot]()

    @property
    def config(self) -> FaqConfig:
        return self._config

    def entries_key(self, collection: str) -> str:
        return faq_entries_key(self._prefix, collection)

    def version_key(self, collection: str) -> str:
        return faq_version_key(self._prefix, collection)

    # -- matching (every question) -------------------------------------------------------------

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
            snapshot = await self._snapshot(collection)
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

    async def lookup(self, collection: str, question: str) -> dict[str, Any] | None:
        """:meth:`match` as the plain dict the answerer's ``FaqLookup`` seam expects."""
        found = await self.match(collection, question)
        return found.as_dict() if found is not None else None

    # -- administration ------------------------------------------------------------------------

    async def put(self, collection: str, entries: Sequence[FaqEntryIn]) -> PutResult:
        """Add or replace entries (by id). Re-putting an unchanged entry changes nothing."""
        validate_collection_name(collection)
        incoming = self._validated(entries)
        vectors: dict[str, Vectors] = {}  # question → vector, kept across retries
        for _ in range(_WRITE_ATTEMPTS):
            with _redis_as_dependency("the FAQ store"):
                snapshot = await self._load(collection)
            changes = self._plan(snapshot, incoming)
            await self._embed_missing(changes, snapshot, vectors)
            try:
                with _redis_as_dependency("the FAQ store"):
                    await self._commit(collection, snapshot.version, changes, snapshot, vectors)
            except WatchError:
                continue  # another replica wrote meanwhile: check again against its result
            return _put_result(incoming, snapshot, changes)
        raise Conflict("the FAQ of this collection is being changed concurrently; try again")

    async def list_entries(self, collection: str, *, limit: int = 100, offset: int = 0) -> FaqPage:
        validate_collection_name(collection)
        if limit < 1 or offset < 0:
            raise InvalidRequest("limit must be at least 1 and offset at least 0")
        with _redis_as_dependency("the FAQ store"):
            snapshot = await self._snapshot(collection)
        ordered = sorted(
            (s.entry for s in snapshot.stored.values()), key=lambda e: (e.created_at, e.id)
        )
        return FaqPage(total=len(ordered), entries=ordered[offset : offset + limit])

    async def get(self, collection: str, entry_id: str) -> FaqEntry:
        validate_collection_name(collection)
        _validate_id(entry_id)
        with _redis_as_dependency("the FAQ store"):
            raw = await self._redis.hget(self.entries_key(collection), entry_id)
        if raw is None:
            raise _not_found(collection, entry_id)
        return self._parse(raw).entry

    async def delete(self, collection: str, entry_id: str) -> None:
        validate_collection_name(collection)
        _validate_id(entry_id)
        with _redis_as_dependency("the FAQ store"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self.entries_key(collection), entry_id)
                queue_bump(pipe, self._prefix, self.version_key(collection))
                removed, _, _ = await pipe.execute()
        if not removed:
            raise _not_found(collection, entry_id)

    async def delete_all(self, collection: str) -> int:
        """Remove every entry of ``collection``; returns how many there were."""
        validate_collection_name(collection)
        with _redis_as_dependency("the FAQ store"):
            count = await drop_faq(self._redis, self._prefix, collection)
        self._snapshots.pop(collection, None)
        return count

    # -- snapshots -----------------------------------------------------------------------------

    async def _snapshot(self, collection: str) -> _Snapshot:
        """The cached snapshot if the FAQ's version still matches, else a fresh one."""
        version = await self._current_version(collection)
        cached = self._snapshots.get(collection)
        if cached is not None and cached.version == version:
            self._snapshots.move_to_end(collection)
            return cached
        # concurrent questions after a change share one load
        return await self._loads.do(collection, lambda: self._load(collection))

    async def _current_version(self, collection: str) -> int:
        """From this replica's trusted copy when it has one (no round trip on the hot path)."""
        key = self.version_key(collection)

        async def read() -> int:
            raw = await self._redis.get(key)
            return int(raw) if raw is not None else 0

        if self._versions is None:
            return await read()
        return await self._versions.read_through(key, read)

    async def _load(self, collection: str) -> _Snapshot:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self.version_key(collection))
            pipe.hgetall(self.entries_key(collection))
            raw_version, raw_entries = await pipe.execute()
        version = int(raw_version) if raw_version is not None else 0
        # ~0.1 s of parsing for a few thousand entries: off the event loop
        snapshot = await asyncio.to_thread(self._build, version, list(raw_entries.values()))
        self._remember(collection, snapshot)
        return snapshot

    def _build(self, version: int, raw_entries: list[bytes]) -> _Snapshot:
        stored = [self._parse(raw) for raw in raw_entries]
        return _Snapshot.build(version, stored, self._embedder.dim)

    def _remember(self, collection: str, snapshot: _Snapshot) -> None:
        self._snapshots[collection] = snapshot
        self._snapshots.move_to_end(collection)
        while len(self._snapshots) > self._config.cached_collections:
            self._snapshots.popitem(last=False)

    def _parse(self, raw: bytes | str) -> _Stored:
        return _Stored.from_json(raw, model=self._config.model, dim=self._embedder.dim)

    # -- writing -------------------------------------------------------------------------------

    def _validated(self, entries: Sequence[FaqEntryIn]) -> list[tuple[str, FaqEntryIn]]:
        """(id, entry) pairs, after every check that needs no Redis."""
        limit = self._config.max_entries_per_request
        if not entries:
            raise InvalidRequest("entries must hold at least one entry")
        if len(entries) > limit:
            raise PayloadTooLarge(
                f"{len(entries)} entries in one request; the limit is {limit}",
                detail={"entries": len(entries), "limit": limit},
            )
        pairs = [self._checked(i, entry) for i, entry in enumerate(entries)]
        _refuse_duplicates(pairs)
        return pairs

    def _checked(self, index: int, entry: FaqEntryIn) -> tuple[str, FaqEntryIn]:
        question, answer = entry.question.strip(), entry.answer.strip()
        where = f"entries[{index}]"
        normalized = normalize_question(question)
        if not normalized:
            raise InvalidRequest(f"{where}.question must not be empty", detail={"index": index})
        if not answer:
            raise InvalidRequest(f"{where}.answer must not be empty", detail={"index": index})
        _check_length(where, "question", question, self._config.max_question_chars)
        _check_length(where, "answer", answer, self._config.max_answer_chars)
        metadata = dict(entry.metadata)
        if len(json.dumps(metadata, ensure_ascii=False, default=str)) > _MAX_METADATA_CHARS:
            raise InvalidRequest(
                f"{where}.metadata is larger than {_MAX_METADATA_CHARS} characters as JSON"
            )
        entry_id = entry.id if entry.id is not None else entry_id_for(normalized)
        _validate_id(entry_id)
        return entry_id, FaqEntryIn(
            question=question, answer=answer, id=entry_id, metadata=metadata
        )

    def _plan(
        self, snapshot: _Snapshot, incoming: list[tuple[str, FaqEntryIn]]
    ) -> list[tuple[str, FaqEntryIn]]:
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
        self,
        changes: list[tuple[str, FaqEntryIn]],
        snapshot: _Snapshot,
        vectors: dict[str, Vectors],
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
            vectors[entry.question] = _unit(await self._embedder.embed_query(entry.question))

    async def _commit(
        self,
        collection: str,
        version: int,
        changes: list[tuple[str, FaqEntryIn]],
        snapshot: _Snapshot,
        vectors: dict[str, Vectors],
    ) -> None:
        if not changes:
            return
        now = _now()
        records: dict[Any, str] = {}  # redis-py types hash fields as a union it will not widen
        for entry_id, entry in changes:
            current = snapshot.stored.get(entry_id)
            created = current.entry.created_at if current is not None else now
            stored = _Stored(
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
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.watch(self.version_key(collection))
            raw_version = await pipe.get(self.version_key(collection))
            if (int(raw_version) if raw_version is not None else 0) != version:
                raise WatchError("the FAQ changed since it was read")
            pipe.multi()
            pipe.hset(self.entries_key(collection), mapping=records)
            queue_bump(pipe, self._prefix, self.version_key(collection))
            await pipe.execute()


def _match_of(entry: FaqEntry, score: float, kind: MatchKind) -> FaqMatch:
    return FaqMatch(
        id=entry.id,
        question=entry.question,
        answer=entry.answer,
        score=score,
        match=kind,
        metadata=entry.metadata,
    )


def _same_entry(current: _Stored | None, entry: FaqEntryIn) -> bool:
    return (
        current is not None
        and current.vector is not None
        and current.entry.question == entry.question
        and current.entry.answer == entry.answer
        and dict(current.entry.metadata) == dict(entry.metadata)
    )


def _put_result(
    incoming: list[tuple[str, FaqEntryIn]],
    snapshot: _Snapshot,
    changes: list[tuple[str, FaqEntryIn]],
) -> PutResult:
    changed = {i for i, _ in changes}
    created = sum(1 for i in changed if i not in snapshot.stored)
    return PutResult(
        ids=[i for i, _ in incoming],
        created=created,
        updated=len(changed) - created,
        unchanged=len(incoming) - len(changed),
    )


def _refuse_duplicates(pairs: list[tuple[str, FaqEntryIn]]) -> None:
    seen_ids: set[str] = set()
    seen_questions: dict[str, str] = {}
    for entry_id, entry in pairs:
        if entry_id in seen_ids:
            raise InvalidRequest(
                f"entry {entry_id!r} appears twice in the request", detail={"id": entry_id}
            )
        seen_ids.add(entry_id)
        normalized = normalize_question(entry.question)
        other = seen_questions.setdefault(normalized, entry_id)
        if other != entry_id:
            raise InvalidRequest(
                f"entries {other!r} and {entry_id!r} ask the same question",
                detail={"ids": [other, entry_id]},
            )


def _check_length(where: str, name: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise InvalidRequest(
            f"{where}.{name} has {len(text)} characters; the limit is {limit}",
            detail={"field": f"{where}.{name}", "length": len(text), "limit": limit},
        )


def _validate_id(entry_id: str) -> None:
    if not _ENTRY_ID.fullmatch(entry_id):
        raise InvalidRequest(
            "FAQ entry ids hold 1 to 128 letters, digits, '_', '.', ':' or '-'",
            detail={"id": entry_id},
        )


def _not_found(collection: str, entry_id: str) -> FaqEntryNotFound:
    return FaqEntryNotFound(
        f"no FAQ entry {entry_id!r} in collection {collection!r}",
        detail={"collection": collection, "id": entry_id},
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@contextlib.contextmanager
def _redis_as_dependency(what: str) -> Iterator[None]:
    """Turn a Redis failure in an admin call into a 503 that names Redis."""
    try:
        yield
    except WatchError:
        raise  # not a failure: the optimistic write is retried
    except REDIS_ERRORS as exc:
        raise DependencyUnavailable(
            "redis", f"{what} is unavailable: Redis cannot be reached"
        ) from exc
