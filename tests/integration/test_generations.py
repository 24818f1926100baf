"""While a changed document is replaced, a retrieval sees exactly one of its generations.

The pipeline is held (through its commit hook) at the two moments where Milvus holds both the
old and the new chunks: after the new chunks are written, and after the new generation is
recorded but before the old chunks are deleted. Real Milvus, real Redis, real embedder.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from redis.asyncio import Redis

from deploy import processes
from indexing.generations import CurrentGenerationFilter
from indexing.pipeline import CommitStage, IngestionPipeline, SourceDocument
from query_engine.retrieval import HybridRetriever, RetrievalConfig
from services.common.clients import DataClients, build_data_clients, build_pipeline
from tests.conftest import Servers
from tests.integration.conftest import indexing_settings

PREFIX = "gen-" + uuid.uuid4().hex[:8]
QUESTION = "How often should the grinder burrs be cleaned?"


def guide(marker: str, paragraphs: int) -> SourceDocument:
    """A document whose every chunk carries ``marker``; the generations differ in chunk count."""
    body = "\n\n".join(
        f"{marker} Section {i}. Clean the grinder burrs with the brush every {i + 2} weeks, "
        "and wipe the hopper so old coffee oils do not turn rancid."
        for i in range(paragraphs)
    )
    return SourceDocument("grinder", body, title="Grinder care", kind="markdown")


OTHER = SourceDocument("kettle", "Descale the kettle every month with citric acid.", title="Kettle")


@pytest.fixture
async def clients(data_servers: Servers) -> AsyncIterator[DataClients]:
    settings = indexing_settings(data_servers, redis={"url": data_servers.redis_url})
    clients = build_data_clients(settings, can_create=True)
    yield clients
    await clients.aclose()


def retriever(clients: DataClients, collection: str, redis: Redis | None) -> HybridRetriever:
    return HybridRetriever(
        store=clients.store,
        embedder=clients.embedder,
        collection=collection,
        config=RetrievalConfig(top_k=20, candidates=20),
        generations=CurrentGenerationFilter(redis, PREFIX) if redis is not None else None,
    )


async def markers(r: HybridRetriever) -> set[str]:
    """Which generations of the grinder document a retrieval returns."""
    nodes = await r.aretrieve(QUESTION)
    texts = [n.node.get_content() for n in nodes if n.node.metadata["doc_id"] == "grinder"]
    assert texts, "the grinder document must be found"
    return {text.split()[0] for text in texts}


def pipeline_for(clients: DataClients, data_servers: Servers) -> IngestionPipeline:
    settings = indexing_settings(
        data_servers, redis={"url": data_servers.redis_url, "key_prefix": PREFIX}
    )
    return build_pipeline(clients, settings)


async def test_a_replacement_is_seen_as_one_generation(
    clients: DataClients, data_servers: Servers, collection: str
) -> None:
    pipeline = pipeline_for(clients, data_servers)
    await pipeline.ingest(collection, [guide("OLDGEN", 3), OTHER])
    filtered = retriever(clients, collection, clients.redis)
    unfiltered = retriever(clients, collection, None)
    # a Redis that is not there: the filter must still show one generation
    dead_redis = Redis.from_url(f"redis://127.0.0.1:{processes.free_port()}/0")
    without_redis = retriever(clients, collection, dead_redis)
    seen: dict[str, dict[str, set[str]]] = {}

    async def hold(stage: CommitStage, _: str, doc_ids: Sequence[str]) -> None:
        assert list(doc_ids) == ["grinder"]
        seen[stage] = {
            "filtered": await markers(filtered),
            "unfiltered": await markers(unfiltered),
            "without_redis": await markers(without_redis),
        }

    pipeline.commit_hook = hold
    try:
        outcomes = await pipeline.ingest(collection, [guide("NEWGEN", 4), OTHER])
    finally:
        await dead_redis.aclose()
    assert [o.outcome for o in outcomes] == ["indexed", "unchanged"]

    # both generations are in Milvus at both moments: the window exists ...
    assert seen["written"]["unfiltered"] == seen["committed"]["unfiltered"] == {"OLDGEN", "NEWGEN"}
    # ... and readers see the old one until the commit point, the new one from then on
    assert seen["written"]["filtered"] == {"OLDGEN"}
    assert seen["committed"]["filtered"] == {"NEWGEN"}
    assert len(seen["written"]["without_redis"]) == len(seen["committed"]["without_redis"]) == 1
    assert await markers(filtered) == await markers(unfiltered) == {"NEWGEN"}


async def test_deleting_a_document_forgets_its_generation(
    clients: DataClients, data_servers: Servers, collection: str
) -> None:
    pipeline = pipeline_for(clients, data_servers)
    await pipeline.ingest(collection, [guide("OLDGEN", 1), OTHER])
    key = f"{PREFIX}:generation:{collection}"
    assert await clients.redis.hexists(key, "grinder")
    assert await pipeline.delete_document(collection, "grinder") > 0
    assert not await clients.redis.hexists(key, "grinder")
    await pipeline.delete_collection(collection)
    assert not await clients.redis.exists(key)
