"""Client factories: built once in an app's lifespan, kept on ``app.state``, closed on shutdown.

None of these connect in the constructor; the first call does, so a service starts (and reports
not-ready) while a dependency is still coming up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pymilvus import AsyncMilvusClient, MilvusClient
from redis.asyncio import Redis

from indexing.analysis import warm_up as warm_up_analyzer
from indexing.embedding import Embedder, EmbedderConfig, build_embedder
from indexing.ingest_metrics import IngestionMetrics
from indexing.loaders import ParseLimits
from indexing.pipeline import IngestionPipeline, PipelineConfig
from indexing.store import ChunkStore
from services.common.metrics import PrometheusIngestionMetrics
from services.common.settings import (
    CommonSettings,
    EmbedderSettings,
    IndexingSettings,
    LimitsSettings,
    MilvusSettings,
    RedisSettings,
)


def build_redis(settings: RedisSettings) -> Redis:
    return Redis.from_url(
        settings.url,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        health_check_interval=30,
    )


# pymilvus pings an idle connection every 10 s. A gRPC server with the library's defaults (the
# milvus-lite server is one) accepts pings without calls at most every 5 minutes: after a minute
# or two of idleness it sent GOAWAY "too_many_pings". The next search then paid for a new
# connection (181 ms measured, against 4-7 ms), and a client that pymilvus recovered on that
# shared connection failed outright ("Fail connecting to server", seen in CI). Pings while calls
# are open still detect a dead peer. Every Milvus client of this project is built here, with these.
# gRPC itself shares one TCP connection between channels of equal target and options (its global
# subchannel pool): a local pool gives each set of clients its own connection, which its close()
# closes, so clients built again in one process (an app restarted, a batch job) start afresh.
MILVUS_GRPC_OPTIONS: dict[str, Any] = {
    "grpc.keepalive_permit_without_calls": False,
    "grpc.use_local_subchannel_pool": 1,
}


def build_milvus(settings: MilvusSettings) -> AsyncMilvusClient:
    """A client with its own gRPC channel (``dedicated``), closed by its ``close()``.

    pymilvus 3 otherwise shares one channel per address and token between every client of the
    process and never closes it: each new set of clients (an app started again in the same
    process, a batch job's) inherited whatever state the old channel was in, its connect timeout
    and its recoveries. A CI run saw a freshly started app's first searches fail on such a
    channel ("Fail connecting to server" while pymilvus recovered it), while Milvus served the
    clients before and after it."""
    token = settings.token.get_secret_value() if settings.token else ""
    return AsyncMilvusClient(
        uri=settings.uri,
        token=token,
        db_name=settings.db_name,
        timeout=settings.timeout_s,
        grpc_options=MILVUS_GRPC_OPTIONS,
        dedicated=True,
    )


def build_milvus_sync(settings: MilvusSettings) -> MilvusClient:
    """For collection DDL only (see ChunkStore); connects when called."""
    token = settings.token.get_secret_value() if settings.token else ""
    return MilvusClient(
        uri=settings.uri,
        token=token,
        db_name=settings.db_name,
        timeout=settings.timeout_s,
        grpc_options=MILVUS_GRPC_OPTIONS,
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


@dataclass
class DataClients:
    """Redis, Milvus and the embedder, as both services and the batch CLI use them."""

    redis: Redis
    milvus: AsyncMilvusClient
    embedder: Embedder
    store: ChunkStore

    async def aclose(self) -> None:
        await self.embedder.aclose()
        self.store.close_ddl()
        await self.milvus.close()
        await self.redis.aclose()


def build_data_clients(settings: CommonSettings, *, can_create: bool = False) -> DataClients:
    """``can_create``: the write side may create collections (needs the sync DDL client)."""
    milvus = build_milvus(settings.milvus)
    store = ChunkStore(
        milvus,
        dim=settings.embedder.dim,
        timeout_s=settings.milvus.timeout_s,
        ddl_client=(lambda: build_milvus_sync(settings.milvus)) if can_create else None,
    )
    return DataClients(
        redis=build_redis(settings.redis),
        milvus=milvus,
        embedder=build_embedder_from(settings),
        store=store,
    )


def build_pipeline(
    clients: DataClients, settings: IndexingSettings, *, metrics: IngestionMetrics | None = None
) -> IngestionPipeline:
    """``metrics``: where ingestion counts go (default: this process's Prometheus registry)."""
    return IngestionPipeline(
        store=clients.store,
        embedder=clients.embedder,
        redis=clients.redis,
        metrics=metrics or PrometheusIngestionMetrics(),
        config=PipelineConfig(
            chunk_max_tokens=settings.chunk_max_tokens,
            embed_batch_size=settings.embedder.batch_size,
            key_prefix=settings.redis.key_prefix,
        ),
    )


def parse_limits(limits: LimitsSettings) -> ParseLimits:
    """The limits of parsing one uploaded PDF/DOCX/HTML, as plain config for ``indexing``."""
    return ParseLimits(
        timeout_s=limits.parse_timeout_s,
        memory_mb=limits.parse_memory_mb,
        max_pdf_pages=limits.max_pdf_pages,
        max_docx_uncompressed_bytes=limits.max_docx_uncompressed_mb * 1024 * 1024,
        max_docx_compression_ratio=limits.max_docx_compression_ratio,
        max_document_chars=limits.max_document_chars,
    )
