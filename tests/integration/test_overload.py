"""Admission control through the real query service (real Milvus, Redis, embedder): when every
retrieval slot is taken and the queue is full, new questions and ``/v1/retrieve`` get 503
``overloaded`` in the error envelope with ``Retry-After`` at once, while cached answers and FAQ
hits keep coming; once a slot frees, the same requests succeed."""

from __future__ import annotations

from typing import Any

import httpx

from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.fixtures.documents import ENGLISH_GUIDE
from tests.integration.conftest import ADMIN_AUTH, QUERY_AUTH, ingest, query_settings, running

GUIDE = {"doc_id": "grinder-guide", "title": "Kestrel Coffee Grinder Guide", "text": ENGLISH_GUIDE}
CACHED = "Which grind setting of the Kestrel grinder suits pour-over?"
NEW = "How often should the burrs of the Kestrel grinder be brushed?"
FAQ = {"question": "How long may the Kestrel run without a pause?", "answer": "90 seconds."}
ONE_SLOT_NO_QUEUE = {"max_active": 1, "max_queued": 0, "max_wait_s": 0.05}


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(path, json=body, headers=QUERY_AUTH)


async def test_a_full_replica_refuses_new_work_fast_and_keeps_serving_cached_answers(
    data_servers: Servers, indexing_client: httpx.AsyncClient, collection: str
) -> None:
    await ingest(indexing_client, collection, [GUIDE])
    settings = query_settings(data_servers, admission=ONE_SLOT_NO_QUEUE, answer_mode="extractive")
    app = build_query_app(settings)
    async with running(app) as client:
        faq = await client.put(
            f"/v1/collections/{collection}/faq", json={"entries": [FAQ]}, headers=ADMIN_AUTH
        )
        assert faq.status_code == 200, faq.text
        ask = {"collection": collection}
        warm = await post(client, "/v1/query", {**ask, "question": CACHED})
        assert warm.status_code == 200, warm.text
        async with app.state.runtime.admission.slot():  # the one slot is busy
            for path, question in (("/v1/query", NEW), ("/v1/retrieve", NEW)):
                refused = await post(client, path, {**ask, "question": question})
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"]["code"] == "overloaded"
                assert refused.headers["Retry-After"] == "1"
            cached = await post(client, "/v1/query", {**ask, "question": CACHED})
            assert cached.status_code == 200 and cached.json()["cached"] is True
            from_faq = await post(client, "/v1/query", {**ask, "question": FAQ["question"]})
            assert from_faq.status_code == 200 and "90 seconds" in from_faq.json()["answer"]
        answered = await post(client, "/v1/query", {**ask, "question": NEW})
        assert answered.status_code == 200, answered.text
        assert "brush" in answered.json()["answer"].lower()
        retrieved = await post(client, "/v1/retrieve", {**ask, "question": NEW})
        assert retrieved.status_code == 200 and retrieved.json()["citations"]
