"""The one front door of ``POST /v1/query`` (auth → validation → lookup, then the route).

The app is the real factory with the real query router and the front door; the answerer is a
fake of our own seam (``Answerer.lookup`` / ``answer`` / ``stream``) holding cached answers as
the real cache stores them (``CachedAnswer`` bytes). What is checked: the lookup (session
context, FAQ, cache) runs exactly once per request whichever way it goes; a hit is answered
without reaching the route, with the bytes the route would send; a miss reaches the route with
its body intact and the lookup already done; refusals keep their error envelope.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import SecretStr

from query_engine.answer import Answer
from query_engine.answering import AnswerRequest, AnswerStream, CachedHit, Lookup
from query_engine.cache import CachedAnswer
from services.common.settings import AuthSettings, QuerySettings
from services.query_api.front_door import MAX_FAST_BODY_BYTES, QueryFrontDoor
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
    """Looks up in ``cached`` (question → stored answer); records every lookup and what reached
    the route's methods (with the lookup they were handed, if any)."""

    def __init__(self) -> None:
        self.cached = {CACHED_QUESTION: json.dumps(STORED).encode()}
        self.lookups: list[AnswerRequest] = []
        self.route_calls: list[tuple[AnswerRequest, Lookup | None]] = []
        self.remembered: list[AnswerRequest] = []

    async def lookup(self, request: AnswerRequest) -> Lookup:
        self.lookups.append(request)
        found = Lookup(request, request.question, [])
        raw = self.cached.get(request.question)
        if raw:
            found.early = CachedHit(CachedAnswer(raw), {"total": 0.5})
        return found

    async def remember(self, request: AnswerRequest, answer: Any) -> None:
        self.remembered.append(request)

    async def answer(self, request: AnswerRequest, looked_up: Lookup | None = None) -> Any:
        self.route_calls.append((request, looked_up))
        found = looked_up or await self.lookup(request)
        if found.early is not None:
            return found.early
        fresh = {**STORED, "answer": f"fresh: {request.question}", "timings_ms": {"total": 9.0}}
        return Answer.model_validate(fresh)

    async def stream(self, request: AnswerRequest, looked_up: Lookup | None = None) -> AnswerStream:
        self.route_calls.append((request, looked_up))
        found = looked_up or await self.lookup(request)
        early = found.early
        if isinstance(early, CachedHit):
            return AnswerStream.complete(early.to_answer())
        return AnswerStream.complete(Answer.model_validate({**STORED, "timings_ms": {}}))


@dataclass
class FakeRuntime:
    settings: QuerySettings
    answerer: FakeAnswerer


def build(answerer: FakeAnswerer, *, front_door: bool = True) -> FastAPI:
    settings = QuerySettings(
        log_json=False,
        auth=AuthSettings(query_keys=[SecretStr(QUERY_KEY)], admin_keys=[SecretStr(ADMIN_KEY)]),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = FakeRuntime(settings, answerer)
        yield

    return create_test_app(
        title="front-door-test",
        service="frontdoor",
        settings=settings,
        lifespan=lifespan,
        routers=[router],
        inner_middleware=[QueryFrontDoor] if front_door else [],
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
        client_for(build(answerer, front_door=False)) as plain,
    ):
        via_fast = await fast.post("/v1/query", json=ask(), headers=AUTH)
        via_route = await plain.post("/v1/query", json=ask(), headers=AUTH)

    assert via_fast.status_code == via_route.status_code == 200
    assert via_fast.headers["content-type"] == via_route.headers["content-type"]
    assert without_timings(via_fast.json()) == without_timings(via_route.json())
    assert via_fast.json()["cached"] is True and via_fast.headers["x-request-id"]
    assert len(answerer.route_calls) == 1  # only the app without the front door reached it
    assert len(answerer.lookups) == 2  # one per request, whichever door
    assert answerer.lookups[0].top_k == QuerySettings().retrieval.top_k


async def test_a_hit_is_counted_under_the_query_route() -> None:
    def served() -> float:
        labels = {"service": "frontdoor", "method": "POST", "route": "/v1/query", "status": "200"}
        return REGISTRY.get_sample_value("docqa_http_requests_total", labels) or 0.0

    before = served()
    async with client_for(build(FakeAnswerer())) as client:
        assert (await client.post("/v1/query", json=ask(), headers=AUTH)).status_code == 200
    assert served() == before + 1


async def test_a_miss_reaches_the_route_with_its_body_and_is_looked_up_once() -> None:
    answerer = FakeAnswerer()
    async with client_for(build(answerer)) as client:
        response = await client.post(
            "/v1/query",
            json=ask("Who makes it?", top_k=2, filters={"source": "a.md"}),
            headers=AUTH,
        )
    assert response.status_code == 200
    assert response.json()["answer"] == "fresh: Who makes it?"
    assert len(answerer.lookups) == 1  # by the front door; the route was handed its result
    reached, looked_up = answerer.route_calls[0]
    assert looked_up is not None and looked_up.request == reached
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
    assert answerer.lookups == [] and answerer.route_calls == []


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
    assert answerer.lookups == [] and answerer.route_calls == []


async def test_a_session_hit_is_answered_and_remembered_by_the_front_door() -> None:
    answerer = FakeAnswerer()
    async with client_for(build(answerer)) as client:
        response = await client.post("/v1/query", json=ask(session_id="s1"), headers=AUTH)
    assert response.status_code == 200 and response.json()["cached"] is True
    assert len(answerer.lookups) == 1 and answerer.route_calls == []
    assert [r.session_id for r in answerer.remembered] == ["s1"]


@pytest.mark.parametrize("question", [CACHED_QUESTION, "Who makes it?"])
async def test_a_stream_is_looked_up_once_and_streamed_by_the_route(question: str) -> None:
    answerer = FakeAnswerer()
    async with client_for(build(answerer)) as client:
        response = await client.post("/v1/query", json=ask(question, stream=True), headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: done" in response.text
    assert len(answerer.lookups) == 1
    (_, looked_up), *_ = answerer.route_calls
    assert looked_up is not None


async def test_a_body_too_big_for_the_front_door_reaches_the_route_whole() -> None:
    answerer = FakeAnswerer()
    long_question = "warranty " * (MAX_FAST_BODY_BYTES // 9 + 10)
    async with client_for(build(answerer)) as client:
        response = await client.post("/v1/query", json=ask(long_question), headers=AUTH)
    assert response.status_code == 422  # the route's own question-length limit
    assert "characters" in response.json()["error"]["message"]
    assert answerer.lookups == []


async def test_other_routes_are_untouched() -> None:
    async with client_for(build(FakeAnswerer())) as client:
        response = await client.post(
            "/v1/retrieve", content=b"{", headers={**AUTH, "Content-Type": "application/json"}
        )
    assert response.status_code == 400
