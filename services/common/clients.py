"""Client factories: built once in an app's lifespan, kept on ``app.state``, closed on shutdown.

None of these connect in the constructor; the first call does, so a service starts (and reports
not-ready) while a dependency is still coming up.
"""

from __future__ import annotations

import asyncio

from pymilvus import AsyncMilvusClient, MilvusClient
from redis.asyncio import Redis

from indexing.analysis import warm_up as warm_up_analyzer
from indexing.embedding import Embedder, EmbedderConfig, build_embedder
from services.common.settings import CommonSettings, EmbedderSettings, MilvusSettings, RedisSettings


def build_redis(settings: RedisSettings) -> Redis:
    return Redis.from_url(
        settings.url,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        health_check_interval=30,
    )


def build_milvus(settings: MilvusSettings) -> AsyncMilvusClient:
    token = settings.token.get_secret_value() if settings.token else ""
    return AsyncMilvusClient(
        uri=settings.uri, token=token, db_name=settings.db_name, timeout=settings.timeout_s
    )


def build_milvus_sync(settings: MilvusSettings) -> MilvusClient:
    """For collection DDL only (see ChunkStore); connects when called."""
    token = settings.token.get_secret_value() if settings.token else ""
    return MilvusClient(
        uri=settings.uri, token=token, db_name=settings.db_name, timeout=settings.timeout_s
    )


def embedder_config(settings: EmbedderSettings) -> EmbedderConfig:
    return EmbedderConfig(
        backend=settings.backend,
        url=settings.url,
        model=settings.model,
        api_key=settings.api_key.get_secret_value(),
        dim=settings.dim,
        max_tokens=settings.max_tokens,
        batch_size=settings.batch_size,
        threads=settings.threads,
    )


def build_embedder_from(settings: CommonSettings) -> Embedder:
    return build_embedder(embedder_config(settings.embedder))


async def warm_up_models(embedder: Embedder) -> None:
    """Load the Korean analyzer and the embedder at start-up: ~3 s that would otherwise land on
    the first request. Readiness stays false until this is done."""
    await asyncio.to_thread(warm_up_analyzer)
    await embedder.warm_up()
