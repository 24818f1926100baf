"""Which generation of each document readers see.

A document's *generation* is its content hash: every chunk row carries it. Replacing a changed
document takes three steps: write the new chunks, record the new hash as the document's current
generation (one Redis hash per collection, field = doc id), then delete the old chunks. Recording
the hash is the commit point. Between the first and the last step Milvus holds both generations,
so the read side keeps, for each document among its hits, only the chunks of one generation:

- the recorded current one, when any hit carries it;
- otherwise the generation of the document's best-ranked hit. That covers a search that ran just
  before the new chunks became visible while the hash was read just after (the document must not
  vanish), documents indexed before generations were recorded, and Redis being unreachable: each
  document still shows one generation, never a mix, and is never dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from docqa_core.redis_keys import generations_key
from indexing import schema
from indexing.store import Hit

log = logging.getLogger(__name__)


class GenerationLog:
    """The current generation (content hash) of each document, per collection, in Redis."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def commit(self, collection: str, current: Mapping[str, str]) -> None:
        """Make these hashes current: call only once every chunk of each is written."""
        if current:
            mapping: dict[Any, Any] = dict(current)  # redis-py's Mapping type is invariant
            await self._redis.hset(generations_key(self._prefix, collection), mapping=mapping)

    async def forget(self, collection: str, doc_ids: Sequence[str]) -> None:
        if doc_ids:
            await self._redis.hdel(generations_key(self._prefix, collection), *doc_ids)

    async def drop(self, collection: str) -> None:
        await self._redis.delete(generations_key(self._prefix, collection))

    async def current(self, collection: str, doc_ids: Sequence[str]) -> dict[str, str]:
        if not doc_ids:
            return {}
        values = await self._redis.hmget(generations_key(self._prefix, collection), list(doc_ids))
        return {
            doc_id: value.decode() if isinstance(value, bytes) else str(value)
            for doc_id, value in zip(doc_ids, values, strict=True)
            if value is not None
        }


class CurrentGenerationFilter:
    """Read side: drops hits that belong to a document generation readers must not see."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._log = GenerationLog(redis, prefix)

    async def keep_current(self, collection: str, *ranked: Sequence[Hit]) -> tuple[list[Hit], ...]:
        doc_ids = sorted({_doc_id(hit) for hits in ranked for hit in hits})
        try:
            current = await self._log.current(collection, doc_ids)
        except (RedisError, OSError) as exc:
            # answering stays possible without Redis: one generation per document still holds
            log.warning("generations unavailable", extra={"error": str(exc)})
            current = {}
        return one_generation_per_document(ranked, current)


def one_generation_per_document(
    ranked: Sequence[Sequence[Hit]], current: Mapping[str, str]
) -> tuple[list[Hit], ...]:
    """Filter each ranked hit list so every document keeps the hits of exactly one generation."""
    chosen = choose_generations(ranked, current)
    return tuple(
        [hit for hit in hits if _content_hash(hit) == chosen[_doc_id(hit)]] for hits in ranked
    )


def choose_generations(
    ranked: Sequence[Sequence[Hit]], current: Mapping[str, str]
) -> dict[str, str]:
    """doc id → the generation to show: the current one if among the hits, else the one of the
    document's best-ranked hit (lowest rank in any list; the earlier list wins a tie)."""
    best: dict[str, tuple[int, int, str]] = {}
    seen: dict[str, set[str]] = {}
    for list_index, hits in enumerate(ranked):
        for rank, hit in enumerate(hits):
            doc_id, generation = _doc_id(hit), _content_hash(hit)
            seen.setdefault(doc_id, set()).add(generation)
            candidate = (rank, list_index, generation)
            if doc_id not in best or candidate < best[doc_id]:
                best[doc_id] = candidate
    return {
        doc_id: current[doc_id] if current.get(doc_id) in generations else best[doc_id][2]
        for doc_id, generations in seen.items()
    }


def generations_of(hits: Iterable[Hit]) -> dict[str, set[str]]:
    """doc id → the generations among these hits (for tests and diagnostics)."""
    found: dict[str, set[str]] = {}
    for hit in hits:
        found.setdefault(_doc_id(hit), set()).add(_content_hash(hit))
    return found


def _doc_id(hit: Hit) -> str:
    return str(hit.entity.get(schema.DOC_ID, ""))


def _content_hash(hit: Hit) -> str:
    return str(hit.entity.get(schema.CONTENT_HASH, ""))
