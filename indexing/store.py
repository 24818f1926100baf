"""Milvus access for chunks: the collection lifecycle, writes, and the two searches.

Only the indexing side creates collections; the query side calls :meth:`ChunkStore.require`, which
fails with ``CollectionNotFound`` instead. pymilvus calls go through :func:`_milvus_call` so a
lost server becomes ``DependencyUnavailable`` (503), not a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pymilvus import AsyncMilvusClient, MilvusClient, MilvusException

from docqa_core.errors import CollectionNotFound, DependencyUnavailable, InvalidRequest
from indexing import schema

log = logging.getLogger(__name__)
T = TypeVar("T")

_UNAVAILABLE_HINTS = ("fail connecting", "unavailable", "connection", "deadline", "timeout")
# after a restart milvus-lite reports a collection "in state 'loading'" until load() finishes
_NOT_LOADED_HINTS = ("not loaded", "released", "collection not load", "state 'loading'")


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: str
    score: float
    entity: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str  # docqa's name, without the Milvus prefix
    created: int  # Unix seconds; 0 when Milvus does not say


@dataclass(frozen=True, slots=True)
class StoredChunk:
    chunk_id: str
    content_hash: str
    chunk_index: int
    chunk_count: int


class ChunkStore:
    """Reads and writes through the async client; creates collections through a sync one.

    The async client's ``create_index`` waits for the index with ``AllocTimestamp``, which
    milvus-lite does not implement, so DDL goes through ``ddl_client`` (a factory, called on first
    use, because the sync client connects in its constructor) in a worker thread.
    """

    def __init__(
        self,
        client: AsyncMilvusClient,
        *,
        dim: int,
        timeout_s: float = 10.0,
        ddl_client: Callable[[], MilvusClient] | None = None,
    ) -> None:
        self._client = client
        self._ddl_factory = ddl_client
        self._ddl: MilvusClient | None = None
        self._dim = dim
        self._timeout = timeout_s
        self._loaded: set[str] = set()
        self._create_lock = asyncio.Lock()

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        return await _milvus_call(fn, *args, call_timeout_s=self._timeout, **kwargs)

    async def ping(self) -> None:
        await self._call(self._client.list_collections)

    async def list_collections(self) -> list[CollectionInfo]:
        """docqa's collections (the Milvus collections under its prefix), by name."""
        names: list[str] = await self._call(self._client.list_collections)
        ours = sorted(
            name.removeprefix(schema.COLLECTION_PREFIX)
            for name in names
            if name.startswith(schema.COLLECTION_PREFIX)
        )
        created = await asyncio.gather(
            *(self._created(schema.COLLECTION_PREFIX + name) for name in ours)
        )
        return [CollectionInfo(name, when) for name, when in zip(ours, created, strict=True)]

    async def _created(self, name: str) -> int:
        try:
            description = await self._call(self._client.describe_collection, name)
        except MilvusException:  # dropped since it was listed
            return 0
        # a hybrid timestamp: physical milliseconds above 18 logical bits
        timestamp = int(description.get("created_timestamp") or 0)
        return (timestamp >> 18) // 1000

    async def ensure(self, collection: str) -> str:
        """Create the collection if missing (indexing side only) and make sure it is loaded."""
        name = schema.milvus_collection_name(collection)
        async with self._create_lock:
            if not await self._call(self._client.has_collection, name):
                log.info("creating collection", extra={"collection": collection})
                await asyncio.to_thread(self._create_collection_sync, name)
            else:
                await self._check_dim(collection, name)
        await self._load(name)
        return name

    def _create_collection_sync(self, name: str) -> None:
        if self._ddl_factory is None:
            raise RuntimeError("this ChunkStore was built without a DDL client: it cannot create")
        try:
            if self._ddl is None:
                self._ddl = self._ddl_factory()
            self._ddl.create_collection(
                name,
                schema=schema.build_schema(self._dim),
                index_params=schema.build_index_params(),
                timeout=self._timeout,
            )
        except MilvusException as exc:
            raise DependencyUnavailable(
                "milvus", "could not create the collection", detail=str(exc)
            ) from exc

    def close_ddl(self) -> None:
        if self._ddl is not None:
            self._ddl.close()
            self._ddl = None

    async def require(self, collection: str) -> str:
        name = schema.milvus_collection_name(collection)
        if name in self._loaded:
            return name
        if not await self._call(self._client.has_collection, name):
            raise CollectionNotFound.named(collection)
        await self._load(name)
        return name

    async def _check_dim(self, collection: str, name: str) -> None:
        description = await self._call(self._client.describe_collection, name)
        dim = schema.collection_dim(description)
        if dim is not None and dim != self._dim:
            raise InvalidRequest(
                f"collection {collection!r} holds {dim}-dimensional vectors but the embedder makes "
                f"{self._dim}; re-create the collection or configure the matching embedder",
                detail={"collection": collection, "collection_dim": dim, "embedder_dim": self._dim},
            )

    async def _load(self, name: str) -> None:
        # milvus-lite returns collections released after a restart; loading is idempotent
        await self._call(self._client.load_collection, name)
        self._loaded.add(name)

    async def drop(self, collection: str) -> None:
        name = await self.require(collection)
        await self._call(self._client.drop_collection, name)
        self._loaded.discard(name)

    async def upsert(self, collection: str, rows: list[dict[str, Any]]) -> None:
        name = await self.require(collection)
        if rows:
            await self._call(self._client.upsert, name, rows)

    async def flush(self, collection: str) -> None:
        # without a flush, new rows sit in a growing segment that searches scan brute-force
        await self._call(self._client.flush, await self.require(collection))

    async def delete_chunks(self, collection: str, chunk_ids: Sequence[str]) -> None:
        if chunk_ids:
            name = await self.require(collection)
            await self._call(self._client.delete, name, ids=list(chunk_ids))

    async def document_chunks(self, collection: str, doc_id: str) -> list[StoredChunk]:
        return (await self.documents_chunks(collection, [doc_id])).get(doc_id, [])

    async def documents_chunks(
        self, collection: str, doc_ids: Sequence[str]
    ) -> dict[str, list[StoredChunk]]:
        """What is stored for each of these documents, in one query (absent ids are left out)."""
        if not doc_ids:
            return {}
        name = await self.require(collection)
        ids = ", ".join(quote(doc_id) for doc_id in doc_ids)
        rows = await self._call(
            self._client.query,
            name,
            filter=f"{schema.DOC_ID} in [{ids}]",
            output_fields=[*_STORED_CHUNK_FIELDS, schema.DOC_ID],
        )
        found: dict[str, list[StoredChunk]] = {}
        for row in rows:
            found.setdefault(row[schema.DOC_ID], []).append(_stored_chunk(row))
        return found

    async def chunks_at(
        self,
        collection: str,
        wanted: Mapping[tuple[str, str], Sequence[int]],
        expr: str = "",
    ) -> list[dict[str, Any]]:
        """The chunks (text, metadata, index, document and generation) at the given indexes
        of each (doc id, content hash) generation, in one query; ``expr`` filters them as a
        search's filter would."""
        clauses = [
            f"({schema.DOC_ID} == {quote(doc_id)} and {schema.CONTENT_HASH} == {quote(content)}"
            f" and {schema.CHUNK_INDEX} in [{', '.join(str(int(i)) for i in sorted(indexes))}])"
            for (doc_id, content), indexes in wanted.items()
            if indexes
        ]
        if not clauses:
            return []
        keys = " or ".join(clauses)
        name = await self.require(collection)
        rows: list[dict[str, Any]] = await self._call(
            self._client.query,
            name,
            filter=f"({keys}) and ({expr})" if expr else keys,
            output_fields=schema.OUTPUT_FIELDS,
        )
        return rows

    async def first_chunks(
        self, collection: str, *, limit: int, after_chunk_id: str = ""
    ) -> list[dict[str, Any]]:
        """The first chunk of each document, ordered by chunk id, after ``after_chunk_id``.

        This is a stable order to page through documents with a cursor: the ``iterator`` query
        option (what pymilvus' own query iterator sends) makes Milvus return the smallest
        primary keys that match, in order; a plain query with a limit returns arbitrary ones.
        """
        name = await self.require(collection)
        expr = f"{schema.CHUNK_INDEX} == 0"
        if after_chunk_id:
            expr += f" and {schema.CHUNK_ID} > {quote(after_chunk_id)}"
        rows: list[dict[str, Any]] = await self._call(
            self._client.query,
            name,
            filter=expr,
            output_fields=[*_STORED_CHUNK_FIELDS, schema.DOC_ID, schema.METADATA],
            limit=limit,
            iterator="True",
            reduce_stop_for_best="True",
        )
        return sorted(rows, key=lambda row: str(row[schema.CHUNK_ID]))

    async def query_first_chunks(
        self, collection: str, expr: str, *, limit: int
    ) -> list[dict[str, Any]]:
        """``doc_id`` and ``metadata`` of the first chunk of each document matching ``expr``
        (a document being replaced may show twice, once per generation)."""
        name = await self.require(collection)
        rows: list[dict[str, Any]] = await self._call(
            self._client.query,
            name,
            filter=f"{schema.CHUNK_INDEX} == 0 and ({expr})",
            output_fields=[schema.DOC_ID, schema.METADATA],
            limit=limit,
        )
        return rows

    async def search_dense(
        self, collection: str, vector: Sequence[float], *, limit: int, expr: str = ""
    ) -> list[Hit]:
        return await self._search(
            collection,
            [list(vector)],
            schema.DENSE,
            {"metric_type": "COSINE", "params": {"ef": max(64, limit)}},
            limit,
            expr,
        )

    async def search_sparse(
        self, collection: str, analyzed_query: str, *, limit: int, expr: str = ""
    ) -> list[Hit]:
        if not analyzed_query.strip():
            return []
        return await self._search(
            collection, [analyzed_query], schema.SPARSE, {"metric_type": "BM25"}, limit, expr
        )

    async def known_terms(
        self, collection: str, terms: Sequence[str], *, expr: str = ""
    ) -> set[str]:
        """The analyzed ``terms`` some chunk of ``collection`` (under ``expr``) holds: one BM25
        search per term, all in one request, each asking for one hit. A term no chunk holds
        has no hit (BM25 scores only chunks holding a query term)."""
        wanted = [t for t in dict.fromkeys(terms) if t.strip()]
        if not wanted:
            return set()
        results = await self._search_rows(
            collection, wanted, schema.SPARSE, {"metric_type": "BM25"}, 1, expr, []
        )
        return {term for term, rows in zip(wanted, results, strict=True) if rows}

    async def _search(
        self,
        collection: str,
        data: list[Any],
        field: str,
        params: dict[str, Any],
        limit: int,
        expr: str,
    ) -> list[Hit]:
        result = await self._search_rows(
            collection, data, field, params, limit, expr, schema.OUTPUT_FIELDS
        )
        return [
            Hit(row["entity"][schema.CHUNK_ID], float(row["distance"]), row["entity"])
            for row in result[0]
        ]

    async def _search_rows(
        self,
        collection: str,
        data: list[Any],
        field: str,
        params: dict[str, Any],
        limit: int,
        expr: str,
        output_fields: list[str],
    ) -> Any:
        """Milvus' result of one search request: a list of rows per query of ``data``."""
        name = await self.require(collection)
        kwargs: dict[str, Any] = {
            "data": data,
            "anns_field": field,
            "search_params": params,
            "limit": limit,
            "output_fields": output_fields,
        }
        if expr:
            kwargs["filter"] = expr
        try:
            return await self._call(self._client.search, name, **kwargs)
        except _NotLoaded:
            await self._load(name)
            return await self._call(self._client.search, name, **kwargs)


