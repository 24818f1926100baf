"""On the real embedded Milvus, a chunk's BM25 score does not depend on which flush wrote it.

milvus-lite seals a segment at every flush and, left alone, scores BM25 with each segment's own
statistics; the server docqa starts (``deploy.milvus_lite_server``) scores with the collection's.
The same documents are ingested once in one call, and once over four calls of which the last is
not flushed (so its rows are still growing): every query must score every chunk the same in both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from indexing.analysis import analyze
from indexing.pipeline import SourceDocument
from services.common.clients import DataClients, build_data_clients, build_pipeline
from tests.conftest import Servers
from tests.integration.conftest import indexing_settings

TOPICS = (
    ("kettle", "The kettle descales with citric acid every month; hard water needs it weekly."),
    ("grinder", "The grinder's burrs are brushed weekly and replaced after 400 kilograms."),
    ("scale", "The scale reads to 0.1 grams and tares automatically when a cup is placed."),
    ("filter", "Paper filters are rinsed with hot water before brewing to remove the taste."),
    ("milk", "Milk is steamed to 60 degrees; above 70 degrees its sweetness is lost."),
    ("water", "Brewing water holds 75 to 150 milligrams of minerals per litre."),
)
QUESTIONS = (
    "how often is the kettle descaled with citric acid",
    "when are grinder burrs replaced",
    "hot water rinse for paper filters",
    "milk temperature degrees",
    "물 미네랄 함량 water minerals per litre",
)


def _documents() -> list[SourceDocument]:
    """Topics repeat with different frequencies, so terms differ in how common they are."""
    documents = []
    for i in range(48):
        name, text = TOPICS[(i * i) % len(TOPICS)] if i % 3 else TOPICS[i % 2]
        documents.append(SourceDocument(f"{name}-{i}", f"Note {i}. {text} Entry {i * 7}."))
    return documents


@pytest.fixture
async def clients(data_servers: Servers) -> AsyncIterator[DataClients]:
    clients = build_data_clients(indexing_settings(data_servers), can_create=True)
    yield clients
    await clients.aclose()


async def _bm25_scores(clients: DataClients, collection: str, question: str) -> dict[str, float]:
    hits = await clients.store.search_sparse(collection, analyze(question), limit=100)
    return {hit.chunk_id: round(abs(hit.score), 4) for hit in hits}


async def test_scores_do_not_depend_on_segments(
    clients: DataClients, data_servers: Servers, collection: str
) -> None:
    pipeline = build_pipeline(clients, indexing_settings(data_servers))
    documents = _documents()
    one_flush, four_calls = f"{collection}_one", f"{collection}_four"
    await pipeline.ingest(one_flush, documents)
    for start, stop in ((0, 20), (20, 30), (30, 42)):
        await pipeline.ingest(four_calls, documents[start:stop])
    await pipeline.ingest(four_calls, documents[42:], flush=False)
    try:
        for question in QUESTIONS:
            expected = await _bm25_scores(clients, one_flush, question)
            assert expected, question
            assert await _bm25_scores(clients, four_calls, question) == expected, question
    finally:
        await pipeline.delete_collection(one_flush)
        await pipeline.delete_collection(four_calls)
