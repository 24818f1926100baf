"""The pure parts of the rate limits: headers, the script's reply, settings, the stream sniffing,
and failing open with a dead Redis. The Lua arithmetic runs against a real Redis in
tests/integration/test_rate_limits.py."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from docqa_core.errors import RateLimited
from query_engine.memory import key_fingerprint
from services.common.errors import docqa_error_response
from services.common.rate_limit_settings import KeyLimits, RateLimitSettings
from services.common.rate_limits import ADMITTED, Decision, RateLimiter, decision_from_reply
from services.common.rate_limits import refusal as make_refusal
from services.common.settings import IndexingSettings, QuerySettings
from services.query_api import openai_errors
from services.query_api.rate_limits import wants_stream
from tests.unit._service_apps import (
    ADMIN_AUTH,
    QUERY_AUTH,
    client_for,
    indexing_app,
    query_app,
)

DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_headers_of_an_admitted_and_a_refused_request() -> None:
    admitted = decision_from_reply([0, 600, 599, 100, 0])
    assert admitted == Decision(allowed=True, limit=600, remaining=599, reset_s=0.1)
    assert admitted.headers() == {
        "X-RateLimit-Limit": "600",
        "X-RateLimit-Remaining": "599",
        "X-RateLimit-Reset": "1",  # seconds, rounded up
    }
    refused = decision_from_reply([1, 3, 0, 59_001, 19_001])
    assert (refused.allowed, refused.refused_by, refused.retry_after_s) == (False, "rate", 19.001)
    assert refused.headers()["X-RateLimit-Reset"] == "60"
    streams = decision_from_reply([2, 8, 0, 1000, 1000])
    assert (streams.refused_by, streams.headers()["X-RateLimit-Limit"]) == ("streams", "8")


def test_no_rate_limit_means_no_headers() -> None:
    assert decision_from_reply([0, 0, -1, 0, 0]) is ADMITTED
    assert ADMITTED.headers() == {} and ADMITTED.raw_headers() == []


def test_a_refusal_is_a_429_with_retry_after_and_the_limit_headers() -> None:
    refused = decision_from_reply([1, 3, 0, 59_001, 19_001])
    error = make_refusal(refused, "requests per minute")
    assert isinstance(error, RateLimited) and "at most 3 requests per minute" in error.message
    for response in (docqa_error_response(error), openai_errors.docqa_error_response(error)):
        assert response.status_code == 429
        assert response.headers["retry-after"] == "20"
        assert response.headers["x-ratelimit-limit"] == "3"
        assert response.headers["x-ratelimit-remaining"] == "0"
        assert response.headers["x-ratelimit-reset"] == "60"


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("DOCQA_"):
            monkeypatch.delenv(name)
    defaults = QuerySettings().rate_limit
    assert (defaults.queries_per_minute, defaults.concurrent_streams) == (600, 8)
    assert defaults.ingest_bytes_per_day == 2 * 1024**3
    monkeypatch.setenv("DOCQA_RATE_LIMIT_QUERIES_PER_MINUTE", "60")
    monkeypatch.setenv("DOCQA_RATE_LIMIT_CONCURRENT_STREAMS", "0")
    monkeypatch.setenv("DOCQA_RATE_LIMIT_INGEST_BYTES_PER_DAY", "1000")
    fingerprint = key_fingerprint("vip-key")
    monkeypatch.setenv(
        "DOCQA_RATE_LIMIT_PER_KEY", f'{{"{fingerprint}": {{"queries_per_minute": 6000}}}}'
    )
    limits = IndexingSettings().rate_limit
    assert limits.for_key("someone") == KeyLimits(
        queries_per_minute=60, concurrent_streams=0, ingest_bytes_per_day=1000
    )
    assert limits.for_key(fingerprint) == KeyLimits(
        queries_per_minute=6000, concurrent_streams=0, ingest_bytes_per_day=1000
    )


@pytest.mark.parametrize(
    "bad",
    [{"queries_per_minute": -1}, {"per_key": "not json"}, {"per_key": {"k": {"qpm": 1}}}],
)
def test_bad_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RateLimitSettings.model_validate(bad)


def test_the_readme_documents_every_rate_limit_setting() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    documented = set(re.findall(r"^\| `(DOCQA_RATE_LIMIT_[A-Z_]+)` \|", readme, flags=re.M))
    expected = {f"DOCQA_RATE_LIMIT_{name.upper()}" for name in RateLimitSettings.model_fields}
    assert documented == expected
    assert "fails open" in readme


@pytest.mark.parametrize(
    ("body", "streamed"),
    [
        (b'{"collection": "c", "question": "q"}', False),
        (b'{"collection": "c", "question": "stream?", "stream": false}', False),
        (b'{"stream": true}', True),
        (b'{"stream": 1}', True),
        (b'{"stream": "yes"}', True),  # as pydantic reads it
        (b'{"\\u0073tream": true}', True),  # an escaped name is still the field
        (b'{"stream": [1]}', False),
        (b"not json, stream", False),
    ],
)
def test_which_bodies_ask_for_a_stream(body: bytes, streamed: bool) -> None:
    assert wants_stream(body) is streamed


async def test_a_dead_redis_fails_open_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    redis = Redis.from_url(DEAD_REDIS, socket_connect_timeout=1)
    limiter = RateLimiter(redis, prefix="u", settings=RateLimitSettings(queries_per_minute=1))
    with caplog.at_level(logging.WARNING, logger="services.common.rate_limits"):
        decisions = [await limiter.admit_query("k", stream_id="s") for _ in range(3)]
        decisions.append(await limiter.charge_ingest("k", 10**12))
        await limiter.release_stream("k", "s")
    await redis.aclose()
    assert decisions == [ADMITTED] * 4
    warnings = [r for r in caplog.records if "rate limits not enforced" in r.getMessage()]
    assert len(warnings) == 1


class AnyJobs:
    async def create(self, *_: Any) -> str:
        return "job-1"


async def test_the_services_serve_with_a_dead_redis() -> None:
    """The routes' path: the query service's middleware and the indexing route's charge."""
    settings = RateLimitSettings(queries_per_minute=1, ingest_bytes_per_day=1)
    query, indexing = query_app(), indexing_app()
    indexing.state.jobs = AnyJobs()
    for app in (query, indexing):
        dead = Redis.from_url(DEAD_REDIS)
        app.state.rate_limiter = RateLimiter(dead, prefix="u", settings=settings)
    asked = {"collection": "kb", "question": "When?"}
    documents = {"documents": [{"doc_id": "a", "text": "some text"}]}
    async with client_for(query) as client:
        answered = [
            await client.post("/v1/query", json=asked, headers=QUERY_AUTH) for _ in range(3)
        ]
        stream = {**asked, "stream": True}
        streamed = await client.post("/v1/query", json=stream, headers=QUERY_AUTH)
    async with client_for(indexing) as client:
        url = "/v1/collections/kb/documents"
        ingested = await client.post(url, json=documents, headers=ADMIN_AUTH)
    assert [r.status_code for r in answered] == [200, 200, 200]
    assert streamed.status_code == 200 and "event: done" in streamed.text
    assert ingested.status_code == 202, ingested.text
    assert all("x-ratelimit-limit" not in r.headers for r in [*answered, ingested])
