"""HybridRetriever runs the BM25 search while the question is being embedded, and leaves
nothing running when a step fails. The store and embedder are fakes of our own seams that
record when each call starts and ends."""

from __future__ import annotations

import asyncio
import gc
from typing import Any, cast

import numpy as np
import pytest
from llama_index.core.schema import QueryBundle

from indexing import schema
from indexing.embedding import Embedder
from indexing.store import ChunkStore, Hit
from query_engine.retrieval import HybridRetriever, RetrievalConfig

pytestmark = pytest.mark.unit


def hit(chunk_id: str, score: float) -> Hit:
    entity = {schema.CHUNK_ID: chunk_id, schema.DOC_ID: "d", schema.TEXT: chunk_id}
    return Hit(chunk_id=chunk_id, score=score, entity=entity)


class Timeline:
    def __init__(self) -> None:
        self.events: list[str] = []


class SlowEmbedder:
    def __init__(self, timeline: Timeline, *, fail: bool = False) -> None:
        self.timeline = timeline
        self.fail = fail

    async def embed_query(self, text: str) -> Any:
        self.timeline.events.append("embed start")
        await asyncio.sleep(0.05)
        if self.fail:
            raise RuntimeError("embedder crashed")
        self.timeline.events.append("embed end")
        return np.ones(4, dtype=np.float32)


class RecordingStore:
    def __init__(
        self,
        timeline: Timeline,
        *,
        sparse_error: Exception | None = None,
        error_when_cancelled: Exception | None = None,
        sparse_s: float = 0.01,
    ) -> None:
        self.sparse_s = sparse_s
        self.timeline = timeline
        self.sparse_error = sparse_error
        self.error_when_cancelled = error_when_cancelled
        self.sparse_cancelled = False

    async def require(self, collection: str) -> str:
        return collection

    async def search_dense(
        self, collection: str, vector: Any, *, limit: int, expr: str = ""
    ) -> Any:
        self.timeline.events.append("dense")
        return [hit("a", 0.9), hit("b", 0.8)]

    async def search_sparse(
        self, collection: str, query: str, *, limit: int, expr: str = ""
    ) -> Any:
        self.timeline.events.append("sparse start")
        try:
            await asyncio.sleep(self.sparse_s)
        except asyncio.CancelledError:
            self.sparse_cancelled = True
            if self.error_when_cancelled is not None:
                raise self.error_when_cancelled from None
            raise
        if self.sparse_error is not None:
            raise self.sparse_error
        self.timeline.events.append("sparse end")
        return [hit("b", -3.0), hit("c", -1.0)]


def retriever(store: RecordingStore, embedder: SlowEmbedder) -> HybridRetriever:
    return HybridRetriever(
        store=cast(ChunkStore, store),
        embedder=cast(Embedder, embedder),
        collection="kb",
        config=RetrievalConfig(top_k=3, min_dense_score=0.5),
    )


async def test_bm25_runs_while_the_question_is_embedded() -> None:
    timeline = Timeline()
    nodes = await retriever(RecordingStore(timeline), SlowEmbedder(timeline)).aretrieve(
        QueryBundle("what is b")
    )

    assert {n.node.node_id for n in nodes} == {"a", "b", "c"}
    events = timeline.events
    assert events.index("sparse end") < events.index("embed end")  # overlapped, not after
    assert events.index("embed end") < events.index("dense")


async def test_a_failed_embedding_cancels_the_bm25_search() -> None:
    timeline = Timeline()
    store = RecordingStore(timeline)
    store_search = store.search_sparse

    async def slow_sparse(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.2)  # still running when the embedder fails
        return await store_search(*args, **kwargs)

    store.search_sparse = slow_sparse  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="embedder crashed"):
        await retriever(store, SlowEmbedder(timeline, fail=True)).aretrieve(QueryBundle("q"))
    await asyncio.sleep(0.3)
    assert "sparse end" not in timeline.events


async def test_a_bm25_error_is_raised(caplog: pytest.LogCaptureFixture) -> None:
    timeline = Timeline()
    store = RecordingStore(timeline, sparse_error=ConnectionError("milvus went away"))
    with pytest.raises(ConnectionError):
        await retriever(store, SlowEmbedder(timeline)).aretrieve(QueryBundle("q"))


async def test_a_bm25_error_behind_an_embedder_error_is_not_left_unretrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeline = Timeline()
    store = RecordingStore(timeline, sparse_error=ConnectionError("milvus went away"))
    with pytest.raises(RuntimeError, match="embedder crashed"):
        await retriever(store, SlowEmbedder(timeline, fail=True)).aretrieve(QueryBundle("q"))
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text


async def test_a_bm25_search_that_fails_when_cancelled_is_not_left_unretrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a client library may turn the cancellation into its own error (pymilvus recovering a
    # connection did, in CI): the task then ends in an error nobody awaits
    timeline = Timeline()
    store = RecordingStore(
        timeline, error_when_cancelled=ConnectionError("milvus went away"), sparse_s=1.0
    )
    with pytest.raises(RuntimeError, match="embedder crashed"):
        await retriever(store, SlowEmbedder(timeline, fail=True)).aretrieve(QueryBundle("q"))
    await asyncio.sleep(0.02)  # the search task ends
    gc.collect()
    await asyncio.sleep(0)
    assert store.sparse_cancelled
    assert "never retrieved" not in caplog.text
