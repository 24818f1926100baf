"""The query service: FastAPI app and the clients it reads through."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from query_engine.versions import VersionWatcher
from services.common.app import create_app
from services.common.clients import build_data_clients, warm_up_models
from services.common.health import DependencyCheck
from services.common.llm_pool import build_pooled_llm
from services.common.settings import QuerySettings
from services.query_api.faq_routes import build_faq_store
from services.query_api.faq_routes import router as faq_router
from services.query_api.fast_path import CachedQueryFastPath
from services.query_api.openai_routes import router as openai_router
from services.query_api.routes import router
from services.query_api.wiring import install_answering


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: QuerySettings = app.state.settings
    clients = build_data_clients(settings)
    app.state.store = clients.store
    app.state.embedder = clients.embedder
    app.state.redis = clients.redis
    # the vLLM pool: discovers and probes the servers while the models load
    llm = build_pooled_llm(settings.llm)
    app.state.llm = llm
    try:
        await asyncio.gather(llm.pool.start(), warm_up_models(clients.embedder))
    except BaseException:
        await llm.pool.aclose()  # its watcher tasks must not outlive a failed start
        raise
    # local copies of index and FAQ versions, so a cache hit needs no Redis round trip
    versions = VersionWatcher(
        clients.redis,
        prefix=settings.redis.key_prefix,
        max_age_s=settings.cache.version_max_age_s,
    )
    versions.start()
    app.state.versions = versions
    install_answering(app)
    # after install_answering: the FAQ embeds through the same cached embedder as retrieval
    app.state.faq = build_faq_store(settings, clients.redis, app.state.embedder, versions)
    app.state.readiness_checks = (
        DependencyCheck("milvus", clients.store.ping),
        DependencyCheck("redis", clients.redis.ping, required=False),
        # ready when at least one vLLM server is healthy and serves the model
        DependencyCheck("llm", llm.pool.check_ready),
    )
    try:
        yield
    finally:
        await versions.aclose()
        await llm.pool.aclose()
        await clients.aclose()


def build_app(settings: QuerySettings | None = None) -> FastAPI:
    return create_app(
        title="docqa query API",
        service="query",
        settings=settings or QuerySettings(),
        lifespan=lifespan,
        routers=[router, openai_router, faq_router],
        inner_middleware=[CachedQueryFastPath],
    )
