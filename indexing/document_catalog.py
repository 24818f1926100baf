"""A collection's documents outside ingestion: listing them page by page (each in its current
generation only, see ``indexing.generations``), deleting one, and dropping the collection."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from docqa_core.errors import InvalidRequest
from indexing import schema
from indexing.generations import GenerationLog
from indexing.index_version import bump_version, drop_faq
from indexing.store import ChunkStore

log = logging.getLogger(__name__)

_CURSOR = re.compile(r"^[0-9a-f]{32}$")  # a chunk id (schema.chunk_id)


@dataclass(frozen=True)
class DocumentSummary:
    doc_id: str
    title: str
    source: str
    content_hash: str
    chunk_count: int


def document_summary(first_chunk: Mapping[str, Any]) -> DocumentSummary:
    metadata = first_chunk.get(schema.METADATA) or {}
    return DocumentSummary(
        doc_id=str(first_chunk[schema.DOC_ID]),
        title=str(metadata.get("title") or ""),
        source=str(metadata.get("source") or ""),
        content_hash=str(first_chunk[schema.CONTENT_HASH]),
        chunk_count=int(first_chunk[schema.CHUNK_COUNT]),
    )


class DocumentCatalog:
    """Lists and deletes what the ingestion pipeline wrote, keeping its generations and the
    collection's version in step."""

    def __init__(
        self, *, store: ChunkStore, redis: Redis, key_prefix: str, generations: GenerationLog
    ) -> None:
        self._store = store
        self._redis = redis
        self._key_prefix = key_prefix
        self._generations = generations

    async def list_documents(
        self, collection: str, *, limit: int, cursor: str = ""
    ) -> tuple[list[DocumentSummary], str | None]:
        """One page of the collection's documents and the cursor of the next page (None at the
        end). A page may hold fewer than ``limit`` documents: a document being replaced shows
        only its current generation."""
        if cursor and not _CURSOR.fullmatch(cursor):
            raise InvalidRequest("cursor must be the next_cursor of a previous page")
        rows = await self._store.first_chunks(collection, limit=limit, after_chunk_id=cursor)
        current = await self._current_generations(collection, [r[schema.DOC_ID] for r in rows])
        documents: dict[str, DocumentSummary] = {}
        for row in rows:
            doc_id = row[schema.DOC_ID]
            if (
                doc_id in documents
                or current.get(doc_id, row[schema.CONTENT_HASH]) != row[schema.CONTENT_HASH]
            ):
                continue
            documents[doc_id] = document_summary(row)
        next_cursor = str(rows[-1][schema.CHUNK_ID]) if len(rows) == limit else None
        return list(documents.values()), next_cursor

    async def _current_generations(self, collection: str, doc_ids: list[str]) -> dict[str, str]:
        try:
            return await self._generations.current(collection, sorted(set(doc_ids)))
        except (RedisError, OSError) as exc:
            log.warning("generations unavailable", extra={"error": str(exc)})
            return {}

    async def delete_document(self, collection: str, doc_id: str) -> int:
        existing = await self._store.document_chunks(collection, doc_id)
        if existing:
            await self._store.delete_chunks(collection, [c.chunk_id for c in existing])
            await self._store.flush(collection)
            await self._generations.forget(collection, [doc_id])
            await bump_version(self._redis, self._key_prefix, collection)
        return len(existing)

    async def delete_collection(self, collection: str) -> int:
        """Drop the collection and everything kept for it; returns the FAQ entries removed."""
        await self._store.drop(collection)
        await self._generations.drop(collection)
        # its FAQ answers questions about documents that are gone: a new collection of the same
        # name must not inherit it
        faq_entries = await drop_faq(self._redis, self._key_prefix, collection)
        await bump_version(self._redis, self._key_prefix, collection)
        return faq_entries
