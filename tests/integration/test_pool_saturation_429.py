"""With every vLLM endpoint at its max in-flight and the wait queue full, the query API answers
429 with Retry-After, at once: no timeouts, no 500s."""

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
                json={"collection": collection, "question": QUESTION},
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
