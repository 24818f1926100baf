"""Parent-section context against real Milvus: a hit grows with the neighbouring chunks of its
own section of its own document, within the budget, and hits that touch become one source."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from indexing.pipeline import SourceDocument
from query_engine.prompts import estimate_llm_tokens
from query_engine.retrieval import HybridRetriever, RetrievalConfig
from services.common.clients import DataClients, build_data_clients, build_pipeline
from tests.conftest import Servers
from tests.integration.conftest import indexing_settings

STEPS = [
    "Fill the tank with fresh water up to the line marked MAX.",
    "Insert the descaling tablet into the tray under the steam wand.",
    "Run the rinse program twice and discard the water each time.",
    "Set the dial to the Cleaning position and wait for the amber light.",
    "Press the start button; the cycle takes about twenty five minutes.",
    "Wipe the drip tray and the steam wand with a soft cloth afterwards.",
]
WARRANTY = "The warranty covers the pump for three years from the date of purchase."
MANUAL = SourceDocument(
    "espresso-manual",
    "# Descaling\n\n" + "\n\n".join(STEPS) + "\n\n# Warranty\n\n" + WARRANTY,
    title="Espresso machine manual",
    kind="markdown",
)
OTHER = SourceDocument(
    "kettle-manual", "# Descaling\n\nDescale the kettle every month with citric acid.",
    title="Kettle manual", kind="markdown",
)  # fmt: skip
QUESTION = "How long does the descaling cycle take after pressing start?"


@pytest.fixture
async def clients(data_servers: Servers, collection: str) -> AsyncIterator[DataClients]:
    # chunks of about one step each, so the section holds several of them
    settings = indexing_settings(data_servers, chunk_max_tokens=32)
    clients = build_data_clients(settings, can_create=True)
    await build_pipeline(clients, settings).ingest(collection, [MANUAL, OTHER])
    yield clients
    await clients.aclose()


def retriever(clients: DataClients, collection: str, parent_tokens: int) -> HybridRetriever:
    config = RetrievalConfig(top_k=3, candidates=20, parent_tokens=parent_tokens)
    return HybridRetriever(
        store=clients.store, embedder=clients.embedder, collection=collection, config=config
    )


async def test_a_hit_grows_within_its_section_document_and_budget(
    clients: DataClients, collection: str
) -> None:
    plain = await retriever(clients, collection, 0).aretrieve(QUESTION)
    assert "twenty five minutes" in plain[0].node.get_content()
    assert STEPS[3] not in plain[0].node.get_content()  # a chunk is about one step
    grown = await retriever(clients, collection, 120).aretrieve(QUESTION)
    best = grown[0].node
    assert "twenty five minutes" in best.get_content()
    assert STEPS[3] in best.get_content() or STEPS[5] in best.get_content()  # its neighbours
    assert WARRANTY not in best.get_content()  # another section
    assert best.metadata["doc_id"] == "espresso-manual"
    assert estimate_llm_tokens(best.get_content()) <= 120
    start, end = best.metadata["char_start"], best.metadata["char_end"]
    assert MANUAL.text[start:end] == best.get_content()  # one span of the document, said once
    # no chunk is quoted twice, and the other document's source stays its own
    texts = [n.node.get_content() for n in grown]
    for step in STEPS:
        assert sum(step in text for text in texts) <= 1
    for node in grown:
        if node.node.metadata["doc_id"] == "kettle-manual":
            assert "espresso" not in node.node.get_content().lower()
