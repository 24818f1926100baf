"""The services' own apps (``build_app``: the real factory, routers, front door and body limit)
over fakes of our seams, for unit tests.

No lifespan runs (``httpx.ASGITransport`` sends no lifespan events): the fakes are put on
``app.state`` where the lifespan would have put the real objects.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from query_engine.answer import Answer, Grounding
from query_engine.answering import AnswerRequest, AnswerStream, Lookup
from services.common.settings import AuthSettings, IndexingSettings, QuerySettings
from services.indexing_api.app import build_app as build_indexing_app
from services.query_api.app import build_app as build_query_app

QUERY_KEY = "q" * 30
ADMIN_KEY = "a" * 30
QUERY_AUTH = {"Authorization": f"Bearer {QUERY_KEY}"}
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
KEYS = AuthSettings(query_keys=[SecretStr(QUERY_KEY)], admin_keys=[SecretStr(ADMIN_KEY)])
ANSWER = Answer(
    answer="Every 2 weeks.",
    citations=[],
    grounding=Grounding(verified=True, unsupported=[], checked_claims=0),
    not_found=False,
    timings_ms={"total": 1.0},
)


class FakeAnswerer:
    """Answers every question with ``ANSWER`` (or raises ``fail``); records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[AnswerRequest] = []
        self.fail: Exception | None = None

    async def lookup(self, request: AnswerRequest) -> Lookup:
        if self.fail is not None:
            raise self.fail
        self.asked.append(request)
        return Lookup(request, request.question, list(request.history))

    async def remember(self, request: AnswerRequest, answer: Any) -> None:
        return None

    async def answer(self, request: AnswerRequest, looked_up: Lookup | None = None) -> Answer:
        if looked_up is None:
            await self.lookup(request)
        return ANSWER

    async def stream(self, request: AnswerRequest, looked_up: Lookup | None = None) -> AnswerStream:
        if looked_up is None:
            await self.lookup(request)
        return AnswerStream.complete(ANSWER)


class FakeJobs:
    def __init__(self) -> None:
        self.created: list[tuple[str, int]] = []

    async def create(self, collection: str, documents: list[Any]) -> str:
        self.created.append((collection, len(documents)))
        return "job-1"


@dataclass
class FakeRuntime:
    settings: QuerySettings
    answerer: FakeAnswerer
    clients: Any = field(default_factory=lambda: SimpleNamespace(store=None))


def quietly(build: Callable[[], FastAPI]) -> FastAPI:
    """``build()``, giving pytest its log capture back (``create_app`` points the root logger
    at stderr)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return build()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def query_app(
    answerer: FakeAnswerer | None = None, *, auth: AuthSettings = KEYS, **limits: Any
) -> FastAPI:
    settings = QuerySettings(log_json=False, auth=auth, limits=limits)
    app = quietly(lambda: build_query_app(settings))
    app.state.runtime = FakeRuntime(settings, answerer or FakeAnswerer())
    return app


def indexing_app(*, auth: AuthSettings = KEYS, **limits: Any) -> FastAPI:
    settings = IndexingSettings(log_json=False, auth=auth, limits=limits)
    app = quietly(lambda: build_indexing_app(settings))
    app.state.jobs = FakeJobs()
    app.state.pipeline = app.state.store = None
    return app


@asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client
