"""On the real embedded Milvus: which of a question's terms the collection holds at all.

The extractive answer's vocabulary gate (``ExtractiveConfig.max_unknown_*``) refuses a question
most of whose topic terms no chunk holds; it asks Milvus one single-term BM25 search per term in
one request. These tests hold that a term is known exactly when some chunk under the filter holds
it: written but not yet flushed, Korean morphemes as analyzed, and no longer once its only
document is deleted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from indexing.analysis import analyze
from indexing.pipeline import SourceDocument
from services.common.clients import DataClients, build_data_clients, build_pipeline
from tests.conftest import Servers
from tests.integration.conftest import indexing_settings

DOCUMENTS = (
    SourceDocument("leave", "제2조(연차휴가) 회사는 매년 1월 1일에 연차휴가 16일을 부여한다."),
    SourceDocument("travel", "제8조(일비) 국내 출장의 일비는 1일 50,000원으로 한다."),
    SourceDocument("kettle", "The kettle descales with citric acid every month."),
)


@pytest.fixture
async def clients(data_servers: Servers) -> AsyncIterator[DataClients]:
    clients = build_data_clients(indexing_settings(data_servers), can_create=True)
    yield clients
    await clients.aclose()


def _terms(text: str) -> list[str]:
    return analyze(text).split()


async def test_a_term_is_known_when_some_chunk_holds_it(
    clients: DataClients, data_servers: Servers, collection: str
) -> None:
    pipeline = build_pipeline(clients, indexing_settings(data_servers))
    await pipeline.ingest(collection, DOCUMENTS[:2])
    await pipeline.ingest(collection, DOCUMENTS[2:], flush=False)  # still growing
    try:
        asked = _terms("연차휴가는 며칠이고 출장 일비와 육아휴직 수당, kettle citric zebra는?")
        assert {"연차", "출장", "육아", "kettle", "zebra"} <= set(asked)
        known = await clients.store.known_terms(collection, asked)
        assert {"연차", "출장", "일비", "kettle", "citric"} <= known
        assert not known & {"육아", "수당", "zebra"}
        only_travel = await clients.store.known_terms(collection, asked, expr='doc_id == "travel"')
        assert "출장" in only_travel and "연차" not in only_travel and "kettle" not in only_travel
        assert await clients.store.known_terms(collection, []) == set()
        await pipeline.delete_document(collection, "leave")
        after = await clients.store.known_terms(collection, asked)
        assert "연차" not in after and "출장" in after
    finally:
        await pipeline.delete_collection(collection)
