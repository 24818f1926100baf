"""Query HTTP API: thin routes that validate input and call ``query_engine``."""

from __future__ import annotations

import time
from collections.abc import Sequence

from fastapi import APIRouter, Depends
from llama_index.core.base.response.schema import Response
from llama_index.core.schema import NodeWithScore, QueryBundle

from indexing import schema
from indexing.errors import InvalidRequest
from query_engine.engine import DocqaQueryEngine, EngineConfig
from query_engine.retrieval import HybridRetriever, RetrievalConfig
from services.common.auth import Scope, require_scope
from services.common.metrics import QUERY_STAGE_SECONDS
from services.common.settings import QuerySettings
from services.query_api.deps import EmbedderDep, LLMDep, SettingsDep, StoreDep
from services.query_api.schemas import Citation, Grounding, QueryIn, QueryOut, RetrieveOut

router = APIRouter(prefix="/v1", tags=["query"], dependencies=[Depends(require_scope(Scope.QUERY))])


def _validated(body: QueryIn, settings: QuerySettings) -> int:
    schema.validate_collection_name(body.collection)
    if len(body.question) > settings.limits.max_question_chars:
        raise InvalidRequest(
            f"the question has {len(body.question)} characters; the limit is "
            f"{settings.limits.max_question_chars}"
        )
    top_k = body.top_k or settings.retrieval.top_k
    if top_k > settings.limits.max_top_k:
        raise InvalidRequest(f"top_k may be at most {settings.limits.max_top_k}")
    return top_k


def _retriever(
    body: QueryIn, top_k: int, settings: QuerySettings, store: StoreDep, embedder: EmbedderDep
) -> HybridRetriever:
    r = settings.retrieval
    config = RetrievalConfig(
        top_k=top_k,
        candidates=max(r.candidates, top_k),
        rrf_k=r.rrf_k,
        dense_weight=r.dense_weight,
        sparse_weight=r.sparse_weight,
        min_dense_score=r.min_dense_score,
    )
    return HybridRetriever(
        store=store,
        embedder=embedder,
        collection=body.collection,
        config=config,
        filters=body.filters,
    )


def citations_from(nodes: Sequence[NodeWithScore], cited: set[int] | None = None) -> list[Citation]:
    citations = []
    for n, node in enumerate(nodes, start=1):
        meta = node.node.metadata
        citations.append(
            Citation(
                n=n,
                doc_id=str(meta.get("doc_id") or ""),
                title=str(meta.get("title") or ""),
                section=str(meta.get("section") or ""),
                page=meta.get("page"),
                char_start=meta.get("char_start"),
                char_end=meta.get("char_end"),
                score=round(float(node.score or 0.0), 6),
                dense_score=meta.get("dense_score"),
                bm25_score=meta.get("bm25_score"),
                cited=bool(cited and n in cited),
                text=node.node.get_content(),
            )
        )
    return citations


@router.post(
    "/query", response_model=QueryOut, summary="Answer a question from a collection, with citations"
)
async def query(
    body: QueryIn, settings: SettingsDep, store: StoreDep, embedder: EmbedderDep, llm: LLMDep
) -> QueryOut:
    top_k = _validated(body, settings)
    engine = DocqaQueryEngine(
        retriever=_retriever(body, top_k, settings, store, embedder),
        llm=llm,
        config=EngineConfig(
            context_window=settings.llm.context_window,
            max_answer_tokens=settings.llm.max_answer_tokens,
            grounding_policy=settings.grounding_policy,
        ),
    )
    response = await engine.aquery(body.question)
    assert isinstance(response, Response)  # the engine never streams through aquery
    metadata = response.metadata or {}
    timings = metadata.get("timings_ms", {})
    for stage, ms in timings.items():
        QUERY_STAGE_SECONDS.labels(stage).observe(ms / 1000)
    return QueryOut(
        answer=str(response.response),
        citations=citations_from(response.source_nodes, set(metadata.get("cited", []))),
        grounding=Grounding(**metadata["grounding"]),
        not_found=bool(metadata.get("not_found")),
        timings_ms=timings,
    )


@router.post(
    "/retrieve", response_model=RetrieveOut, summary="Ranked sources for a question, no generation"
)
async def retrieve(
    body: QueryIn, settings: SettingsDep, store: StoreDep, embedder: EmbedderDep
) -> RetrieveOut:
    top_k = _validated(body, settings)
    started = time.perf_counter()
    retriever = _retriever(body, top_k, settings, store, embedder)
    nodes = await retriever.aretrieve(QueryBundle(body.question))
    total = (time.perf_counter() - started) * 1000
    QUERY_STAGE_SECONDS.labels("retrieve").observe(total / 1000)
    return RetrieveOut(
        citations=citations_from(nodes),
        timings_ms={"embed": round(retriever.trace.embed_ms, 2), "total": round(total, 2)},
    )
