"""The rerank stage: the reply shapes it reads, the fused order it keeps when the endpoint fails
or is slow, and the cool-down after a failure. The endpoint is an httpx transport of the test's
own (the seam is HTTP); tests/integration/test_rerank_vllm.py uses a real vLLM server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, cast

import httpx
import numpy as np
import pytest
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from prometheus_client import REGISTRY
from pydantic import ValidationError

from indexing import schema
from indexing.embedding import Embedder
from indexing.store import ChunkStore, Hit
from query_engine.rerank import HttpReranker, RerankConfig
from query_engine.retrieval import HybridRetriever, RetrievalConfig
from services.common.metrics import record_rerank
from services.common.settings import QuerySettings
from services.query_api.runtime import build_reranker, retrieval_fingerprint

pytestmark = pytest.mark.unit

URL = "http://reranker.test/v1/rerank"


def nodes(*texts: str) -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(id_=t, text=t, metadata={"title": "T"}), score=1.0 - i / 10)
        for i, t in enumerate(texts)
    ]


class Endpoint:
    """Answers each request with ``reply(body)``; remembers the bodies."""

    def __init__(self, reply: Callable[[dict[str, Any]], httpx.Response]) -> None:
        self.reply = reply
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        return self.reply(body)


def by_length(body: dict[str, Any]) -> httpx.Response:
    """Cohere shape, longest passage most relevant, results best first (as vLLM sends them)."""
    scored = sorted(enumerate(body["documents"]), key=lambda d: -len(d[1]))
    results = [{"index": i, "relevance_score": float(len(d))} for i, d in scored]
    return httpx.Response(200, json={"results": results})


def reranker(endpoint: Endpoint, **config: Any) -> HttpReranker:
    client = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    return HttpReranker(RerankConfig(url=URL, model="m", **config), client=client)


async def test_the_first_candidates_are_reordered_by_the_reranker_scores() -> None:
    endpoint = Endpoint(by_length)
    ranked, trace = await reranker(endpoint, candidates=3).rerank(
        "q", nodes("a", "ccc", "bb", "dddd")
    )

    assert [n.node.node_id for n in ranked] == ["ccc", "bb", "a", "dddd"]  # the 4th not sent
    assert [n.score for n in ranked[:3]] == [5.0, 4.0, 3.0]  # len("T\n" + text)
    assert trace.status == "reranked" and trace.candidates == 3
    assert endpoint.bodies[0] == {
        "model": "m", "query": "q", "documents": ["T\na", "T\nccc", "T\nbb"], "top_n": 3,
    }  # fmt: skip


async def test_the_tei_shape() -> None:
    def tei(body: dict[str, Any]) -> httpx.Response:
        assert set(body) == {"query", "texts", "truncate"}
        return httpx.Response(200, json=[{"index": 1, "score": 0.9}, {"index": 0, "score": 0.1}])

    ranked, trace = await reranker(Endpoint(tei), api="tei").rerank("q", nodes("a", "b"))

    assert [n.node.node_id for n in ranked] == ["b", "a"]
    assert trace.status == "reranked"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (lambda b: httpx.Response(500, text="boom"), "HTTP 500"),
        (lambda b: httpx.Response(200, json={"results": [{"index": 0, "relevance_score": 1}]}),
         "have no score"),
        (lambda b: httpx.Response(200, json={"results": [{"index": 7, "relevance_score": 1}]}),
         "unreadable"),
        (lambda b: httpx.Response(200, json={"results": [{"index": -1, "relevance_score": 1}]}),
         "unreadable"),
        (lambda b: httpx.Response(200, text="not json"), "unreadable"),
        (lambda b: httpx.Response(200, json={"results": [
            {"index": 0, "relevance_score": "NaN"}, {"index": 1, "relevance_score": 1},
            {"index": 2, "relevance_score": 2}]}), "unreadable"),
    ],
)  # fmt: skip
async def test_a_failed_call_keeps_the_fused_order(
    reply: Callable[[dict[str, Any]], httpx.Response], reason: str
) -> None:
    fused = nodes("a", "b", "c")
    ranked, trace = await reranker(Endpoint(reply)).rerank("q", fused)

    assert ranked == fused
    assert trace.status.startswith("failed") and reason in trace.status


async def test_a_slow_endpoint_costs_the_budget_then_the_stage_rests() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={"results": []})

    client = httpx.AsyncClient(transport=httpx.MockTransport(slow))
    stage = HttpReranker(RerankConfig(url=URL, timeout_s=0.05, cooldown_s=60), client=client)
    fused = nodes("a", "b")

    ranked, trace = await stage.rerank("q", fused)
    assert ranked == fused and "no reply within 0.05 s" in trace.status
    assert 40 <= trace.ms < 1000
    ranked, trace = await stage.rerank("q", fused)  # no second wait while it rests
    assert ranked == fused and trace.status == "cooling down" and trace.ms == 0


async def test_the_stage_comes_back_after_its_cool_down() -> None:
    calls = []

    def flaky(body: dict[str, Any]) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503) if len(calls) == 1 else by_length(body)

    stage = reranker(Endpoint(flaky), cooldown_s=0.05)
    assert (await stage.rerank("q", nodes("a", "bb")))[1].status.startswith("failed")
    await asyncio.sleep(0.06)
    ranked, trace = await stage.rerank("q", nodes("a", "bb"))
    assert trace.status == "reranked" and ranked[0].node.node_id == "bb"


async def test_one_candidate_is_not_sent() -> None:
    endpoint = Endpoint(by_length)
    ranked, trace = await reranker(endpoint).rerank("q", nodes("a"))
    assert [n.node.node_id for n in ranked] == ["a"]
    assert trace.status == "too few candidates" and endpoint.bodies == []


async def test_long_passages_are_cut_and_the_key_is_sent() -> None:
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return by_length(json.loads(request.content))

    config = RerankConfig(url=URL, api_key="k1", max_chars=5)
    stage = HttpReranker(config, client=httpx.AsyncClient(transport=httpx.MockTransport(record)))
    await stage.rerank("q", nodes("x" * 50, "y"))
    assert seen[0].headers["Authorization"] == "Bearer k1"
    assert [len(d) for d in json.loads(seen[0].content)["documents"]] == [5, 3]


class TwoSidedStore:
    """Dense and BM25 candidates of our own; the fused order is a, b, c, d."""

    async def require(self, collection: str) -> str:
        return collection

    async def search_dense(
        self, collection: str, vector: Any, *, limit: int, expr: str = ""
    ) -> list[Hit]:
        return [hit("a", 0.95), hit("b", 0.9), hit("c", 0.85), hit("dddd", 0.84)][:limit]

    async def search_sparse(
        self, collection: str, query: str, *, limit: int, expr: str = ""
    ) -> list[Hit]:
        return [hit("a", 9.0), hit("b", 8.0), hit("c", 7.0), hit("dddd", 1.0)][:limit]


class OnesEmbedder:
    async def embed_query(self, text: str) -> Any:
        return np.ones(4, dtype=np.float32)


def hit(chunk_id: str, score: float) -> Hit:
    entity = {schema.CHUNK_ID: chunk_id, schema.DOC_ID: chunk_id, schema.TEXT: chunk_id}
    return Hit(chunk_id=chunk_id, score=score, entity=entity)


async def test_the_retriever_returns_the_reranked_order_and_says_so() -> None:
    stage = reranker(Endpoint(by_length), candidates=4)
    retriever = HybridRetriever(
        store=cast(ChunkStore, TwoSidedStore()),
        embedder=cast(Embedder, OnesEmbedder()),
        collection="kb",
        config=RetrievalConfig(top_k=2, min_dense_score=0.5),
        reranker=stage,
    )
    found = await retriever.aretrieve(QueryBundle("which is longest"))

    assert [n.node.node_id for n in found] == ["dddd", "a"]  # the fused 4th, first now
    assert retriever.trace.rerank.status == "reranked"
    assert retriever.trace.rerank.candidates == 4  # read past top_k to give it a choice


def test_the_stage_is_configured_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_RERANK_URL", "http://reranker:8000/v1/rerank")
    monkeypatch.setenv("DOCQA_RERANK_TIMEOUT_S", "0.3")
    monkeypatch.setenv("DOCQA_RERANK_API", "tei")
    settings = QuerySettings()

    stage = build_reranker(settings.rerank)
    assert stage is not None
    assert (stage.config.url, stage.config.timeout_s, stage.config.api) == (
        "http://reranker:8000/v1/rerank", 0.3, "tei",
    )  # fmt: skip
    monkeypatch.delenv("DOCQA_RERANK_URL")
    assert build_reranker(QuerySettings().rerank) is None  # off by default


def test_a_reranker_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValidationError, match="DOCQA_RERANK_URL"):
        QuerySettings(rerank={"url": "file:///etc/passwd"})


def test_answers_cached_under_one_reranker_are_not_served_under_another() -> None:
    plain = retrieval_fingerprint(QuerySettings())
    reranked = retrieval_fingerprint(QuerySettings(rerank={"url": "http://r/v1/rerank"}))
    other_key = retrieval_fingerprint(
        QuerySettings(rerank={"url": "http://r/v1/rerank", "api_key": "k2"})
    )
    assert plain != reranked
    assert reranked == other_key  # the key changes who may call, not the ranking


async def test_every_question_is_reported_to_the_observer() -> None:
    seen: list[tuple[str, float]] = []
    client = httpx.AsyncClient(transport=httpx.MockTransport(Endpoint(by_length)))
    stage = HttpReranker(RerankConfig(url=URL), client=client, observe=lambda *r: seen.append(r))

    await stage.rerank("q", nodes("a", "bb"))
    await stage.rerank("q", nodes("a"))

    assert [status for status, _ in seen] == ["reranked", "too few candidates"]
    assert seen[0][1] > 0 and seen[1][1] == 0


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("reranked", "reranked"), ("failed: HTTP 500: boom", "failed"),
     ("cooling down", "cooling_down"), ("too few candidates", "too_few")],
)  # fmt: skip
def test_the_metric_counts_each_outcome(status: str, outcome: str) -> None:
    def count() -> float:
        return REGISTRY.get_sample_value("docqa_rerank_total", {"outcome": outcome}) or 0.0

    before = count()
    record_rerank(status, 12.0)
    assert count() == before + 1
