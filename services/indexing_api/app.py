"""The indexing service: FastAPI app, its clients, and the ingestion job worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from indexing.jobs import JobStore, JobWorker
from indexing.loaders import PendingUpload, parse_upload
from indexing.pipeline import SourceDocument
from services.common.app import create_app
from services.common.clients import (
    build_data_clients,
    build_pipeline,
    parse_limits,
    warm_up_models,
)
from services.common.health import DependencyCheck
from services.common.key_store import KeyStore
from services.common.production import require_a_way_in
from services.common.rate_limits import RateLimiter
from services.common.settings import IndexingSettings
from services.indexing_api.key_routes import router as key_router
from services.indexing_api.routes import router

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: IndexingSettings = app.state.settings
    clients = build_data_clients(settings, can_create=True)
    keys = KeyStore(clients.redis, prefix=settings.redis.key_prefix)
    try:
        await require_a_way_in(settings.environment, settings.auth.admin_keys, keys)
    except BaseException:
        await clients.aclose()
        raise
    pipeline = build_pipeline(clients, settings)
    jobs = JobStore(clients.redis, settings.redis.key_prefix)
    app.state.keyring.attach(keys)
    app.state.store, app.state.pipeline, app.state.jobs = clients.store, pipeline, jobs
    app.state.rate_limiter = RateLimiter(
        clients.redis, prefix=settings.redis.key_prefix, settings=settings.rate_limit
    )
    app.state.readiness_checks = (
        DependencyCheck("milvus", clients.store.ping),
        DependencyCheck("redis", clients.redis.ping),
    )
    await warm_up_models(clients.embedder)
    limits = parse_limits(settings.limits)

    async def parse(upload: PendingUpload) -> list[SourceDocument]:
        return await parse_upload(upload, limits)

    worker = JobWorker(
        jobs,
        pipeline,
        concurrency=settings.ingest_workers,
        lease_ttl_s=settings.job_lease_ttl_s,
        parse=parse,
    )
    worker_task = asyncio.create_task(worker.run(), name="job-worker")
    try:
        yield
    finally:
        await stop_worker(worker, worker_task, grace_s=settings.shutdown_grace_s)
        await clients.aclose()


async def stop_worker(worker: JobWorker, task: asyncio.Task[None], *, grace_s: float) -> None:
    """Let running jobs finish within the grace period; a job cut short goes back to the queue
    at once and another replica (or the next start) resumes it."""
    worker.stop()
    done, _ = await asyncio.wait({task}, timeout=grace_s)
    if not done:
        log.warning("jobs still running at shutdown; they go back to the queue")
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, timeout=5)
    await worker.release()


def build_app(settings: IndexingSettings | None = None) -> FastAPI:
    return create_app(
        title="docqa indexing API",
        service="indexing",
        settings=settings or IndexingSettings(),
        lifespan=lifespan,
        routers=[router, key_router],
    )
