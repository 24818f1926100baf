"""Ingestion: skip unchanged documents → chunk → analyze for BM25 → embed → write → bump version.

Replacing a document writes its new chunks first and removes the old ones after, so a reader sees
the old or the new document, never none of it. Chunk ids are stable (doc id + index + text), so a
re-run after a crash overwrites what it wrote before instead of duplicating it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis

from indexing import schema
from indexing.analysis import analyze_many
from indexing.chunking import Chunk, ChunkKind, chunk_text
from indexing.embedding import Embedder
from indexing.errors import DocqaError, InvalidRequest
from indexing.index_version import bump_version
from indexing.store import ChunkStore, StoredChunk

log = logging.getLogger(__name__)

Outcome = Literal["indexed", "unchanged", "failed"]
ProgressFn = Callable[["DocumentOutcome"], Awaitable[None]]


@dataclass(frozen=True)
class SourceDocument:
    doc_id: str
    text: str
    title: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: ChunkKind = "auto"
    page_starts: tuple[int, ...] | None = None


@dataclass(frozen=True)
class DocumentOutcome:
    doc_id: str
    outcome: Outcome
    chunks: int = 0
    error: str | None = None


@dataclass(frozen=True)
class PipelineConfig:
    chunk_max_tokens: int = 480
    chunk_overlap_tokens: int = 48
    embed_batch_size: int = 32
    key_prefix: str = "docqa"


class IngestionPipeline:
    def __init__(
        self, *, store: ChunkStore, embedder: Embedder, redis: Redis, config: PipelineConfig
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._redis = redis
        self._config = config

    async def ingest(
        self,
        collection: str,
        documents: Sequence[SourceDocument],
        *,
        on_document: ProgressFn | None = None,
        flush: bool = True,
    ) -> list[DocumentOutcome]:
        """``flush=False`` lets a caller writing many small batches flush once at the end."""
        await self._store.ensure(collection)
        outcomes: list[DocumentOutcome] = []
        for document in documents:
            outcome = await self._ingest_one(collection, document)
            outcomes.append(outcome)
            if on_document is not None:
                await on_document(outcome)
        if flush and any(o.outcome == "indexed" for o in outcomes):
            await self._store.flush(collection)
        return outcomes

    async def _ingest_one(self, collection: str, document: SourceDocument) -> DocumentOutcome:
        try:
            return await self._replace_document(collection, document)
        except DocqaError as exc:
            if exc.http_status >= 500:
                raise  # a dependency is down: the whole job must stop and be retried
            return DocumentOutcome(document.doc_id, "failed", error=exc.message)
        except (ValueError, UnicodeError) as exc:
            log.warning("document failed", extra={"doc_id": document.doc_id, "error": str(exc)})
            return DocumentOutcome(document.doc_id, "failed", error=str(exc))

    async def _replace_document(self, collection: str, document: SourceDocument) -> DocumentOutcome:
        validate_document(document)
        digest = schema.content_hash(document.text, _hash_inputs(document))
        existing = await self._store.document_chunks(collection, document.doc_id)
        if is_complete_copy(existing, digest):
            return DocumentOutcome(document.doc_id, "unchanged", chunks=len(existing))
        chunks = self._chunk(document)
        if not chunks:
            raise InvalidRequest("the document has no text to index")
        rows = await self._rows(document, chunks, digest)
        await self._store.upsert(collection, rows)
        new_ids = {row[schema.CHUNK_ID] for row in rows}
        await self._store.delete_chunks(
            collection, [c.chunk_id for c in existing if c.chunk_id not in new_ids]
        )
        await bump_version(self._redis, self._config.key_prefix, collection)
        return DocumentOutcome(document.doc_id, "indexed", chunks=len(rows))

    def _chunk(self, document: SourceDocument) -> list[Chunk]:
        return chunk_text(
            document.text,
            kind=document.kind,
            count_tokens=self._embedder.count_tokens,
            max_tokens=self._config.chunk_max_tokens,
            overlap_tokens=self._config.chunk_overlap_tokens,
            page_starts=document.page_starts,
        )

    async def _rows(
        self, document: SourceDocument, chunks: list[Chunk], digest: str
    ) -> list[dict[str, Any]]:
        texts = [c.text for c in chunks]
        # headings (장/절, markdown parents) live only in the section path: make them searchable
        analyzed = analyze_many([f"{document.title}\n{c.section}\n{c.text}" for c in chunks])
        vectors = []
        batch = self._config.embed_batch_size
        for start in range(0, len(texts), batch):
            vectors.extend(
                (await self._embedder.embed_passages(texts[start : start + batch])).tolist()
            )
        return [
            {
                schema.CHUNK_ID: schema.chunk_id(document.doc_id, index, chunk.text),
                schema.DOC_ID: document.doc_id,
                schema.CONTENT_HASH: digest,
                schema.CHUNK_INDEX: index,
                schema.CHUNK_COUNT: len(chunks),
                schema.TEXT: chunk.text,
                schema.ANALYZED_TEXT: analyzed[index],
                schema.DENSE: vectors[index],
                schema.METADATA: chunk_metadata(document, chunk),
            }
            for index, chunk in enumerate(chunks)
        ]

    async def delete_document(self, collection: str, doc_id: str) -> int:
        existing = await self._store.document_chunks(collection, doc_id)
        if existing:
            await self._store.delete_chunks(collection, [c.chunk_id for c in existing])
            await self._store.flush(collection)
            await bump_version(self._redis, self._config.key_prefix, collection)
        return len(existing)

    async def delete_collection(self, collection: str) -> None:
        await self._store.drop(collection)
        await bump_version(self._redis, self._config.key_prefix, collection)


def is_complete_copy(existing: Sequence[StoredChunk], digest: str) -> bool:
    """True if Milvus holds every chunk of exactly this content and nothing else for the doc."""
    if not existing or any(c.content_hash != digest for c in existing):
        return False
    expected = existing[0].chunk_count
    return len(existing) == expected and {c.chunk_index for c in existing} == set(range(expected))


def chunk_metadata(document: SourceDocument, chunk: Chunk) -> dict[str, Any]:
    reserved = {
        "title": document.title,
        "source": document.source,
        "page": chunk.page,
        "section": chunk.section,
        "char_start": chunk.char_start,
        "char_end": chunk.char_end,
    }
    return {**document.metadata, **reserved}


def _hash_inputs(document: SourceDocument) -> dict[str, Any]:
    """What, besides the text, changes the stored chunks (so a retitled doc is re-written)."""
    return {
        "title": document.title,
        "source": document.source,
        "kind": document.kind,
        "metadata": document.metadata,
    }


def validate_document(document: SourceDocument) -> None:
    if not document.doc_id or len(document.doc_id) > schema.MAX_DOC_ID_CHARS:
        raise InvalidRequest(f"doc_id must be 1 to {schema.MAX_DOC_ID_CHARS} characters")
    if not document.text.strip():
        raise InvalidRequest("the document has no text to index")
