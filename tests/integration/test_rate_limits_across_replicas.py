"""Per-key rate limits against a real Redis: the Lua script's arithmetic (fake clock), queries
per minute across two query-service replicas, concurrent streams, ingested bytes per day, and
failing open when Redis goes away."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from deploy import processes, stack
from docqa_core.redis_keys import rate_limit_key
from query_engine.answer import Answer, Grounding
from query_engine.answering import AnswerStream
from query_engine.memory import key_fingerprint
from services.common.rate_limit_settings import RateLimitSettings
from services.common.rate_limits import RateLimiter
from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.integration.conftest import (
    ADMIN_AUTH,
    QUERY_AUTH,
    QUERY_KEY,
    build_indexing_app,
    indexing_settings,
    query_settings,
    running,
)

FAQ = {"id": "hours", "question": "When does the library open?", "answer": "At 9."}
ASKED = {"collection": "", "question": FAQ["question"]}


def prefix() -> str:
    return "rl" + uuid.uuid4().hex[:10]


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000.0

    def __call__(self) -> float:
        return self.ms


@pytest.fixture
async def redis(redis_server: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server)
    yield client
    await client.aclose()


async def test_the_gcra_admits_a_minutes_worth_then_one_per_interval(redis: Redis) -> None:
    clock = Clock()
    settings = RateLimitSettings(queries_per_minute=3)
    limiter = RateLimiter(redis, prefix=prefix(), settings=settings, clock=clock)
    first = [await limiter.admit_query("k") for _ in range(3)]
    assert [(d.allowed, d.remaining) for d in first] == [(True, 2), (True, 1), (True, 0)]
    assert [d.reset_s for d in first] == [20, 40, 60]
    refused = await limiter.admit_query("k")
    assert (refused.allowed, refused.refused_by, refused.remaining) == (False, "rate", 0)
    assert (refused.retry_after_s, refused.reset_s) == (20, 60)
    clock.ms += 19_999
    assert not (await limiter.admit_query("k")).allowed  # refusals do not count
    clock.ms += 1
    again = await limiter.admit_query("k")
    assert (again.allowed, again.remaining, again.reset_s) == (True, 0, 60)
    clock.ms += 60_000  # idle a minute: the whole burst is back
    assert (await limiter.admit_query("k")).remaining == 2
    assert (await limiter.admit_query("other")).remaining == 2  # keys are counted apart


async def test_bytes_per_day_cost_their_size(redis: Redis) -> None:
    clock = Clock()
    settings = RateLimitSettings(ingest_bytes_per_day=8640)  # 1 byte per 10 s
    limiter = RateLimiter(redis, prefix=prefix(), settings=settings, clock=clock)
    taken = await limiter.charge_ingest("k", 8000)
    assert (taken.allowed, taken.remaining, taken.limit) == (True, 640, 8640)
    refused = await limiter.charge_ingest("k", 1000)
    assert not refused.allowed and refused.retry_after_s == 3600  # 360 bytes short
    clock.ms += 3_600_000
    assert (await limiter.charge_ingest("k", 1000)).remaining == 0
    too_big = await limiter.charge_ingest("fresh", 9000)  # never fits
    assert not too_big.allowed and too_big.retry_after_s == 86_400


async def evalsha_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_busy_keys_are_charged_in_batches_never_past_the_limit(redis: Redis) -> None:
    clock = Clock()  # frozen: a minute's worth is all there is
    settings = RateLimitSettings(queries_per_minute=20_000)
    shared = prefix()
    replicas = [RateLimiter(redis, prefix=shared, settings=settings, clock=clock) for _ in "ab"]
    before = await evalsha_calls(redis)
    first = [await replicas[i % 2].admit_query("k") for i in range(16_000)]
    trips = await evalsha_calls(redis) - before
    assert all(d.allowed for d in first)
    assert trips < 16_000 / 20  # batches, not one round trip per query
    rest = [await replicas[i % 2].admit_query("k") for i in range(8_000)]
    admitted = sum(d.allowed for d in first + rest)
    assert admitted == 20_000  # exactly the limit over both replicas: none over, none lost
    assert not any(d.allowed for d in rest[-1000:])


async def test_stream_slots_are_taken_released_and_expire(redis: Redis) -> None:
    clock = Clock()
    settings = RateLimitSettings(queries_per_minute=0, concurrent_streams=2)
    limiter = RateLimiter(redis, prefix=prefix(), settings=settings, stream_lease_s=5, clock=clock)
    assert (await limiter.admit_query("k", stream_id="a")).allowed
    assert (await limiter.admit_query("k", stream_id="b")).allowed
    refused = await limiter.admit_query("k", stream_id="c")
    assert (refused.allowed, refused.refused_by, refused.limit) == (False, "streams", 2)
    assert (await limiter.admit_query("k")).allowed  # not a stream
    await limiter.release_stream("k", "a")
    assert (await limiter.admit_query("k", stream_id="c")).allowed
    clock.ms += 5_001  # a replica that died never released "b" and "c": their leases end
    assert (await limiter.admit_query("k", stream_id="d")).allowed
    assert (await limiter.admit_query("k", stream_id="e")).allowed


async def test_the_n_plus_first_query_is_refused_across_two_replicas(
    data_servers: Servers, collection: str
) -> None:
    settings = query_settings(
        data_servers,
        redis={"url": data_servers.redis_url, "key_prefix": prefix()},
        rate_limit={"queries_per_minute": 3},
    )
    first, second = build_query_app(settings), build_query_app(settings)
    asked = {**ASKED, "collection": collection}
    async with running(first) as a, running(second) as b:
        put = await a.put(
            f"/v1/collections/{collection}/faq", json={"entries": [FAQ]}, headers=ADMIN_AUTH
        )
        assert put.status_code == 200, put.text  # admin routes are not counted
        admitted = [
            await a.post("/v1/query", json=asked, headers=QUERY_AUTH),  # an FAQ hit counts
            await b.post("/v1/query", json=asked, headers=QUERY_AUTH),
            await a.post("/v1/retrieve", json=asked, headers=QUERY_AUTH),  # a 404 counts too
        ]
        refused = await b.post("/v1/query", json=asked, headers=QUERY_AUTH)
        chat = {"model": collection, "messages": [{"role": "user", "content": "hours?"}]}
        refused_chat = await a.post("/v1/chat/completions", json=chat, headers=QUERY_AUTH)
        unauthorized = await b.post("/v1/query", json=asked)

    assert [r.status_code for r in admitted] == [200, 200, 404]
    assert [r.headers["X-RateLimit-Remaining"] for r in admitted] == ["2", "1", "0"]
    assert all(r.headers["X-RateLimit-Limit"] == "3" for r in admitted)
    for response in (refused, refused_chat):
        assert response.status_code == 429, response.text
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert 1 <= int(response.headers["Retry-After"]) <= 20
        assert 40 <= int(response.headers["X-RateLimit-Reset"]) <= 60
    assert refused.json()["error"]["code"] == "rate_limited" and refused.json()["request_id"]
    assert refused_chat.json()["error"]["type"] == "rate_limit_error"  # OpenAI's shape
    assert unauthorized.status_code == 401 and "X-RateLimit-Limit" not in unauthorized.headers


ANSWER = Answer(
    answer="At 9.",
    citations=[],
    grounding=Grounding(verified=True, unsupported=[], checked_claims=0),
    not_found=False,
    timings_ms={},
)


async def until_one_stream_is_open(redis: Redis, streams: str) -> None:
    async with asyncio.timeout(30):
        while await redis.zcard(streams) == 0:  # noqa: ASYNC110 (set by the app's own Redis calls)
            await asyncio.sleep(0.01)


async def test_concurrent_streams_are_limited_across_replicas(
    data_servers: Servers, collection: str
) -> None:
    key_prefix = prefix()
    settings = query_settings(
        data_servers,
        redis={"url": data_servers.redis_url, "key_prefix": key_prefix},
        rate_limit={"queries_per_minute": 0, "concurrent_streams": 1},
    )
    first, second = build_query_app(settings), build_query_app(settings)
    gate = asyncio.Event()

    async def held_stream(*_: Any) -> AnswerStream:
        await gate.wait()
        return AnswerStream.complete(ANSWER)

    asked = {"collection": collection, "question": "anything?", "stream": True}
    streams = rate_limit_key(key_prefix, key_fingerprint(QUERY_KEY), "streams")
    async with running(first) as a, running(second) as b:
        first.state.runtime.answerer.stream = held_stream
        held = asyncio.create_task(a.post("/v1/query", json=asked, headers=QUERY_AUTH))
        redis = first.state.runtime.clients.redis
        await until_one_stream_is_open(redis, streams)
        refused = await b.post("/v1/query", json=asked, headers=QUERY_AUTH)
        chat = {"model": collection, "messages": [{"role": "user", "content": "?"}], "stream": 1}
        refused_chat = await b.post("/v1/chat/completions", json=chat, headers=QUERY_AUTH)
        not_streamed = await b.post("/v1/retrieve", json=asked, headers=QUERY_AUTH)
        gate.set()
        finished = await held
        assert await redis.zcard(streams) == 0  # given back when the stream ended
        after = await b.post("/v1/query", json=asked, headers=QUERY_AUTH)

    assert finished.status_code == 200 and "event: done" in finished.text
    for response in (refused, refused_chat):
        assert response.status_code == 429, response.text
        assert response.headers["X-RateLimit-Limit"] == "1"
        assert response.headers["Retry-After"] == "1"
    assert refused.json()["error"]["detail"]["refused_by"] == "streams"
    assert not_streamed.status_code == 404  # only streams take a slot
    assert after.status_code != 429  # (404: the collection does not exist)


async def test_ingested_bytes_per_day_on_the_indexing_service(
    data_servers: Servers, collection: str
) -> None:
    settings = indexing_settings(
        data_servers,
        redis={"url": data_servers.redis_url, "key_prefix": prefix()},
        rate_limit={"ingest_bytes_per_day": 3000},
    )
    document = {"doc_id": "a", "text": "The library opens at 9. " * 50}  # about 1.3 KB of JSON
    url = f"/v1/collections/{collection}/documents"
    async with running(build_indexing_app(settings)) as client:
        sent = [
            await client.post(
                url, json={"documents": [{**document, "doc_id": str(n)}]}, headers=ADMIN_AUTH
            )
            for n in range(3)
        ]
        files = {"files": ("notes.txt", b"x" * 100, "text/plain")}
        upload = await client.post(url, files=files, headers=ADMIN_AUTH)

    assert [r.status_code for r in sent] == [202, 202, 429], sent[-1].text
    assert sent[0].headers["X-RateLimit-Limit"] == "3000"
    used = 3000 - int(sent[0].headers["X-RateLimit-Remaining"])
    assert 1200 < used < 1400
    body = sent[2].json()
    assert (
        body["error"]["code"] == "rate_limited"
        and "bytes ingested per day" in body["error"]["message"]
    )
    assert int(sent[2].headers["Retry-After"]) > 3600 and sent[2].headers["X-RateLimit-Reset"]
    assert upload.status_code == 202  # a 100-byte file still fits
    assert int(upload.headers["X-RateLimit-Remaining"]) == 3000 - 2 * used - 100


async def test_requests_are_served_when_redis_is_down(
    data_servers: Servers, collection: str, runtime_dir: Path
) -> None:
    port = processes.free_port()
    spec = stack.redis_spec(stack.StackPaths(runtime_dir), port, name="rl-redis")
    processes.start(spec)
    try:
        processes.wait_until_ready(spec, stack.redis_ready(port), timeout_s=30)
        settings = query_settings(
            data_servers,
            redis={"url": f"redis://127.0.0.1:{port}/0", "key_prefix": prefix()},
            rate_limit={"queries_per_minute": 1},
        )
        asked = {"collection": collection, "question": "anything?"}
        async with running(build_query_app(settings)) as client:
            limited = await client.post("/v1/retrieve", json=asked, headers=QUERY_AUTH)
            processes.stop(spec.pid_path)
            served = [
                await client.post("/v1/retrieve", json=asked, headers=QUERY_AUTH) for _ in range(3)
            ]
    finally:
        processes.stop(spec.pid_path)

    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert [r.status_code for r in served] == [404, 404, 404]  # fail open: none is a 429
    assert all("X-RateLimit-Limit" not in r.headers for r in served)


def query_service(runtime_dir: Path, servers: Servers, key_prefix: str, name: str) -> str:
    """``docqa serve query`` as its own OS process, limited to 3 queries a minute per key."""
    port = processes.free_port()
    env = {
        "DOCQA_REDIS_URL": servers.redis_url,
        "DOCQA_REDIS_KEY_PREFIX": key_prefix,
        "DOCQA_MILVUS_URI": servers.milvus_uri,
        "DOCQA_LLM_ENDPOINTS": "http://127.0.0.1:9/v1",  # never asked: /v1/retrieve needs no LLM
        "DOCQA_AUTH_QUERY_KEYS": QUERY_KEY,
        "DOCQA_RATE_LIMIT_QUERIES_PER_MINUTE": "3",
        "DOCQA_LOG_LEVEL": "warning",
    }
    spec = stack.service_spec(stack.StackPaths(runtime_dir), "query", port, env, name=name)
    processes.start(spec)
    url = f"http://127.0.0.1:{port}"
    processes.wait_until_ready(spec, stack.http_ready(f"{url}/healthz"), timeout_s=180)
    return url


def test_the_n_plus_first_query_is_refused_across_two_service_processes(
    data_servers: Servers, collection: str, runtime_dir: Path
) -> None:
    import httpx

    key_prefix = prefix()
    names = [f"rl-query-{n}-{key_prefix}" for n in "ab"]
    try:
        urls = [query_service(runtime_dir, data_servers, key_prefix, name) for name in names]
        asked = {"collection": collection, "question": "anything?"}
        replies = [
            httpx.post(f"{urls[n % 2]}/v1/retrieve", json=asked, headers=QUERY_AUTH, timeout=60)
            for n in range(4)
        ]
    finally:
        for name in names:
            processes.stop(stack.StackPaths(runtime_dir).run / f"{name}.pid")

    assert [r.status_code for r in replies[:3]] == [404, 404, 404]  # counted (no such collection)
    assert [r.headers["X-RateLimit-Remaining"] for r in replies[:3]] == ["2", "1", "0"]
    refused = replies[3]  # the 4th, on the other process than the 3rd
    assert refused.status_code == 429, refused.text
    assert refused.headers["X-RateLimit-Limit"] == "3"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"
