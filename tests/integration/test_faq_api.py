"""The FAQ admin API of the query service on a real Redis and the real e5 embedder: put, list,
get and delete over HTTP, auth, refusals in the error envelope, matching with real vectors, and
life with Redis stopped."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from deploy import processes, stack
from docqa_core.redis_keys import faq_version_key
from query_engine.faq import FaqStore
from services.indexing_api.app import build_app as build_indexing_app
from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.integration.conftest import (
    ADMIN_AUTH,
    QUERY_AUTH,
    indexing_settings,
    ingest,
    query_settings,
    running,
)

PASSWORD = {"id": "password", "question": "How do I reset my password?", "answer": "Use 'Forgot'."}
FOOD = {"question": "열람실에 음식을 가져가도 되나요?", "answer": "아니요, 음료만 됩니다."}


@pytest.fixture(scope="module")
async def faq_app(data_servers: Servers) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The query app with Redis and Milvus (no LLM is needed for the FAQ API)."""
    app = build_query_app(
        query_settings(
            data_servers,
            faq={"similarity_threshold": 0.93, "max_entries_per_request": 3},
        )
    )
    async with running(app) as client:
        yield app, client


@pytest.fixture
def client(faq_app: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return faq_app[1]


@pytest.fixture
def faq(faq_app: tuple[FastAPI, httpx.AsyncClient]) -> FaqStore:
    store: FaqStore = faq_app[0].state.runtime.faq
    return store


def faq_url(collection: str, entry_id: str | None = None) -> str:
    base = f"/v1/collections/{collection}/faq"
    return f"{base}/{entry_id}" if entry_id else base


async def put(
    client: httpx.AsyncClient, collection: str, entries: list[dict[str, Any]]
) -> httpx.Response:
    return await client.put(faq_url(collection), json={"entries": entries}, headers=ADMIN_AUTH)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["request_id"]
    return body


async def test_entries_are_put_listed_read_and_deleted(
    client: httpx.AsyncClient, collection: str
) -> None:
    created = await put(client, collection, [PASSWORD, FOOD])
    assert created.status_code == 200, created.text
    ids = created.json()["ids"]
    assert ids[0] == "password" and len(ids) == 2
    assert created.json() | {"ids": None} == {
        "collection": collection,
        "ids": None,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
    }

    listed = await client.get(faq_url(collection), headers=ADMIN_AUTH)
    one = await client.get(faq_url(collection, ids[1]), headers=ADMIN_AUTH)
    again = await put(client, collection, [PASSWORD, FOOD])

    assert listed.status_code == 200
    assert listed.json()["total"] == 2
    assert {e["question"] for e in listed.json()["entries"]} == {
        PASSWORD["question"],
        FOOD["question"],
    }
    assert "vector" not in listed.json()["entries"][0]
    assert one.status_code == 200 and one.json()["answer"] == FOOD["answer"]
    assert again.json()["ids"] == ids and again.json()["unchanged"] == 2

    deleted = await client.delete(faq_url(collection, "password"), headers=ADMIN_AUTH)
    assert deleted.status_code == 204
    assert_error(
        await client.get(faq_url(collection, "password"), headers=ADMIN_AUTH),
        404,
        "faq_entry_not_found",
    )
    cleared = await client.delete(faq_url(collection), headers=ADMIN_AUTH)
    assert cleared.json() == {"collection": collection, "deleted": 1}
    assert (await client.get(faq_url(collection), headers=ADMIN_AUTH)).json()["total"] == 0


async def test_listing_pages(client: httpx.AsyncClient, collection: str) -> None:
    for i in range(3):
        await put(client, collection, [{"id": f"e{i}", "question": f"q {i}", "answer": "a"}])

    page = await client.get(
        faq_url(collection), params={"limit": 2, "offset": 1}, headers=ADMIN_AUTH
    )

    assert page.json()["total"] == 3
    assert [e["id"] for e in page.json()["entries"]] == ["e1", "e2"]


async def test_questions_match_with_real_embeddings(
    client: httpx.AsyncClient, faq: FaqStore, collection: str
) -> None:
    await put(client, collection, [PASSWORD, FOOD])

    exact = await faq.match(collection, "  how do I RESET my password ？")
    similar = await faq.match(collection, "열람실에서 음식 먹어도 돼요?")
    unrelated = await faq.match(collection, "도서관 위치가 어디인가요?")

    assert exact is not None and exact.match == "exact" and exact.id == "password"
    assert similar is not None and similar.match == "similar"
    assert similar.question == FOOD["question"] and 0.93 <= similar.score < 1
    assert unrelated is None


ROUTES = [
    ("PUT", "/v1/collections/c1/faq"),
    ("GET", "/v1/collections/c1/faq"),
    ("DELETE", "/v1/collections/c1/faq"),
    ("GET", "/v1/collections/c1/faq/e1"),
    ("DELETE", "/v1/collections/c1/faq/e1"),
]


@pytest.mark.parametrize(("method", "url"), ROUTES)
async def test_the_faq_api_needs_an_admin_key(
    client: httpx.AsyncClient, method: str, url: str
) -> None:
    body = {"entries": [PASSWORD]} if method == "PUT" else None
    anonymous = await client.request(method, url, json=body)
    query_key = await client.request(method, url, json=body, headers=QUERY_AUTH)

    assert_error(anonymous, 401, "unauthorized")
    assert_error(query_key, 403, "forbidden")


@pytest.mark.parametrize(
    ("entries", "status", "code", "says"),
    [
        (
            [{"question": "   ", "answer": "a"}],
            422,
            "invalid_request",
            "question must not be empty",
        ),
        ([{"question": "q", "answer": ""}], 422, "invalid_request", "answer must not be empty"),
        ([{"question": "q" * 2001, "answer": "a"}], 422, "invalid_request", "limit is 2000"),
        ([{"question": "q", "answer": "a" * 8001}], 422, "invalid_request", "limit is 8000"),
        ([{"question": "q", "answer": "a", "id": "a/b c"}], 422, "invalid_request", "ids hold"),
        ([{"answer": "a"}], 422, "invalid_request", "not valid"),
        ([], 422, "invalid_request", "at least one"),
        (
            [{"question": f"q{i}", "answer": "a"} for i in range(4)],
            413,
            "payload_too_large",
            "limit is 3",
        ),
    ],
)
async def test_bad_entries_get_a_clear_4xx(
    client: httpx.AsyncClient,
    collection: str,
    entries: list[dict[str, Any]],
    status: int,
    code: str,
    says: str,
) -> None:
    body = assert_error(await put(client, collection, entries), status, code)
    assert says in body["error"]["message"]
    assert (await client.get(faq_url(collection), headers=ADMIN_AUTH)).json()["total"] == 0


async def test_other_refusals(client: httpx.AsyncClient, collection: str) -> None:
    await put(client, collection, [PASSWORD])

    bad_name = await put(client, "bad-name!", [PASSWORD])
    taken = await put(client, collection, [{**PASSWORD, "id": "other"}])
    not_json = await client.put(
        faq_url(collection),
        content=b"{not json",
        headers={**ADMIN_AUTH, "Content-Type": "application/json"},
    )
    bad_limit = await client.get(faq_url(collection), params={"limit": 0}, headers=ADMIN_AUTH)

    assert "collection names" in assert_error(bad_name, 422, "invalid_request")["error"]["message"]
    assert assert_error(taken, 409, "conflict")["error"]["detail"]["existing_id"] == "password"
    assert_error(not_json, 400, "invalid_json")
    assert_error(bad_limit, 422, "invalid_request")


async def watcher_sees_redis_gone(app: FastAPI) -> None:
    async with asyncio.timeout(60):  # bounds a hang only
        for _ in itertools.count():
            if not app.state.runtime.versions.live:
                return
            await asyncio.sleep(0.01)


async def test_with_redis_stopped_matching_misses_and_admin_is_503(
    data_servers: Servers, collection: str, runtime_dir: Path
) -> None:
    port = processes.free_port()
    spec = stack.redis_spec(stack.StackPaths(runtime_dir), port, name="faq-doomed-redis")
    processes.start(spec)
    processes.wait_until_ready(spec, stack.redis_ready(port), timeout_s=30)
    try:
        settings = query_settings(data_servers, redis={"url": f"redis://127.0.0.1:{port}/0"})
        app = build_query_app(settings)
        async with running(app) as client:
            assert (await put(client, collection, [PASSWORD])).status_code == 200
            before = await app.state.runtime.faq.match(collection, PASSWORD["question"])
            processes.stop(spec.pid_path)
            # until the version watcher sees its connection drop (a loop turn or two), the
            # snapshot it vouched for may still answer; after that nothing local is trusted
            await watcher_sees_redis_gone(app)
            after = await app.state.runtime.faq.match(collection, PASSWORD["question"])
            admin = await put(client, collection, [FOOD])
            listed = await client.get(faq_url(collection), headers=ADMIN_AUTH)
    finally:
        processes.stop(spec.pid_path)

    assert before is not None and before.id == "password"
    assert after is None
    for response in (admin, listed):
        body = assert_error(response, 503, "dependency_unavailable")
        assert body["error"]["detail"]["dependency"] == "redis"


async def test_an_faq_hit_is_answered_without_retrieval_or_llm(
    data_servers: Servers, collection: str
) -> None:
    """The collection is not in Milvus and the LLM endpoint is dead: only the FAQ can answer."""
    app = build_query_app(query_settings(data_servers))
    async with running(app) as client:
        await put(client, collection, [PASSWORD])
        asked = {"collection": collection, "question": "how do i reset my password"}
        answered = await client.post("/v1/query", json=asked, headers=QUERY_AUTH)
        streamed = await client.post(
            "/v1/query", json={**asked, "stream": True}, headers=QUERY_AUTH
        )
        other = await client.post(
            "/v1/query", json={**asked, "question": "Who wrote it?"}, headers=QUERY_AUTH
        )

    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["answer"] == PASSWORD["answer"] and body["citations"] == []
    assert body["faq"] == {
        "id": "password",
        "question": PASSWORD["question"],
        "score": 1.0,
        "match": "exact",
    }
    assert streamed.status_code == 200
    assert '"match": "exact"' in streamed.text and "event: done" in streamed.text
    assert_error(other, 404, "collection_not_found")  # no FAQ hit: retrieval was asked


def faq_epoch(app: FastAPI, collection: str) -> int:
    """How many announced changes of the collection's FAQ the app's version watcher has seen."""
    key = faq_version_key(app.state.settings.redis.key_prefix, collection)
    return int(app.state.runtime.versions.read_token(key).key_epoch)


async def announced(app: FastAPI, collection: str, seen: int) -> None:
    """Wait until the app has heard of a change of the FAQ after the ``seen``-th (the pub/sub
    message, which each replica receives on its own); the timeout only bounds a hang."""
    async with asyncio.timeout(60):
        while True:
            if faq_epoch(app, collection) > seen:
                return
            await asyncio.sleep(0.01)


async def test_an_edit_on_one_replica_is_seen_by_another_at_once(
    data_servers: Servers, collection: str
) -> None:
    # each replica trusts its version copy for 30 s here: only the announcement can make it see
    settings = query_settings(data_servers, cache={"version_max_age_s": 30})
    first, second = build_query_app(settings), build_query_app(settings)
    async with running(first) as first_client, running(second):
        other: FaqStore = second.state.runtime.faq
        assert await other.match(collection, PASSWORD["question"]) is None  # copy now held
        seen = faq_epoch(second, collection)
        assert (await put(first_client, collection, [PASSWORD])).status_code == 200
        await announced(second, collection, seen)
        after_put = await other.match(collection, PASSWORD["question"])
        seen = faq_epoch(second, collection)
        deleted = await first_client.delete(faq_url(collection, "password"), headers=ADMIN_AUTH)
        assert deleted.status_code == 204
        await announced(second, collection, seen)
        after_delete = await other.match(collection, PASSWORD["question"])

    assert after_put is not None and after_put.id == "password"
    assert after_delete is None


async def test_deleting_the_collection_deletes_its_faq(
    data_servers: Servers, collection: str
) -> None:
    query_app = build_query_app(query_settings(data_servers))
    indexing_app = build_indexing_app(indexing_settings(data_servers))
    async with running(query_app) as client, running(indexing_app) as indexing:
        document = {"doc_id": "d1", "title": "Help", "text": "Passwords are reset by e-mail."}
        assert (await ingest(indexing, collection, [document]))["state"] == "succeeded"
        await put(client, collection, [PASSWORD, FOOD])
        assert await query_app.state.runtime.faq.match(collection, PASSWORD["question"]) is not None

        seen = faq_epoch(query_app, collection)
        dropped = await indexing.delete(f"/v1/collections/{collection}", headers=ADMIN_AUTH)
        await announced(query_app, collection, seen)  # the FAQ's version moved with the drop
        still_matches = await query_app.state.runtime.faq.match(collection, PASSWORD["question"])
        listed = await client.get(faq_url(collection), headers=ADMIN_AUTH)

    assert dropped.status_code == 200, dropped.text
    assert dropped.json()["deleted_faq_entries"] == 2
    assert still_matches is None
    assert listed.status_code == 200 and listed.json()["total"] == 0
