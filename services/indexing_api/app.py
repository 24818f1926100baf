"""The indexing service: FastAPI app, its clients, and the ingestion job worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from indexing.jobs import JobStore, JobWorker
from indexing.pipeline import IngestionPipeline, PipelineConfig
from indexing.store import ChunkStore
from services.common.app import create_app
from services.common.clients import (
    build_embedder_from,
    build_milvus,
    build_milvus_sync,
    build_redis,
    warm_up_models,
)
from services.common.health import DependencyCheck
from services.common.settings import IndexingSettings
from services.indexing_api.routes import router

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: IndexingSettings = app.state.settings
    redis = build_redis(settings.redis)
    milvus = build_milvus(settings.milvus)
    embedder = build_embedder_from(settings)
    store = ChunkStore(
        milvus,
        dim=settings.embedder.dim,
        timeout_s=settings.milvus.timeout_s,
        ddl_client=lambda: build_milvus_sync(settings.milvus),
    )
    pipeline = IngestionPipeline(
        store=store,
        embedder=embedder,
        redis=redis,
        config=PipelineConfig(
            chunk_max_tokens=settings.chunk_max_tokens,
            embed_batch_size=settings.embedder.batch_size,
            key_prefix=settings.redis.key_prefix,
        ),
    )
    jobs = JobStore(redis, settings.redis.key_prefix)
    app.state.store, app.state.pipeline, app.state.jobs = store, pipeline, jobs
    app.state.readiness_checks = (
        DependencyCheck("milvus", store.ping),
        DependencyCheck("redis", redis.ping),
    )
    await warm_up_models(embedder)
    worker = JobWorker(jobs, pipeline, concurrency=settings.ingest_workers)
    worker_task = asyncio.create_task(worker.run(), name="job-worker")
    try:
        yield
    finally:
        await stop_worker(worker, worker_task, grace_s=settings.shutdown_grace_s)
        await embedder.aclose()
        store.close_ddl()
        await milvus.close()
        await redis.aclose()


async def stop_worker(worker: JobWorker, task: asyncio.Task[None], *, grace_s: float) -> None:
    """Let running jobs finish within the grace period; a job cut short stays in the processing
    list and is resumed by the next worker to start."""
    worker.stop()
    done, _ = await asyncio.wait({task}, timeout=grace_s)
    if not done:
        log.warning("jobs still running at shutdown; they will resume on the next start")
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, timeout=5)


def build_app(settings: IndexingSettings | None = None) -> FastAPI:
    return create_app(
        title="docqa indexing API",
        service="indexing",
        settings=settings or IndexingSettings(),
        lifespan=lifespan,
        routers=[router],
    )
