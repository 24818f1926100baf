"""The query service: FastAPI app over one :class:`~services.query_api.runtime.QueryRuntime`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.common.app import create_app
from services.common.key_store import KeyStore
from services.common.production import require_a_way_in
from services.common.rate_limits import RateLimiter
from services.common.settings import QuerySettings
from services.query_api.faq_routes import router as faq_router
from services.query_api.front_door import QueryFrontDoor
from services.query_api.openai_routes import router as openai_router
from services.query_api.rate_limits import QueryRateLimits
from services.query_api.routes import router
from services.query_api.runtime import QueryRuntime
from services.query_api.ui_routes import router as ui_router


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime = await QueryRuntime.start(app.state.settings)
    try:
        settings: QuerySettings = app.state.settings
        keys = KeyStore(runtime.clients.redis, prefix=settings.redis.key_prefix)
        await require_a_way_in(settings.environment, settings.auth.admin_keys, keys)
        app.state.runtime = runtime
        app.state.keyring.attach(keys)
        app.state.readiness_checks = runtime.readiness_checks()
        app.state.rate_limiter = RateLimiter(
            runtime.clients.redis,
            prefix=settings.redis.key_prefix,
            settings=settings.rate_limit,
            # a stream's slot frees itself this long after it was taken, if nothing gave it back
            stream_lease_s=settings.llm.request_timeout_s + 60,
        )
        yield
    finally:
        await runtime.aclose()


def build_app(settings: QuerySettings | None = None) -> FastAPI:
    return create_app(
        title="docqa query API",
        service="query",
        settings=settings or QuerySettings(),
        lifespan=lifespan,
        routers=[router, openai_router, faq_router, ui_router],
        # auth → limits → FAQ → cache in the front door; what it passes on is counted behind it
        inner_middleware=[QueryFrontDoor, QueryRateLimits],
    )
