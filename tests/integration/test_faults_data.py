"""Fault injection on the data side, under load: a real redis-server and a real milvus-lite server
of the test's own are SIGKILLed while a few clients keep asking, then started again on the same
port (and data). The query service (one in-process app, never restarted) must answer through a
Redis outage (uncached, no 5xx, stored API keys seen lately still let in), refuse uncached
questions with 503 + ``Retry-After`` in the error envelope through a Milvus outage while cached
and FAQ answers keep coming, and recover by itself once the server is back.

Each test prints its figures (requests during the outage, failures, time to recovery): run with
``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from deploy import processes, stack
from services.common.admin import build_admin_app
from services.common.grants import ALL_COLLECTIONS, Scope
from services.common.key_store import KeyStore
from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers, start_milvus
from tests.fault_load import (
    Call,
    LoadDriver,
    Outcome,
    kill_hard,
    start_again,
    statuses,
    summary,
)
from tests.fixtures.documents import ENGLISH_GUIDE
from tests.integration.conftest import (
    ADMIN_AUTH,
    QUERY_AUTH,
    build_indexing_app,
    indexing_settings,
    ingest,
    query_settings,
    running,
)

GUIDE = {"doc_id": "grinder-guide", "title": "Kestrel Coffee Grinder Guide", "text": ENGLISH_GUIDE}
QUESTION = "Which grind setting of the Kestrel grinder suits pour-over?"
FAQ = {"question": "How long may the Kestrel run without a pause?", "answer": "90 seconds."}
UNLIMITED = {"queries_per_minute": 1_000_000}  # the limiter runs (through Redis), never refuses
KINDS = ("cached", "new", "retrieve", "faq")


def query_mix(collection: str, auths: list[dict[str, str]]) -> Callable[[int, int], Call]:
    """A repeated question (cache), new questions (retrieval), ``/v1/retrieve`` and an FAQ
    question, in turn; client ``n`` sends the key ``auths[n % len(auths)]``."""

    def call(client: int, n: int) -> Call:
        kind = KINDS[n % len(KINDS)]
        question = {
            "cached": QUESTION,
            "new": f"{QUESTION} (case {client}-{n})",
            "retrieve": f"{QUESTION} (case {client}-{n})",
            "faq": FAQ["question"],
        }[kind]
        path = "/v1/retrieve" if kind == "retrieve" else "/v1/query"
        body = {"collection": collection, "question": question}
        return Call(kind, path, body, auths[client % len(auths)])

    return call


def cached_answer(outcome: Outcome) -> bool:
    return outcome.ok and bool((outcome.body or {}).get("cached"))


async def put_faq(client: httpx.AsyncClient, collection: str) -> None:
    response = await client.put(
        f"/v1/collections/{collection}/faq", json={"entries": [FAQ]}, headers=ADMIN_AUTH
    )
    assert response.status_code == 200, response.text


async def readiness(app: FastAPI, client: httpx.AsyncClient) -> tuple[httpx.Response, Any]:
    """(the public ``/readyz``, the admin port's detailed body)."""
    public = await client.get("/readyz")
    transport = httpx.ASGITransport(app=build_admin_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as admin:
        detail = (await admin.get("/readyz")).json()
    return public, detail


@pytest.fixture
def persistent_redis(runtime_dir: Path) -> Iterator[tuple[processes.ProcessSpec, int]]:
    """A Redis of this test's own, with an append-only file as a production Redis has, so the
    restarted server holds what the killed one held (API keys, versions)."""
    port = processes.free_port()
    name = f"fault-redis-{uuid.uuid4().hex[:6]}"
    data_dir = runtime_dir / f"{name}-data"
    data_dir.mkdir()
    base = stack.redis_spec(stack.StackPaths(runtime_dir), port, name=name)
    command = [*base.command, "--appendonly", "yes", "--appendfsync", "always"]
    spec = processes.ProcessSpec(
        name, [*command, "--dir", str(data_dir)], base.log_path, base.pid_path
    )
    start_again(spec, stack.redis_ready(port), 30)
    yield spec, port
    processes.stop(spec.pid_path)


@pytest.fixture
def own_milvus(runtime_dir: Path) -> Iterator[tuple[processes.ProcessSpec, str]]:
    spec, uri = start_milvus(runtime_dir, f"fault-milvus-{uuid.uuid4().hex[:6]}")
    yield spec, uri
    processes.stop(spec.pid_path)


async def add_stored_key(redis_url: str, prefix: str) -> str:
    """A key made the way ``docqa keys add`` makes it: it lives in Redis only."""
    redis = Redis.from_url(redis_url)
    try:
        key, _ = await KeyStore(redis, prefix=prefix).add(
            tenant="acme", scopes=frozenset({Scope.QUERY}), collections=(ALL_COLLECTIONS,)
        )
    finally:
        await redis.aclose()
    return key


async def test_redis_killed_and_restarted_under_load(
    indexing_client: httpx.AsyncClient,
    data_servers: Servers,
    persistent_redis: tuple[processes.ProcessSpec, int],
    collection: str,
) -> None:
    spec, port = persistent_redis
    await ingest(indexing_client, collection, [GUIDE])  # into the session's Milvus
    redis_url = f"redis://127.0.0.1:{port}/0"
    prefix = "fault" + uuid.uuid4().hex[:6]
    settings = query_settings(
        data_servers,
        redis={"url": redis_url, "key_prefix": prefix, "socket_timeout_s": 2},
        answer_mode="extractive",
        rate_limit=UNLIMITED,
    )
    app = build_query_app(settings)
    async with running(app) as client:
        stored = {"Authorization": f"Bearer {await add_stored_key(redis_url, prefix)}"}
        await put_faq(client, collection)
        driver = LoadDriver(client, query_mix(collection, [QUERY_AUTH, stored]))
        async with driver.running():
            await driver.until(cached_answer, timeout_s=120)
            killed = time.monotonic()
            await asyncio.to_thread(kill_hard, spec)
            # longer than the 5 s a stored key's grant is remembered: it is checked again
            await driver.at_least(40, since=killed, timeout_s=120)
            await asyncio.sleep(max(0.0, killed + 7 - time.monotonic()))
            public, detail = await readiness(app, client)
            restarted = time.monotonic()
            await asyncio.to_thread(start_again, spec, stack.redis_ready(port), 30)
            up = time.monotonic()
            await driver.until(lambda o: o.sent_at >= up and cached_answer(o), timeout_s=60)
            recovered = time.monotonic()
            await driver.at_least(20, since=recovered, timeout_s=60)

    outage = driver.between(killed, restarted)
    print(
        f"\nredis kill: outage {restarted - killed:.1f} s {summary(outage)}; restart "
        f"{up - restarted:.1f} s; cache back {recovered - up:.2f} s after; "
        f"overall {summary(driver.outcomes)}"
    )
    assert [o for o in driver.outcomes if not o.ok] == [], statuses(driver.outcomes)
    settled = driver.between(killed + 1, restarted)  # the watcher has seen the connection go
    assert settled and not any(cached_answer(o) for o in settled)  # answered, uncached
    assert {"cached", "new", "retrieve", "faq"} <= {o.kind for o in settled}
    assert (public.status_code, public.json()) == (200, {"status": "ready"})
    # degraded, not out: no LLM here either (answers are extractive), also only degrading
    assert detail["status"] == "degraded" and detail["failed"] == ["redis", "llm"], detail


async def test_milvus_killed_and_restarted_under_load(
    data_servers: Servers, own_milvus: tuple[processes.ProcessSpec, str], collection: str
) -> None:
    spec, milvus_uri = own_milvus
    port = int(milvus_uri.rsplit(":", 1)[1])
    wiring: dict[str, Any] = {
        "milvus": {"uri": milvus_uri},
        "redis": {"url": data_servers.redis_url, "key_prefix": "fault" + uuid.uuid4().hex[:6]},
    }
    async with running(build_indexing_app(indexing_settings(data_servers, **wiring))) as indexing:
        await ingest(indexing, collection, [GUIDE])
    settings = query_settings(
        data_servers, **wiring, answer_mode="extractive", rate_limit=UNLIMITED
    )
    app = build_query_app(settings)
    async with running(app) as client:
        await put_faq(client, collection)
        driver = LoadDriver(client, query_mix(collection, [QUERY_AUTH]))
        async with driver.running():
            await driver.until(cached_answer, timeout_s=120)
            killed = time.monotonic()
            await asyncio.to_thread(kill_hard, spec)
            await driver.at_least(40, since=killed, timeout_s=120)
            down, down_detail = await readiness(app, client)
            restarted = time.monotonic()
            await asyncio.to_thread(start_again, spec, stack.milvus_ready(port), 120)
            up = time.monotonic()
            await driver.until(
                lambda o: o.sent_at >= up and o.ok and o.kind in {"new", "retrieve"},
                timeout_s=120,
            )
            recovered = time.monotonic()
            await driver.at_least(20, since=recovered, timeout_s=60)
            back, _ = await readiness(app, client)

    outage = driver.between(killed, restarted)
    print(
        f"\nmilvus kill: outage {restarted - killed:.1f} s {summary(outage)}; restart "
        f"{up - restarted:.1f} s; retrieval back {recovered - up:.2f} s after; "
        f"overall {summary(driver.outcomes)}"
    )
    refused = [o for o in driver.outcomes if not o.ok]
    assert all(o.status == 503 for o in refused), statuses(refused)
    assert all(o.retry_after and int(o.retry_after) >= 1 for o in refused)
    assert {o.error_code for o in refused} == {"dependency_unavailable"}
    # the outage was felt, by the questions that need Milvus only
    assert {o.kind for o in outage if not o.ok} == {"new", "retrieve"}, statuses(outage)
    assert all(o.ok for o in outage if o.kind in {"cached", "faq"}), statuses(outage)
    after = driver.between(recovered)
    assert after and all(o.ok for o in after), statuses(after)
    assert (down.status_code, down.json()) == (503, {"status": "not_ready"})
    assert down_detail["failed"] == ["milvus", "llm"], down_detail  # the required one first
    assert (back.status_code, back.json()) == (200, {"status": "ready"})
