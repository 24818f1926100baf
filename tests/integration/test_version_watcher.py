"""Local version copies against a real Redis: announced bumps void them at once, a read that
raced a bump is not kept, a lost subscription trusts nothing, and a hot cache hit costs no
round trip (counted by Redis itself)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from docqa_core.redis_keys import version_key
from indexing.index_version import bump_version
from query_engine.answer import VERIFIED_WITHOUT_CLAIMS, Answer
from query_engine.cache import AnswerCache, AnswerKeyParts
from query_engine.versions import VersionWatcher
from tests.conftest import Servers

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix() -> str:
    return "vw-" + uuid.uuid4().hex[:8]


@pytest.fixture
async def redis(data_servers: Servers) -> AsyncIterator[Redis]:
    client = Redis.from_url(data_servers.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def watcher(redis: Redis, prefix: str) -> AsyncIterator[VersionWatcher]:
    w = VersionWatcher(redis, prefix=prefix, max_age_s=30, reconnect_delay_s=0.05)
    w.start()
    await until(lambda: w.live)
    yield w
    await w.aclose()


async def until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Wait for a state; the timeout only bounds a test that would otherwise hang."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def learned(watcher: VersionWatcher, redis: Redis, key: str) -> int:
    token = watcher.read_token(key)
    raw = await redis.get(key)
    version = int(raw) if raw is not None else 0
    watcher.learn(token, version)
    return version


async def test_an_announced_bump_voids_the_local_copy(
    watcher: VersionWatcher, redis: Redis, prefix: str
) -> None:
    key = version_key(prefix, "kb")
    await bump_version(redis, prefix, "kb")
    assert await learned(watcher, redis, key) == 1
    assert watcher.known(key) == 1

    await bump_version(redis, prefix, "kb")
    await until(lambda: watcher.known(key) is None)
    assert await learned(watcher, redis, key) == 2
    assert watcher.known(key) == 2


async def test_a_read_that_raced_a_bump_is_not_kept(
    watcher: VersionWatcher, redis: Redis, prefix: str
) -> None:
    key = version_key(prefix, "kb")
    token = watcher.read_token(key)
    stale = int(await redis.get(key) or 0)  # read, then the bump lands before we learn it
    before = watcher.invalidations
    await bump_version(redis, prefix, "kb")
    await until(lambda: watcher.invalidations > before)
    watcher.learn(token, stale)
    assert watcher.known(key) is None


async def test_a_lost_subscription_trusts_nothing_until_it_is_back(
    watcher: VersionWatcher, redis: Redis, prefix: str
) -> None:
    key = version_key(prefix, "kb")
    await learned(watcher, redis, key)
    assert watcher.known(key) == 0
    token = watcher.read_token(key)

    await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    await until(lambda: watcher.read_token(key).generation != token.generation)
    assert watcher.known(key) is None
    await until(lambda: watcher.live)  # resubscribed by itself
    watcher.learn(token, 0)  # read before the disconnect: a bump may have been missed
    assert watcher.known(key) is None
    await learned(watcher, redis, key)
    assert watcher.known(key) == 0


async def test_copies_expire_after_max_age(redis: Redis, prefix: str) -> None:
    now = 1000.0  # the watcher's clock, moved by the test: no bet on how fast this machine is
    watcher = VersionWatcher(redis, prefix=prefix, max_age_s=0.2, clock=lambda: now)
    watcher.start()
    try:
        await until(lambda: watcher.live)
        key = version_key(prefix, "kb")
        await learned(watcher, redis, key)
        now += 0.15
        assert watcher.known(key) == 0  # still fresh
        now += 0.1
        assert watcher.known(key) is None  # older than max_age_s
    finally:
        await watcher.aclose()


def key_parts(question: str) -> AnswerKeyParts:
    return AnswerKeyParts(
        collection="kb",
        question=question,
        filters={},
        top_k=3,
        model="m",
        prompt_version="1",
        grounding_policy="flag",
        max_answer_tokens=64,
    )


TWO_YEARS = Answer(
    answer="two years",
    citations=[],
    grounding=VERIFIED_WITHOUT_CLAIMS,
    not_found=False,
    timings_ms={},
)


async def lookups_in_redis(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_a_hot_hit_costs_no_round_trip_and_a_reingest_still_misses(
    watcher: VersionWatcher, redis: Redis, prefix: str
) -> None:
    cache = AnswerCache(
        redis, prefix=prefix, ttl_s=60, lock_ttl_s=5, versions=watcher, hot_entries=16
    )
    parts = key_parts("How long is the warranty?")
    key, hit = await cache.lookup(parts)
    assert hit is None and key is not None
    await cache.put(key, TWO_YEARS)

    calls_before = await lookups_in_redis(redis)
    for _ in range(5):
        _, hit = await cache.lookup(parts)
        assert hit is not None and hit.to_answer().answer == "two years"
    assert await lookups_in_redis(redis) == calls_before

    await bump_version(redis, prefix, "kb")  # what ingestion does after committing
    await until(lambda: watcher.known(version_key(prefix, "kb")) is None)
    new_key, hit = await cache.lookup(parts)
    assert hit is None
    assert new_key != key
    assert await lookups_in_redis(redis) == calls_before + 1


async def test_without_a_live_watcher_every_lookup_asks_redis(redis: Redis, prefix: str) -> None:
    watcher = VersionWatcher(redis, prefix=prefix)  # never started: not live
    cache = AnswerCache(
        redis, prefix=prefix, ttl_s=60, lock_ttl_s=5, versions=watcher, hot_entries=16
    )
    parts = key_parts("Where is the serial number?")
    key, _ = await cache.lookup(parts)
    assert key is not None
    await cache.put(key, TWO_YEARS.model_copy(update={"answer": "under the base"}))
    calls_before = await lookups_in_redis(redis)
    for _ in range(3):
        _, hit = await cache.lookup(parts)
        assert hit is not None
    assert await lookups_in_redis(redis) == calls_before + 3
