"""The query service: FastAPI app and the clients it reads through."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from query_engine.llm.adapter import LLMEndpointConfig, build_openai_like, endpoint_serves_model
from services.common.app import create_app
from services.common.clients import build_data_clients, warm_up_models
from services.common.health import DependencyCheck
from services.common.settings import LLMSettings, QuerySettings
from services.query_api.routes import router


def llm_config(settings: LLMSettings) -> LLMEndpointConfig:
    return LLMEndpointConfig(
        base_url=settings.endpoints[0],
        model=settings.model,
        api_key=settings.api_key.get_secret_value(),
        context_window=settings.context_window,
        max_answer_tokens=settings.max_answer_tokens,
        temperature=settings.temperature,
        request_timeout_s=settings.request_timeout_s,
    )


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: QuerySettings = app.state.settings
    clients = build_data_clients(settings)
    probe = httpx.AsyncClient(timeout=settings.llm.connect_timeout_s)
    app.state.store = clients.store
    app.state.embedder = clients.embedder
    app.state.redis = clients.redis
    app.state.llm = build_openai_like(llm_config(settings.llm))

    async def llm_ready() -> None:
        await endpoint_serves_model(probe, settings.llm.endpoints[0], settings.llm.model)

    await warm_up_models(clients.embedder)
    app.state.readiness_checks = (
        DependencyCheck("milvus", clients.store.ping),
        DependencyCheck("redis", clients.redis.ping),
        DependencyCheck("llm", llm_ready),
    )
    try:
        yield
    finally:
        await probe.aclose()
        await clients.aclose()


def build_app(settings: QuerySettings | None = None) -> FastAPI:
    return create_app(
        title="docqa query API",
        service="query",
        settings=settings or QuerySettings(),
        lifespan=lifespan,
        routers=[router],
    )
