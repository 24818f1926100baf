"""Typed dependencies for the query routes: the runtime the lifespan built, and its parts."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.common.settings import QuerySettings
from services.query_api.runtime import QueryRuntime


def runtime_of(request: Request) -> QueryRuntime:
    runtime: QueryRuntime = request.app.state.runtime
    return runtime


async def _runtime(request: Request) -> QueryRuntime:
    return runtime_of(request)


async def _settings(request: Request) -> QuerySettings:
    settings: QuerySettings = request.app.state.settings
    return settings


RuntimeDep = Annotated[QueryRuntime, Depends(_runtime)]
SettingsDep = Annotated[QuerySettings, Depends(_settings)]