_STORED_CHUNK_FIELDS = [
    schema.CHUNK_ID,
    schema.CONTENT_HASH,
    schema.CHUNK_INDEX,
    schema.CHUNK_COUNT,
]


def _stored_chunk(row: dict[str, Any]) -> StoredChunk:
    return StoredChunk(
        row[schema.CHUNK_ID],
        row[schema.CONTENT_HASH],
        int(row[schema.CHUNK_INDEX]),
        int(row[schema.CHUNK_COUNT]),
    )


class _NotLoaded(DependencyUnavailable):
    """The collection is not (yet) loaded: a search loads it and tries once more; anywhere else,
    or if it is still loading then, a 503 with Retry-After (it is loading, it will pass)."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            "milvus", "Milvus is loading the collection", detail=detail, retry_after_s=2.0
        )


async def _milvus_call(
    fn: Callable[..., Awaitable[T]], *args: Any, call_timeout_s: float, **kwargs: Any
) -> T:
    try:
        return await fn(*args, timeout=call_timeout_s, **kwargs)
    except MilvusException as exc:
        message = str(exc).lower()
        if any(hint in message for hint in _NOT_LOADED_HINTS):
            raise _NotLoaded(str(exc)) from exc
        if any(hint in message for hint in _UNAVAILABLE_HINTS):
            raise DependencyUnavailable("milvus", "Milvus is unreachable", detail=str(exc)) from exc
        raise
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise DependencyUnavailable("milvus", "Milvus is unreachable", detail=str(exc)) from exc


def quote(value: str) -> str:
    """A string literal for a Milvus boolean expression."""
    return json.dumps(value, ensure_ascii=False)
