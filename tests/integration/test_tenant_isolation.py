"""Two tenants on one real Redis and Milvus: tenant A's key cannot query, ingest, list, delete,
or read the FAQ, jobs, cached answers or sessions of tenant B's collection. Each refusal is the
404 of a collection that does not exist (no existence oracle), and a test walks every route of
both apps, so a new route without the check fails it.

A's key is made by the CLI (``python -m services.keys add``, a real process on the real Redis),
B's over HTTP (``POST /v1/keys`` with the bootstrap admin key). No LLM: answers are extractive.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from services.indexing_api.app import build_app as build_indexing_app
from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.integration.conftest import (
    ADMIN_AUTH,
    indexing_settings,
    ingest,
    query_settings,
    running,
)

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How often are the plants watered?"
B_FAQ = {"id": "secret", "question": "What is the launch code?", "answer": "B-ONLY-4242"}


@dataclass
class Tenants:
    query_app: FastAPI
    indexing_app: FastAPI
    query: httpx.AsyncClient
    indexing: httpx.AsyncClient
    a: dict[str, str]  # headers of tenant A's key (query + ingest on a_collection)
    b: dict[str, str]
    a_collection: str
    b_collection: str
    a_key_id: str
    b_key_id: str


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def cli_add_key(servers: Servers, tenant: str, collections: str, scopes: str) -> str:
    env = {
        **os.environ,
        "DOCQA_REDIS_URL": servers.redis_url,
        "DOCQA_REDIS_KEY_PREFIX": "itest",
        "PYTHONPATH": str(ROOT),
    }
    argv = [sys.executable, "-m", "services.keys", "add", "--tenant", tenant]
    argv += ["--collections", collections, "--scopes", scopes]
    done = await asyncio.to_thread(
        subprocess.run, argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key and key not in done.stderr  # printed once, on stdout only
    return key


async def http_add_key(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    made = await client.post("/v1/keys", json=body, headers=ADMIN_AUTH)
    assert made.status_code == 201, made.text
    shown: dict[str, Any] = made.json()
    return shown


@pytest.fixture(scope="module")
async def tenants(data_servers: Servers) -> AsyncIterator[Tenants]:
    suffix = uuid.uuid4().hex[:8]
    a_collection, b_collection = f"ta_{suffix}", f"tb_{suffix}"
    query_app = build_query_app(query_settings(data_servers, answer_mode="extractive"))
    indexing_app = build_indexing_app(indexing_settings(data_servers))
    async with running(query_app) as query, running(indexing_app) as indexing:
        for name, text in [(a_collection, "A's plants"), (b_collection, "B's plants")]:
            doc = {"doc_id": "care", "title": "Care", "text": f"{text} are watered every week."}
            assert (await ingest(indexing, name, [doc]))["state"] == "succeeded"
        a_key = await cli_add_key(data_servers, "tenant-a", a_collection, "query,ingest")
        b = await http_add_key(
            indexing, tenant="tenant-b", scopes=["query", "ingest"], collections=[b_collection]
        )
        listed = (await indexing.get("/v1/keys", headers=ADMIN_AUTH)).json()["keys"]
        a_key_id = next(k["id"] for k in listed if k["tenant"] == "tenant-a")
        faq = await query.put(
            f"/v1/collections/{b_collection}/faq",
            json={"entries": [B_FAQ]},
            headers=bearer(b["key"]),
        )
        assert faq.status_code == 200, faq.text
        yield Tenants(
            query_app,
            indexing_app,
            query,
            indexing,
            bearer(a_key),
            bearer(b["key"]),
            a_collection,
            b_collection,
            a_key_id,
            b["id"],
        )


def ask(collection: str, **extra: Any) -> dict[str, Any]:
    return {"collection": collection, "question": QUESTION, **extra}


def chat(collection: str) -> dict[str, Any]:
    return {"model": collection, "messages": [{"role": "user", "content": QUESTION}]}


def assert_unknown_collection(response: httpx.Response, collection: str) -> None:
    """The very body of a collection that does not exist (see ``test_errors``)."""
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error == {
        "code": "collection_not_found",
        "message": f"collection {collection!r} does not exist",
        "detail": {"collection": collection},
    }


# --------------------------------------------------------------------------- own collections


async def test_each_tenant_works_on_its_own_collection(tenants: Tenants) -> None:
    for headers, name in [(tenants.a, tenants.a_collection), (tenants.b, tenants.b_collection)]:
        answered = await tenants.query.post("/v1/query", json=ask(name), headers=headers)
        assert answered.status_code == 200, answered.text
        retrieved = await tenants.query.post("/v1/retrieve", json=ask(name), headers=headers)
        assert retrieved.status_code == 200, retrieved.text
        listed = await tenants.indexing.get(f"/v1/collections/{name}/documents", headers=headers)
        assert [d["doc_id"] for d in listed.json()["documents"]] == ["care"]
    b_answer = (
        await tenants.query.post("/v1/query", json=ask(tenants.b_collection), headers=tenants.b)
    ).json()
    assert "B's plants" in b_answer["answer"]


# --------------------------------------------------------------------------- B's, seen by A


def b_requests(t: Tenants) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(service, method, path, JSON body) of every way in to B's collection."""
    c = t.b_collection
    faq = f"/v1/collections/{c}/faq"
    return [
        ("query", "POST", "/v1/query", ask(c)),
        ("query", "POST", "/v1/query", ask(c, stream=True)),
        ("query", "POST", "/v1/retrieve", ask(c)),
        ("query", "PUT", faq, {"entries": [{"question": "q?", "answer": "a"}]}),
        ("query", "GET", faq, None),
        ("query", "GET", f"{faq}/{B_FAQ['id']}", None),
        ("query", "DELETE", f"{faq}/{B_FAQ['id']}", None),
        ("query", "DELETE", faq, None),
        (
            "indexing",
            "POST",
            f"/v1/collections/{c}/documents",
            {"documents": [{"doc_id": "x", "text": "A was here."}]},
        ),
        ("indexing", "GET", f"/v1/collections/{c}/documents", None),
        ("indexing", "GET", f"/v1/collections/{c}/documents/care", None),
        ("indexing", "DELETE", f"/v1/collections/{c}/documents/care", None),
        ("indexing", "DELETE", f"/v1/collections/{c}", None),
    ]


