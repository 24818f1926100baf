"""The cached-answer fast path in front of ``POST /v1/query``.

The app is the real factory with the real query router and the fast path; the answerer is a
fake of our own seam (``Answerer.cached_only`` / ``Answerer.answer``) holding cached answers as
the real cache stores them (``CachedAnswer`` bytes). What is checked: a hit is answered without
reaching the route and with the bytes the route would send; everything else reaches the route
with its body intact, so refusals keep their error envelope.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import SecretStr

from query_engine.answering import AnswerRequest, AnswerStream, CachedHit
from query_engine.cache import CachedAnswer
from services.common.settings import AuthSettings, QuerySettings
from services.query_api.fast_path import MAX_FAST_BODY_BYTES, CachedQueryFastPath
from services.query_api.routes import router
from tests.unit._apps import create_test_app

pytestmark = pytest.mark.unit

QUERY_KEY = "q" * 30
ADMIN_KEY = "a" * 30
AUTH = {"Authorization": f"Bearer {QUERY_KEY}"}
STORED = {
    "answer": "Two years [1].",
    "citations": [],
    "grounding": {"verified": True, "unsupported": [], "checked_claims": 1},
    "not_found": False,
    "faq": None,
    "standalone_question": None,
}
CACHED_QUESTION = "How long is the warranty?"


class FakeAnswerer:
    """Answers from ``cached`` (question → stored answer); records what reached which method."""

    def __init__(self) -> None:
        self.cached = {CACHED_QUESTION: json.dumps(STORED).encode()}
        self.fast_lookups: list[AnswerRequest] = []
        self.route_requests: list[AnswerRequest] = []

    async def cached_only(self, request: AnswerRequest) -> CachedHit | None:
        self.fast_lookups.append(request)
        raw = self.cached.get(request.question)
        return CachedHit(CachedAnswer(raw), {"total": 0.5}) if raw else None

    async def stream(self, request: AnswerRequest) -> AnswerStream:
        self.route_requests.append(request)
        return AnswerStream.complete({**STORED, "cached": False, "coalesced": False})

    async def answer(self, request: AnswerRequest) -> CachedHit | dict[str, Any]:
        self.route_requests.append(request)
        raw = self.cached.get(request.question)
        if raw:
            return CachedHit(CachedAnswer(raw), {"total": 0.5})
        fresh = {**STORED, "answer": f"fresh: {request.question}"}
        return {**fresh, "cached": False, "coalesced": False, "timings_ms": {"total": 9.0}}


def build(answerer: FakeAnswerer, *, fast_path: bool = True) -> FastAPI:
    settings = QuerySettings(
        log_json=False,
        auth=AuthSettings(query_keys=[SecretStr(QUERY_KEY)], admin_keys=[SecretStr(ADMIN_KEY)]),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.answerer = answerer
        yield

    return create_test_app(
        title="fast-path-test",
        service="fastpath",
        settings=settings,
        lifespan=lifespan,
        routers=[router],
        inner_middleware=[CachedQueryFastPath] if fast_path else [],
    )


@asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


def ask(question: str = CACHED_QUESTION, **extra: Any) -> dict[str, Any]:
    return {"collection": "kb", "question": question, **extra}


def without_timings(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "timings_ms"}


async def test_a_hit_is_answered_before_the_route_with_the_routes_bytes() -> None:
    answerer = FakeAnswerer()
    async with (
        client_for(build(answerer)) as fast,
        client_for(build(answerer, fast_path=False)) as plain,
    ):
        via_fast = await fast.post("/v1/query", json=ask(), headers=AUTH)
        via_route = await plain.post("/v1/query", json=ask(), headers=AUTH)

    assert via_fast.status_code == via_route.status_code == 200
    assert via_fast.headers["content-type"] == via_route.headers["content-type"]
    assert without_timings(via_fast.json()) == without_timings(via_route.json())
    assert via_fast.json()["cached"] is True and via_fast.headers["x-request-id"]
    assert len(answerer.route_requests) == 1  # only the app without the fast path asked it
    assert answerer.fast_lookups[0].top_k == QuerySettings().retrieval.top_k


async def test_a_hit_is_counted_under_the_query_route() -> None:
    def served() -> float:
        labels = {"service": "fastpath", "method": "POST", "route": "/v1/query", "status": "200"}
        return REGISTRY.get_sample_value("docqa_http_requests_total", labels) or 0.0

    before = served()
    async with client_for(build(FakeAnswerer())) as client:
        assert (await client.post("/v1/query", json=ask(), headers=AUTH)).status_code == 200
    assert served() == before + 1


async def test_a_miss_reaches_the_route_with_its_body() -> None:
    answerer = FakeAnswerer()
    async with client_for(build(answerer)) as client:
        response = await client.post(
            "/v1/query",
            json=ask("Who makes it?", top_k=2, filters={"source": "a.md"}),
            headers=AUTH,
        )
    assert response.status_code == 200
    assert response.json()["answer"] == "fresh: Who makes it?"
    reached = answerer.route_requests[0]
    assert (reached.question, reached.top_k, dict(reached.filters)) == (
        "Who makes it?",
        2,
        {"source": "a.md"},
    )


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer wrong-key-wrong-key-wrong-key"}, 401, "unauthorized"),
    ],
)
async def test_a_cached_answer_needs_a_query_key_all_the_same(
    headers: dict[str, str], status: int, code: str
) -> None:
    answerer = FakeAnswerer()
    async with client_for(build(answerer)) as client:
        response = await client.post("/v1/query", json=ask(), headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert answerer.fast_lookups == [] and answerer.route_requests == []


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b'{"collection": "kb", "question": ', 400),  # malformed JSON
        (json.dumps(ask("   ")).encode(), 422),  # blank question
        (json.dumps({"collection": "Bad Name!", "question": CACHED_QUESTION}).encode(), 422),
        (json.dumps(ask(top_k=10_000)).encode(), 422),
    ],
)
async def test_bad_requests_get_the_routes_error_envelope(content: bytes, status: int) -> None:
    answerer = FakeAnswerer()
    async with client_for(build(answerer)) as client:
        response = await client.post(
            "/v1/query", content=content, headers={**AUTH, "Content-Type": "application/json"}
        )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] in {"invalid_json", "invalid_request"}
    assert answerer.route_requests == []


@pytest.mark.parametrize("extra", [{"session_id": "s1"}, {"stream": True}])
async def test_sessions_and_streams_are_left_to_the_route(extra: dict[str, Any]) -> None:
    answerer = FakeAnswerer()
    async with client_for(build(answerer)) as client:
        response = await client.post("/v1/query", json=ask(**extra), headers=AUTH)
    assert response.status_code == 200
    assert answerer.fast_lookups == []
    assert len(answerer.route_requests) == 1


async def test_a_body_too_big_for_the_fast_path_reaches_the_route_whole() -> None:
    answerer = FakeAnswerer()
    long_question = "warranty " * (MAX_FAST_BODY_BYTES // 9 + 10)
    async with client_for(build(answerer)) as client:
        response = await client.post("/v1/query", json=ask(long_question), headers=AUTH)
    assert response.status_code == 422  # the route's own question-length limit
    assert "characters" in response.json()["error"]["message"]
    assert answerer.fast_lookups == []


async def test_other_routes_are_untouched() -> None:
    async with client_for(build(FakeAnswerer())) as client:
        response = await client.post(
            "/v1/retrieve", content=b"{", headers={**AUTH, "Content-Type": "application/json"}
        )
    assert response.status_code == 400
