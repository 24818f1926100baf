"""With every vLLM endpoint at its max in-flight and the wait queue full, a generative question
gets 429 with Retry-After, at once: no timeouts, no 500s. In auto mode (the default) the same
questions are all answered: those the pool refuses get the extractive answer."""

from __future__ import annotations

import asyncio

import httpx

from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.fixtures.documents import ENGLISH_GUIDE
from tests.integration.conftest import QUERY_AUTH, ingest, query_settings, running

GUIDE = {"doc_id": "grinder-guide", "title": "Kestrel Coffee Grinder Guide", "text": ENGLISH_GUIDE}
QUESTION = "How often should the burrs be brushed?"


async def test_saturated_pool_answers_429_with_retry_after(
    servers: Servers, indexing_client: httpx.AsyncClient, collection: str
) -> None:
    await ingest(indexing_client, collection, [GUIDE])
    settings = query_settings(
        servers,
        llm={"endpoints": [servers.llm_url], "max_in_flight": 1, "queue_size": 0},
        cache={"enabled": False},  # every question must reach the LLM
    )
    async with running(build_query_app(settings)) as client:

        async def ask() -> httpx.Response:
            return await client.post(
                "/v1/query",
                json={"collection": collection, "question": QUESTION, "answer_mode": "generative"},
                headers=QUERY_AUTH,
            )

        responses = await asyncio.gather(*(ask() for _ in range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 429}, [r.text for r in responses]
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["error"]["code"] == "rate_limited"
            assert response.json()["error"]["detail"]["reason"] == "queue_full"


async def test_saturated_pool_in_auto_mode_still_answers_every_question(
    servers: Servers, indexing_client: httpx.AsyncClient, collection: str
) -> None:
    await ingest(indexing_client, collection, [GUIDE])
    settings = query_settings(
        servers,
        llm={"endpoints": [servers.llm_url], "max_in_flight": 1, "queue_size": 0},
        cache={"enabled": False},
    )
    async with running(build_query_app(settings)) as client:

        async def ask() -> httpx.Response:
            return await client.post(
                "/v1/query",
                json={"collection": collection, "question": QUESTION, "answer_mode": "auto"},
                headers=QUERY_AUTH,
            )

        responses = await asyncio.gather(*(ask() for _ in range(4)))
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    bodies = [r.json() for r in responses]
    saturated = [b for b in bodies if b["fallback_reason"] == "llm_saturated"]
    assert saturated, bodies  # at most one question got the single LLM slot
    for body in saturated:
        assert body["answer_mode"] == "extractive" and "2 weeks" in body["answer"]
        assert body["grounding"]["verified"] is True
