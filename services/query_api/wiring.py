"""Settings → the query-side domain objects (retriever, engine, caches, sessions, answerer)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from llama_index.core.llms import LLM

from indexing.embedding import Embedder
from indexing.generations import CurrentGenerationFilter
from indexing.store import ChunkStore
from query_engine.answering import Answerer, AnswererConfig, AnswerRequest
from query_engine.cache import AnswerCache, CachedQueryEmbedder
from query_engine.engine import DocqaQueryEngine, EngineConfig
from query_engine.faq import FaqStore
from query_engine.memory import SessionStore
from query_engine.retrieval import HybridRetriever, RetrievalConfig
from services.common.settings import QuerySettings


def retrieval_config(settings: QuerySettings, top_k: int) -> RetrievalConfig:
    r = settings.retrieval
    return RetrievalConfig(
        top_k=top_k,
        candidates=max(r.candidates, top_k),
        fusion=r.fusion,
        rrf_k=r.rrf_k,
        dense_weight=r.dense_weight,
        sparse_weight=r.sparse_weight,
        min_dense_score=r.min_dense_score,
    )


def build_retriever(
    app: FastAPI, collection: str, top_k: int, filters: Mapping[str, Any]
) -> HybridRetriever:
    settings: QuerySettings = app.state.settings
    store: ChunkStore = app.state.store
    embedder: Embedder = app.state.embedder
    return HybridRetriever(
        store=store,
        embedder=embedder,
        collection=collection,
        config=retrieval_config(settings, top_k),
        filters=filters,
        generations=app.state.generations,
    )


def install_answering(app: FastAPI) -> None:
    """Wrap the embedder with its cache and put an :class:`Answerer` on ``app.state``.

    Called at the end of the lifespan's start-up, once the clients and the LLM exist."""
    settings: QuerySettings = app.state.settings
    redis = app.state.redis
    prefix = settings.redis.key_prefix
    embedder = app.state.embedder
    if isinstance(embedder, CachedQueryEmbedder):  # installed again (a new LLM): keep one cache
        embedder = embedder.inner
    app.state.embedder = CachedQueryEmbedder(
        embedder,
        redis,
        prefix=prefix,
        model=settings.embedder.model,
        ttl_s=settings.cache.embedding_ttl_s,
    )
    cache = (
        AnswerCache(
            redis,
            prefix=prefix,
            ttl_s=settings.cache.answer_ttl_s,
            lock_ttl_s=settings.cache.coalesce_wait_s,
            versions=getattr(app.state, "versions", None),
            hot_entries=settings.cache.hot_entries,
        )
        if settings.cache.enabled
        else None
    )
    sessions = SessionStore(
        redis,
        prefix=prefix,
        ttl_s=settings.sessions.ttl_s,
        max_history_tokens=settings.sessions.max_history_tokens,
        max_turns=settings.sessions.max_turns,
    )

    def engine_for(request: AnswerRequest, llm: LLM) -> DocqaQueryEngine:
        return DocqaQueryEngine(
            retriever=build_retriever(app, request.collection, request.top_k, request.filters),
            llm=llm,
            config=EngineConfig(
                context_window=settings.llm.context_window,
                max_answer_tokens=settings.llm.max_answer_tokens,
                grounding_policy=settings.grounding_policy,
            ),
        )

    async def faq_lookup(collection: str, question: str) -> dict[str, Any] | None:
        faq: FaqStore | None = getattr(app.state, "faq", None)  # built after this, in lifespan
        return await faq.lookup(collection, question) if faq is not None else None

    # a document being replaced shows readers exactly one generation of its chunks
    app.state.generations = CurrentGenerationFilter(redis, prefix)
    app.state.sessions = sessions
    app.state.answerer = Answerer(
        config=AnswererConfig(
            model=settings.llm.model,
            grounding_policy=settings.grounding_policy,
            max_answer_tokens=settings.llm.max_answer_tokens,
            retrieval_fingerprint=json.dumps(settings.retrieval.model_dump(), sort_keys=True),
            condense_timeout_s=settings.sessions.condense_timeout_s,
        ),
        llm=app.state.llm,
        engine_for=engine_for,
        answer_cache=cache,
        sessions=sessions,
        faq=faq_lookup,
    )
