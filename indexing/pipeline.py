"""Ingestion: skip unchanged documents → chunk → analyze for BM25 → embed → write → bump version.

Documents move through three stages that overlap, so the embedder (the cost) never waits for the
rest: *plan* (one Milvus lookup per group of documents, then chunking and analysis in a worker
thread), *embed* (across documents, in full batches), and *commit* (write the group's new chunks,
record each document's new generation, delete its old chunks, bump the collection's version).

A reader sees the old or the new document, never none of it and never both: new chunks are
written before old ones are deleted, and the generation recorded in between (the commit point,
see ``indexing.generations``) tells readers which of the two to show. Chunk ids are stable (doc id
+ index + text), so a re-run after a crash overwrites what it wrote before instead of duplicating
it.

What a source document is and how it is checked: ``indexing.source_documents``. Listing and
deleting what was written: ``indexing.document_catalog`` (``IngestionPipeline`` forwards to it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pymilvus import MilvusException
from redis.asyncio import Redis

from docqa_core.errors import DocqaError, InvalidRequest
from indexing import schema
from indexing.analysis import analyze_many
from indexing.chunking import Chunk, chunk_text
from indexing.document_catalog import DocumentCatalog, DocumentSummary
from indexing.document_catalog import document_summary as document_summary  # re-exported
from indexing.embedding import Embedder
from indexing.generations import GenerationLog
from indexing.index_version import bump_version
from indexing.ingest_metrics import IngestionMetrics, NoMetrics, Stage, timed
from indexing.source_documents import MAX_METADATA_BYTES as MAX_METADATA_BYTES  # re-exported
from indexing.source_documents import (
    SourceDocument,
    chunk_metadata,
    hash_inputs,
    validate_document,
)
from indexing.store import ChunkStore, StoredChunk

log = logging.getLogger(__name__)

Outcome = Literal["indexed", "unchanged", "failed"]
ProgressFn = Callable[["DocumentOutcome"], Awaitable[None]]
CommitStage = Literal["written", "committed"]
# Called between the steps of a group's commit: "written" (new chunks stored, old still there,
# generation not yet switched) and "committed" (generation switched, old chunks not yet deleted).
CommitHook = Callable[[CommitStage, str, Sequence[str]], Awaitable[None]]
UPSERT_ROWS = 256  # rows per upsert call: keeps each request far below gRPC's message limit


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
    # a group is looked up, embedded and committed together; bounded so progress stays steady
    group_max_documents: int = 64
    group_max_chars: int = 200_000
    # Milvus scans unsealed rows on every lookup and upsert: sealing them every so many rows kept
    # its CPU for 10,000 short documents at 8 s instead of 30 s (flushing per group: 10 s)
    flush_every_rows: int = 1024


@dataclass
class _Planned:
    """A document whose chunks must be (re)written."""

    document: SourceDocument
    digest: str
    chunks: list[Chunk]
    analyzed: list[str]
    stale_ids: list[str]
    vectors: list[list[float]] = field(default_factory=list)


@dataclass
class _Group:
    """Documents in input order, each either settled (an outcome) or planned for writing."""

    items: list[DocumentOutcome | _Planned]
    unchanged: dict[str, str]  # doc id → content hash of documents already stored whole

    @property
    def planned(self) -> list[_Planned]:
        return [item for item in self.items if isinstance(item, _Planned)]


class IngestionPipeline:
    def __init__(
        self,
        *,
        store: ChunkStore,
        embedder: Embedder,
        redis: Redis,
        config: PipelineConfig,
        commit_hook: CommitHook | None = None,
        metrics: IngestionMetrics | None = None,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._redis = redis
        self._config = config
        self._generations = GenerationLog(redis, config.key_prefix)
        self._catalog = DocumentCatalog(
            store=store, redis=redis, key_prefix=config.key_prefix, generations=self._generations
        )
        self._unflushed_rows: dict[str, int] = {}  # per collection, across calls
        self.commit_hook = commit_hook  # a seam for tests that look inside a replacement
        # public: whoever parses files for this pipeline (job worker, batch) reports there too
        self.metrics: IngestionMetrics = metrics or NoMetrics()

    async def ingest(
        self,
        collection: str,
        documents: Sequence[SourceDocument],
        *,
        on_document: ProgressFn | None = None,
        flush: bool = True,
    ) -> list[DocumentOutcome]:
        """Outcomes in input order; ``on_document`` is awaited for each once it is committed.

        ``flush=False`` lets a caller writing many small batches flush once at the end. A
        dependency failure (``DocqaError`` 5xx, Redis) stops the whole call: re-running it is safe.
        """
        await self._store.ensure(collection)
        outcomes: list[DocumentOutcome] = []
        planned: asyncio.Queue[_Group | None] = asyncio.Queue(maxsize=1)
        embedded: asyncio.Queue[_Group | None] = asyncio.Queue(maxsize=1)
        in_flight = _InFlight()
        await _run_all(
            self._plan_groups(collection, documents, planned, in_flight),
            self._embed_groups(planned, embedded),
            self._commit_groups(collection, embedded, outcomes, on_document, in_flight),
        )
        if flush and any(o.outcome == "indexed" for o in outcomes):
            await self._flush(collection)
        return outcomes

    async def _flush(self, collection: str) -> None:
        self._unflushed_rows[collection] = 0
        await self._store.flush(collection)

    # ------------------------------------------------------------------ stage 1: plan

    async def _plan_groups(
        self,
        collection: str,
        documents: Sequence[SourceDocument],
        out: asyncio.Queue[_Group | None],
        in_flight: _InFlight,
    ) -> None:
        for group in document_groups(
            documents, self._config.group_max_documents, self._config.group_max_chars
        ):
            # a document repeated in the input is planned against what its first copy wrote
            await in_flight.admit([d.doc_id for d in group])
            with timed(self.metrics, "plan"):
                planned = await self._plan(collection, group)
            await out.put(planned)
        await out.put(None)

    async def _plan(self, collection: str, documents: Sequence[SourceDocument]) -> _Group:
        ids = [d.doc_id for d in documents if 0 < len(d.doc_id) <= schema.MAX_DOC_ID_CHARS]
        stored = await self._store.documents_chunks(collection, ids)
        # chunking counts tokens and Korean analysis is CPU work: keep the event loop free
        return await asyncio.to_thread(self._plan_sync, documents, stored)

    def _plan_sync(
        self, documents: Sequence[SourceDocument], stored: Mapping[str, list[StoredChunk]]
    ) -> _Group:
        group = _Group(items=[], unchanged={})
        for document in documents:
            try:
                group.items.append(self._plan_one(document, stored.get(document.doc_id, []), group))
            except DocqaError as exc:
                if exc.http_status >= 500:
                    raise  # a dependency is down: the whole job must stop and be retried
                group.items.append(DocumentOutcome(document.doc_id, "failed", error=exc.message))
            except (ValueError, UnicodeError) as exc:
                log.warning("document failed", extra={"doc_id": document.doc_id, "error": str(exc)})
                group.items.append(DocumentOutcome(document.doc_id, "failed", error=str(exc)))
        return group

    def _plan_one(
        self, document: SourceDocument, existing: list[StoredChunk], group: _Group
    ) -> DocumentOutcome | _Planned:
        validate_document(document)
        digest = schema.content_hash(document.text, hash_inputs(document))
        if is_complete_copy(existing, digest):
            group.unchanged[document.doc_id] = digest
            return DocumentOutcome(document.doc_id, "unchanged", chunks=len(existing))
        chunks = self._chunk(document)
        if not chunks:
            raise InvalidRequest("the document has no text to index")
        # headings (장/절, markdown parents) live only in the section path: make them searchable
        analyzed = analyze_many([f"{document.title}\n{c.section}\n{c.text}" for c in chunks])
        return _Planned(document, digest, chunks, analyzed, [c.chunk_id for c in existing])

    def _chunk(self, document: SourceDocument) -> list[Chunk]:
        return chunk_text(
            document.text,
            kind=document.kind,
            count_tokens=self._embedder.count_tokens,
            max_tokens=self._config.chunk_max_tokens,
            overlap_tokens=self._config.chunk_overlap_tokens,
            page_starts=document.page_starts,
        )

    # ------------------------------------------------------------------ stage 2: embed

    async def _embed_groups(
        self, source: asyncio.Queue[_Group | None], out: asyncio.Queue[_Group | None]
    ) -> None:
        while (group := await source.get()) is not None:
            planned = group.planned
            with timed(self.metrics, "embed"):
                vectors = await self._embed([c.text for p in planned for c in p.chunks])
            start = 0
            for item in planned:
                item.vectors = vectors[start : start + len(item.chunks)]
                start += len(item.chunks)
            await out.put(group)
        await out.put(None)

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        batch = self._config.embed_batch_size
        for start in range(0, len(texts), batch):
            vectors.extend(
                (await self._embedder.embed_passages(texts[start : start + batch])).tolist()
            )
        return vectors

    # ------------------------------------------------------------------ stage 3: commit

    async def _commit_groups(
        self,
        collection: str,
        source: asyncio.Queue[_Group | None],
        outcomes: list[DocumentOutcome],
        on_document: ProgressFn | None,
        in_flight: _InFlight,
    ) -> None:
        while (group := await source.get()) is not None:
            with timed(self.metrics, "write"):
                settled = await self._commit(collection, group)
            await in_flight.release([o.doc_id for o in settled])
            self._count(group, settled)
            for outcome in settled:
                outcomes.append(outcome)
                if on_document is not None:
                    await on_document(outcome)

    def _count(self, group: _Group, settled: list[DocumentOutcome]) -> None:
        planned = {p.document.doc_id: p for p in group.planned}
        for outcome in settled:
            item = planned.get(outcome.doc_id)
            failed_at: Stage | None = None
            if outcome.outcome == "failed":
                # planned, then not written (Milvus refused its rows), or refused when planned
                failed_at = "write" if item is not None else "plan"
            written = outcome.outcome == "indexed" and item is not None
            self.metrics.count_document(
                outcome.outcome,
                chunks=outcome.chunks if written else 0,
                text_bytes=len(item.document.text.encode()) if written and item else 0,
                failed_at=failed_at,
            )

    async def _commit(self, collection: str, group: _Group) -> list[DocumentOutcome]:
        """New chunks → generation switch → old chunks deleted → version bump."""
        written = await self._write(collection, group.planned)
        stored = [p for p in group.planned if written[p.document.doc_id] is None]
        doc_ids = [p.document.doc_id for p in stored]
        await self._hook("written", collection, doc_ids)
        current = {p.document.doc_id: p.digest for p in stored}
        # unchanged documents too: heals a generation lost with Redis' data (or never recorded)
        await self._generations.commit(collection, {**group.unchanged, **current})
        await self._hook("committed", collection, doc_ids)
        await self._store.delete_chunks(collection, _stale_ids(group.planned, written))
        if current:
            await bump_version(self._redis, self._config.key_prefix, collection)
        rows = self._unflushed_rows.get(collection, 0) + sum(len(p.chunks) for p in stored)
        self._unflushed_rows[collection] = rows
        if rows >= self._config.flush_every_rows:
            await self._flush(collection)
        return [_settled(item, written) for item in group.items]

    async def _write(self, collection: str, planned: list[_Planned]) -> dict[str, str | None]:
        """doc id → None if its chunks are stored, else why not. One bulk upsert; if Milvus
        rejects it, each document alone, so a bad one fails by itself."""
        rows = [row for item in planned for row in document_rows(item)]
        try:
            for start in range(0, len(rows), UPSERT_ROWS):
                await self._store.upsert(collection, rows[start : start + UPSERT_ROWS])
            return {item.document.doc_id: None for item in planned}
        except MilvusException as exc:
            if len(planned) == 1:
                return {planned[0].document.doc_id: f"Milvus refused the chunks: {exc.message}"}
        results: dict[str, str | None] = {}
        for item in planned:
            results.update(await self._write(collection, [item]))
        return results

    async def _hook(self, stage: CommitStage, collection: str, doc_ids: Sequence[str]) -> None:
        if self.commit_hook is not None and doc_ids:
            await self.commit_hook(stage, collection, doc_ids)

    # ------------------------------------------------------------------ outside ingestion

    async def list_documents(
        self, collection: str, *, limit: int, cursor: str = ""
    ) -> tuple[list[DocumentSummary], str | None]:
        """One page of the collection's documents and the cursor of the next page (None at the
        end): see ``DocumentCatalog.list_documents``."""
        return await self._catalog.list_documents(collection, limit=limit, cursor=cursor)

    async def delete_document(self, collection: str, doc_id: str) -> int:
        return await self._catalog.delete_document(collection, doc_id)

    async def delete_collection(self, collection: str) -> int:
        """Drop the collection and everything kept for it; returns the FAQ entries removed."""
        return await self._catalog.delete_collection(collection)


class _InFlight:
    """Doc ids planned but not yet committed in one ``ingest`` call."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._changed = asyncio.Condition()

    async def admit(self, doc_ids: Sequence[str]) -> None:
        """Wait until none of these ids is in flight, then count them in."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._ids.isdisjoint(doc_ids))
            self._ids.update(doc_ids)

    async def release(self, doc_ids: Sequence[str]) -> None:
        async with self._changed:
            self._ids.difference_update(doc_ids)
            self._changed.notify_all()


async def _run_all(*stages: Awaitable[None]) -> None:
    """Run the stages concurrently; the first failure cancels the others and is re-raised
    as it is (a TaskGroup would wrap it in an ExceptionGroup, which callers do not expect)."""
    tasks = [asyncio.ensure_future(stage) for stage in stages]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def document_groups(
    documents: Sequence[SourceDocument], max_documents: int, max_chars: int
) -> Iterator[list[SourceDocument]]:
    """Consecutive groups of at most ``max_documents`` and about ``max_chars`` of text (a
    larger document goes alone). A repeated doc id starts a new group, so the later copy is
    planned against what the earlier one wrote."""
    group: list[SourceDocument] = []
    ids: set[str] = set()
    chars = 0
    for document in documents:
        full = len(group) >= max_documents or chars + len(document.text) > max_chars
        if group and (full or document.doc_id in ids):
            yield group
            group, ids, chars = [], set(), 0
        group.append(document)
        ids.add(document.doc_id)
        chars += len(document.text)
    if group:
        yield group


def document_rows(item: _Planned) -> list[dict[str, Any]]:
    document, chunks = item.document, item.chunks
    return [
        {
            schema.CHUNK_ID: schema.chunk_id(document.doc_id, index, chunk.text),
            schema.DOC_ID: document.doc_id,
            schema.CONTENT_HASH: item.digest,
            schema.CHUNK_INDEX: index,
            schema.CHUNK_COUNT: len(chunks),
            schema.TEXT: chunk.text,
            schema.ANALYZED_TEXT: item.analyzed[index],
            schema.DENSE: item.vectors[index],
            schema.METADATA: chunk_metadata(document, chunk),
        }
        for index, chunk in enumerate(chunks)
    ]


def _stale_ids(planned: Sequence[_Planned], written: Mapping[str, str | None]) -> list[str]:
    """Old chunk ids of the written documents that the new chunks did not overwrite."""
    stale: list[str] = []
    for item in planned:
        if written.get(item.document.doc_id, "not written") is None:
            new_ids = {
                schema.chunk_id(item.document.doc_id, i, c.text) for i, c in enumerate(item.chunks)
            }
            stale.extend(cid for cid in item.stale_ids if cid not in new_ids)
    return stale


def _settled(
    item: DocumentOutcome | _Planned, written: Mapping[str, str | None]
) -> DocumentOutcome:
    if isinstance(item, DocumentOutcome):
        return item
    doc_id = item.document.doc_id
    error = written.get(doc_id)
    if error is not None:
        return DocumentOutcome(doc_id, "failed", error=error)
    return DocumentOutcome(doc_id, "indexed", chunks=len(item.chunks))


def is_complete_copy(existing: Sequence[StoredChunk], digest: str) -> bool:
    """True if Milvus holds every chunk of exactly this content and nothing else for the doc."""
    if not existing or any(c.content_hash != digest for c in existing):
        return False
    expected = existing[0].chunk_count
    return len(existing) == expected and {c.chunk_index for c in existing} == set(range(expected))