async def send(
    t: Tenants, service: str, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    client = t.query if service == "query" else t.indexing
    return await client.request(method, path, json=body, headers=headers)


async def test_b_collection_is_404_to_a_everywhere_and_left_intact(tenants: Tenants) -> None:
    for service, method, path, body in b_requests(tenants):
        response = await send(tenants, service, method, path, body, tenants.a)
        assert_unknown_collection(response, tenants.b_collection)
        # and exactly what A sees for a collection that exists nowhere
        ghost = f"tg_{uuid.uuid4().hex[:8]}"
        ghost_path = path.replace(tenants.b_collection, ghost)
        ghost_body = (
            None
            if body is None
            else {**body, "collection": ghost}
            if "collection" in body
            else body
        )
        unknown = await send(tenants, service, method, ghost_path, ghost_body, tenants.a)
        assert_unknown_collection(unknown, ghost)

    listed = await tenants.indexing.get(
        f"/v1/collections/{tenants.b_collection}/documents", headers=tenants.b
    )
    assert [d["doc_id"] for d in listed.json()["documents"]] == ["care"]
    entry = await tenants.query.get(
        f"/v1/collections/{tenants.b_collection}/faq/{B_FAQ['id']}", headers=tenants.b
    )
    assert entry.status_code == 200 and entry.json()["answer"] == B_FAQ["answer"]


async def test_chat_completions_refuses_in_openai_shape(tenants: Tenants) -> None:
    for stream in (False, True):
        response = await tenants.query.post(
            "/v1/chat/completions",
            json={**chat(tenants.b_collection), "stream": stream},
            headers=tenants.a,
        )
        assert response.status_code == 404, response.text
        assert response.json() == {
            "error": {
                "message": f"collection {tenants.b_collection!r} does not exist",
                "type": "invalid_request_error",
                "param": "model",
                "code": "collection_not_found",
            }
        }
    own = await tenants.query.post(
        "/v1/chat/completions", json=chat(tenants.a_collection), headers=tenants.a
    )
    assert own.status_code == 200, own.text


async def test_models_lists_only_the_collections_a_key_sees(tenants: Tenants) -> None:
    seen_by_a = await tenants.query.get("/v1/models", headers=tenants.a)
    seen_by_admin = await tenants.query.get("/v1/models", headers=ADMIN_AUTH)

    assert [m["id"] for m in seen_by_a.json()["data"]] == [tenants.a_collection]
    admin_ids = {m["id"] for m in seen_by_admin.json()["data"]}
    assert {tenants.a_collection, tenants.b_collection} <= admin_ids


async def test_b_jobs_are_unknown_to_a(tenants: Tenants) -> None:
    queued = await tenants.indexing.post(
        f"/v1/collections/{tenants.b_collection}/documents",
        json={"documents": [{"doc_id": "care", "text": "B's plants are watered every week."}]},
        headers=tenants.b,
    )
    job = queued.json()["job_id"]

    by_a = await tenants.indexing.get(f"/v1/jobs/{job}", headers=tenants.a)
    never = await tenants.indexing.get("/v1/jobs/no-such-job", headers=tenants.a)

    assert by_a.status_code == 404 and by_a.json()["error"]["code"] == "job_not_found"
    assert by_a.json()["error"]["message"] == f"job {job!r} does not exist (or has expired)"
    assert never.json()["error"]["message"] == "job 'no-such-job' does not exist (or has expired)"
    assert (await tenants.indexing.get(f"/v1/jobs/{job}", headers=tenants.b)).status_code == 200


async def test_the_answer_cache_and_faq_never_serve_b_to_a(tenants: Tenants) -> None:
    b_asks = ask(tenants.b_collection)
    await tenants.query.post("/v1/query", json=b_asks, headers=tenants.b)
    cached = await tenants.query.post("/v1/query", json=b_asks, headers=tenants.b)
    assert cached.json()["cached"] is True

    by_a = await tenants.query.post("/v1/query", json=b_asks, headers=tenants.a)
    a_own = await tenants.query.post("/v1/query", json=ask(tenants.a_collection), headers=tenants.a)
    a_faq = await tenants.query.post(
        "/v1/query",
        json={**ask(tenants.a_collection), "question": B_FAQ["question"]},
        headers=tenants.a,
    )

    assert_unknown_collection(by_a, tenants.b_collection)
    assert "B's plants" not in by_a.text
    assert a_own.status_code == 200 and "B's plants" not in a_own.text
    assert a_faq.status_code == 200 and a_faq.json()["faq"] is None
    assert B_FAQ["answer"] not in a_faq.text


async def test_a_session_id_reused_by_another_key_reads_no_history(
    tenants: Tenants, data_servers: Servers
) -> None:
    """Both keys may query A's collection; the session belongs to the key that made it."""
    second = await cli_add_key(data_servers, "tenant-a", tenants.a_collection, "query")
    session = {"session_id": f"s-{uuid.uuid4().hex[:8]}"}
    first = await tenants.query.post(
        "/v1/query", json=ask(tenants.a_collection, **session), headers=tenants.a
    )
    assert first.status_code == 200, first.text
    follow_up = ask(tenants.a_collection, **session, question="And in winter?")

    forget = await tenants.query.delete(
        f"/v1/sessions/{session['session_id']}", headers=bearer(second)
    )
    other = await tenants.query.post("/v1/query", json=follow_up, headers=bearer(second))
    owner = await tenants.query.post("/v1/query", json=follow_up, headers=tenants.a)

    assert owner.json()["standalone_question"] is not None  # the owner's history was read
    assert other.status_code == 200 and other.json()["standalone_question"] is None
    assert forget.status_code == 404 and forget.json()["error"]["code"] == "session_not_found"


# --------------------------------------------------------------------------- every route


# routes that take no collection, and what guards them instead
NO_COLLECTION = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/models"),  # lists only what the key sees (test above)
    ("GET", "/v1/jobs/{job_id}"),  # the job's collection is checked (test above)
    ("DELETE", "/v1/sessions/{session_id}"),  # sessions belong to a key (test above)
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys"),
    ("DELETE", "/v1/keys/{key_id}"),  # admin, own tenant
    # the web page: static files and its config, no data (every API call it makes has a key)
    ("GET", "/ui"),
    ("GET", "/ui/"),
    ("GET", "/ui/config.json"),
    ("GET", "/ui/{name}"),
}
# routes that name the collection in the body: a body that names B's
BODY_COLLECTION = {
    ("POST", "/v1/query"): lambda c: ask(c),
    ("POST", "/v1/retrieve"): lambda c: ask(c),
    ("POST", "/v1/chat/completions"): chat,
}


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every API route, also those of included routers (FastAPI 0.16x keeps
    an included router whole, as one route holding ``original_router``)."""

    def walk(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):
                yield from walk(route.original_router.routes)
            elif hasattr(route, "routes"):  # a mount
                yield from walk(route.routes)

    found = sorted((m, r.path) for r in walk(app.routes) for m in r.methods or ())
    assert found, "no API route found: FastAPI changed how it keeps routes"
    return found


async def test_every_route_that_takes_a_collection_refuses_another_tenants(
    tenants: Tenants,
) -> None:
    checked: list[tuple[str, str]] = []
    for service, app in [("query", tenants.query_app), ("indexing", tenants.indexing_app)]:
        for method, path in api_routes(app):
            if (method, path) in NO_COLLECTION:
                continue
            if "{collection}" in path:
                filled = path.replace("{collection}", tenants.b_collection)
                filled = filled.replace("{entry_id}", "x").replace("{doc_id:path}", "x")
                assert "{" not in filled, f"fill the parameters of {path} in this test"
                body: dict[str, Any] | None = {} if method in {"POST", "PUT", "PATCH"} else None
            else:
                make = BODY_COLLECTION.get((method, path))
                assert make is not None, (
                    f"{method} {path} takes no collection this test knows of: check its "
                    "collection (auth.require_scope / check_collection) and list it here"
                )
                filled, body = path, make(tenants.b_collection)
            response = await send(tenants, service, method, filled, body, tenants.a)
            assert response.status_code == 404, f"{method} {path}: {response.text}"
            assert response.json()["error"]["code"] == "collection_not_found", f"{method} {path}"
            checked.append((method, path))
    assert len(checked) >= 13


# --------------------------------------------------------------------------- key admin


async def test_keys_are_managed_by_admins_within_their_tenant(
    tenants: Tenants, data_servers: Servers
) -> None:
    prefix = tenants.a_collection[:5]  # "ta_" + 2 hex digits: A's collection is under it
    a_admin = bearer(await cli_add_key(data_servers, "tenant-a", f"{prefix}*", "admin"))

    by_reader = await tenants.indexing.post(
        "/v1/keys", json={"scopes": ["query"], "collections": ["*"]}, headers=tenants.a
    )
    outside = await tenants.indexing.post(
        "/v1/keys", json={"scopes": ["query"], "collections": ["*"]}, headers=a_admin
    )
    other_tenant = await tenants.indexing.post(
        "/v1/keys",
        json={"tenant": "tenant-b", "scopes": ["query"], "collections": [f"{prefix}x"]},
        headers=a_admin,
    )
    inside = await tenants.indexing.post(
        "/v1/keys",
        json={"scopes": ["query"], "collections": [tenants.a_collection]},
        headers=a_admin,
    )
    listed = await tenants.indexing.get("/v1/keys", headers=a_admin)
    revoke_b = await tenants.indexing.delete(f"/v1/keys/{tenants.b_key_id}", headers=a_admin)

    assert by_reader.status_code == 403 and by_reader.json()["error"]["code"] == "forbidden"
    assert outside.status_code == 403 and other_tenant.status_code == 403
    assert inside.status_code == 201, inside.text
    assert inside.json()["tenant"] == "tenant-a" and inside.json()["key"].startswith("dqk_")
    keys = listed.json()["keys"]
    assert {k["tenant"] for k in keys} == {"tenant-a"}
    assert all("key" not in k for k in keys) and inside.json()["key"] not in listed.text
    assert revoke_b.status_code == 404 and revoke_b.json()["error"]["code"] == "key_not_found"
    made = await tenants.query.post(
        "/v1/query", json=ask(tenants.a_collection), headers=bearer(inside.json()["key"])
    )
    assert made.status_code == 200, made.text


async def test_a_revoked_key_is_refused_within_seconds(tenants: Tenants) -> None:
    made = await http_add_key(
        tenants.indexing, tenant="tenant-a", scopes=["query"], collections=[tenants.a_collection]
    )
    headers = bearer(made["key"])
    assert (
        await tenants.query.post("/v1/query", json=ask(tenants.a_collection), headers=headers)
    ).status_code == 200

    revoked = await tenants.indexing.delete(f"/v1/keys/{made['id']}", headers=ADMIN_AUTH)
    assert revoked.status_code == 204

    async with asyncio.timeout(8):  # each process remembers a grant for 5 s
        while True:
            after = await tenants.query.post(
                "/v1/query", json=ask(tenants.a_collection), headers=headers
            )
            if after.status_code == 401:
                break
            assert after.status_code == 200
            await asyncio.sleep(0.25)
    assert after.json()["error"]["code"] == "unauthorized"
    listed = (await tenants.indexing.get("/v1/keys", headers=ADMIN_AUTH)).json()["keys"]
    assert made["id"] not in {k["id"] for k in listed}
