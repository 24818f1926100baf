"""The pipeline's group writes on real Milvus and Redis: a document Milvus refuses fails alone,
and documents of one call are embedded and committed across groups in input order."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from indexing import schema
from indexing.pipeline import DocumentOutcome, SourceDocument
from services.common.clients import DataClients, build_data_clients, build_pipeline
from tests.conftest import Servers
from tests.integration.conftest import indexing_settings


@pytest.fixture
async def clients(data_servers: Servers) -> AsyncIterator[DataClients]:
    clients = build_data_clients(indexing_settings(data_servers), can_create=True)
    yield clients
    await clients.aclose()


CORRECTED = "Note 4 was corrected: it reads 69."


def note(i: int, title: str = "") -> SourceDocument:
    return SourceDocument(f"note-{i}", f"Note {i} records reading {i * 17}.", title=title)


async def test_a_document_milvus_refuses_fails_alone(
    clients: DataClients, data_servers: Servers, collection: str
) -> None:
    pipeline = build_pipeline(clients, indexing_settings(data_servers))
    # the title goes into every chunk's BM25 input, which Milvus caps at 65,535 bytes
    oversized = note(1, title="heading " * 9000)
    outcomes = await pipeline.ingest(collection, [note(0), oversized, note(2)])
    assert [o.outcome for o in outcomes] == ["indexed", "failed", "indexed"]
    assert outcomes[1].error and "Milvus refused" in outcomes[1].error
    assert await clients.store.document_chunks(collection, "note-1") == []
    assert len(await clients.store.document_chunks(collection, "note-2")) == 1


async def test_outcomes_and_progress_follow_the_input_across_groups(
    clients: DataClients, data_servers: Servers, collection: str
) -> None:
    pipeline = build_pipeline(clients, indexing_settings(data_servers))
    documents = [note(i) for i in range(150)]  # three groups of at most 64
    documents.insert(70, SourceDocument("", "no id"))
    # repeated ids: the later copy is planned only once the first is committed
    documents.append(note(3))
    documents.append(SourceDocument("note-4", CORRECTED))
    progress: list[str] = []

    async def on_document(outcome: DocumentOutcome) -> None:
        progress.append(outcome.doc_id)

    outcomes = await pipeline.ingest(collection, documents, on_document=on_document)
    assert [o.doc_id for o in outcomes] == progress == [d.doc_id for d in documents]
    assert [o.outcome for o in outcomes[-2:]] == ["unchanged", "indexed"]
    assert [o.outcome for o in outcomes].count("indexed") == 151
    assert outcomes[70].outcome == "failed"
    stored = await clients.store.documents_chunks(collection, [f"note-{i}" for i in range(150)])
    assert sum(len(chunks) for chunks in stored.values()) == 150
    # the corrected copy replaced the first one: its chunk alone, nothing stale
    assert [c.chunk_id for c in stored["note-4"]] == [schema.chunk_id("note-4", 0, CORRECTED)]
