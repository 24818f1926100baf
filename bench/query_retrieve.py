"""Part (b) of ``bench.query``: ``/v1/retrieve`` latency with cold and cached query
embeddings, and an in-process profile of one retrieval's stages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench._common import percentile
from bench.query_stack import COLLECTION, Stack

EMBED_CACHE_HIT_MS = 1.0


# --------------------------------------------------------------------------- (b) retrieve


def retrieve_latency(stack: Stack, questions: Sequence[str]) -> dict[str, Any]:
    """Distinct questions one at a time: cold embeddings, then the same ones again (cached).

    A question this stack embedded before (an earlier run's sample can overlap this one's) is
    served from the query-embedding cache even in the cold pass: the cold figures leave those
    requests out, and say how many there were."""
    url = f"{stack.query_url}/v1/retrieve"
    passes: dict[str, dict[str, list[float]]] = {}
    with httpx.Client(headers=stack.query_headers, timeout=60) as client:
        client.post(url, json={"collection": COLLECTION, "question": "warm up"}).raise_for_status()
        for name in ("cold_embedding", "cached_embedding"):
            client_ms, embed_ms, server_ms = [], [], []
            for question in questions:
                t0 = time.perf_counter()
                response = client.post(url, json={"collection": COLLECTION, "question": question})
                client_ms.append((time.perf_counter() - t0) * 1000)
                response.raise_for_status()
                timings = response.json()["timings_ms"]
                embed_ms.append(timings.get("embed", float("nan")))
                server_ms.append(timings.get("total", float("nan")))
            passes[name] = {"client": client_ms, "embed": embed_ms, "server": server_ms}
    return {
        name: latency_summary(p, embedded=name == "cold_embedding") for name, p in passes.items()
    }


def latency_summary(timings: dict[str, list[float]], *, embedded: bool) -> dict[str, Any]:
    """Percentiles of one pass; with ``embedded``, over the requests whose question embedding
    was computed (an embedding from the cache takes well under a millisecond)."""
    from_cache = [ms < EMBED_CACHE_HIT_MS for ms in timings["embed"]]
    keep = [not hit for hit in from_cache] if embedded else [True] * len(from_cache)
    chosen = {k: [v for v, kept in zip(values, keep, strict=True) if kept]
              for k, values in timings.items()}  # fmt: skip
    return {
        "p50_ms": percentile(chosen["client"], 50),
        "p99_ms": percentile(chosen["client"], 99),
        "server_total_p50_ms": percentile(chosen["server"], 50),
        "embed_p50_ms": percentile(chosen["embed"], 50),
        "embeddings_served_from_cache": sum(from_cache),
        "questions": len(from_cache),
        "measured": len(chosen["client"]),
    }


async def profile_retrieval(stack: Stack, questions: Sequence[str]) -> dict[str, float]:
    """One retrieval split into its stages, in this process, against the stack's Milvus.

    ``as_served`` is what :class:`HybridRetriever` does: the BM25 search starts while the
    question is being embedded (it needs no vector), the dense search once the vector is there.
    ``embed_then_both`` is the order it replaced (embed, then both searches at once)."""
    from indexing.analysis import warm_up
    from services.common.clients import build_data_clients
    from services.common.settings import QuerySettings
    from services.query_api.runtime import retrieval_config

    settings = QuerySettings(milvus={"uri": stack.milvus_uri}, log_json=False)
    config = retrieval_config(settings, settings.retrieval.top_k)
    clients = build_data_clients(settings)
    profile = _StageProfile(clients.store, clients.embedder, config)
    try:
        warm_up()
        await clients.embedder.warm_up()
        await clients.store.require(COLLECTION)
        for question in questions:
            await profile.add(question)
    finally:
        await clients.aclose()
    return {f"{stage}_p50_ms": percentile(v, 50) for stage, v in profile.stages.items()}


@dataclass
class _StageProfile:
    """Milliseconds per retrieval stage, one sample per question."""

    store: Any
    embedder: Any
    config: Any
    stages: dict[str, list[float]] = field(default_factory=dict)

    async def timed(self, stage: str, work: Any) -> Any:
        started = time.perf_counter()
        result = await work
        self.stages.setdefault(stage, []).append((time.perf_counter() - started) * 1000)
        return result

    async def add(self, question: str) -> None:
        from indexing.analysis import analyze
        from query_engine.retrieval import fuse

        store, embedder, limit, timed = (
            self.store,
            self.embedder,
            self.config.candidates,
            self.timed,
        )

        async def embed_then_dense(question: str) -> Any:
            vector = (await embedder.embed_query(question)).tolist()
            return await store.search_dense(COLLECTION, vector, limit=limit)

        async def analyzed(question: str) -> str:
            return analyze(question)

        async def fused(dense: Any, sparse: Any) -> Any:
            return fuse(dense, sparse, self.config)

        vector = (await timed("embed", embedder.embed_query(question))).tolist()
        terms = await timed("analyze", analyzed(question))
        dense = await timed("dense_search", store.search_dense(COLLECTION, vector, limit=limit))
        sparse = await timed("bm25_search", store.search_sparse(COLLECTION, terms, limit=limit))
        await timed("fuse", fused(dense, sparse))
        started = time.perf_counter()
        await embedder.embed_query(question)
        await asyncio.gather(
            store.search_dense(COLLECTION, vector, limit=limit),
            store.search_sparse(COLLECTION, analyze(question), limit=limit),
        )
        self.stages.setdefault("embed_then_both", []).append((time.perf_counter() - started) * 1000)
        await timed(
            "as_served",
            asyncio.gather(
                embed_then_dense(question),
                store.search_sparse(COLLECTION, analyze(question), limit=limit),
            ),
        )
