"""Typed dependencies for the indexing routes: the objects the lifespan put on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from indexing.jobs import JobStore
from indexing.pipeline import IngestionPipeline
from indexing.store import ChunkStore
from services.common.settings import IndexingSettings


async def _settings(request: Request) -> IndexingSettings:
    settings: IndexingSettings = request.app.state.settings
    return settings


async def _pipeline(request: Request) -> IngestionPipeline:
    pipeline: IngestionPipeline = request.app.state.pipeline
    return pipeline


async def _jobs(request: Request) -> JobStore:
    jobs: JobStore = request.app.state.jobs
    return jobs


SettingsDep = Annotated[IndexingSettings, Depends(_settings)]
PipelineDep = Annotated[IngestionPipeline, Depends(_pipeline)]
JobsDep = Annotated[JobStore, Depends(_jobs)]


async def _store(request: Request) -> ChunkStore:
    store: ChunkStore = request.app.state.store
    return store


StoreDep = Annotated[ChunkStore, Depends(_store)]
